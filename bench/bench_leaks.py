"""Scan a large generated repository for 1,000 managed values, beside git's own floor.

    .venv/bin/python bench/bench_leaks.py [--commits 5000] [--mb 100] [--secrets 1000] [--runs 3]

Everything lives in a temporary folder (under /var/tmp: a disk, not a tmpfs):
a keyroll home with N secrets (`keyroll init`, setup, not timed), and a git
repository generated with `git fast-import` (seconds, not minutes): `--commits`
commits, each changing one of 64 files to fresh random text, `--mb` MB of blob
content in all, packed as fast-import leaves it; 10 of the managed values are
planted in it (raw, base64, hex), so the scan also maps blobs to commits and
refs.  Each run times, one after the other:

  - the floor: `git cat-file --batch-all-objects --batch > /dev/null`;
  - `keyroll leaks scan REPO` as a whole process (start-up, reading the store,
    the backups and the journal, building the automaton, the scan, the output).

Printed: the median wall time of each, the scan's ratio to the floor (goal:
≤ 3×), and the CPU time (user + system, git's included) of each: on a machine
shared with other work the wall times wander, the CPU times much less.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def keyroll_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KEYROLL_SECRETS_DIR": str(home / "secrets"),
        "KEYROLL_BACKUP_DIR": str(home / "backups"),
        "KEYROLL_STATE_DIR": str(home / "state"),
    }


def make_home(home: Path, count: int) -> dict[str, str]:
    home.mkdir()
    config = home / "config.toml"
    config.write_text("".join(f"[secrets.s{i:04d}]\nkind = 'password'\n" for i in range(count)))
    keyroll = [sys.executable, "-m", "keyroll", "--config", str(config)]
    subprocess.run([*keyroll, "init"], env=keyroll_env(home), check=True, capture_output=True)
    return {p.name: p.read_text() for p in (home / "secrets").iterdir()}


def corpus() -> bytes:
    """Source-like text to cut blobs from: this project's own Python files."""
    text = b"".join(p.read_bytes() for p in sorted((ROOT / "daemon").rglob("*.py")))
    text += b"".join(p.read_bytes() for p in sorted((ROOT / "tests").rglob("*.py")))
    return text * 2


def make_repo(repo: Path, commits: int, megabytes: int, planted: list[str], content: str = "source") -> int:
    """A repository made with git fast-import; returns the bytes of blob content.
    `content`: "source" (slices of source code, each blob with a line of its own) or
    "random" (random bytes in base64: the worst case for base64 patterns)."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    per_commit = megabytes * 1_000_000 // commits
    rng = random.Random(42)
    source = corpus() if content == "source" else b""
    plant_at = {commits * (i + 1) // (len(planted) + 1): value for i, value in enumerate(planted)}
    proc = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=repo, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    total = 0
    stamp = int(time.time()) - commits * 60
    for n in range(1, commits + 1):
        if content == "source":
            start = rng.randrange(len(source) - per_commit)
            text = b"# revision %d %x\n" % (n, rng.getrandbits(64)) + source[start : start + per_commit]
        else:
            text = base64.encodebytes(rng.randbytes(per_commit * 3 // 4))  # 76-character lines
        value = plant_at.get(n)
        if value is not None:
            kind = n % 3
            shown = (
                value.encode()
                if kind == 0
                else base64.b64encode(value.encode())
                if kind == 1
                else value.encode().hex().encode()
            )
            text = text[: len(text) // 2] + b"\nkey: " + shown + b"\n" + text[len(text) // 2 :]
        total += len(text)
        parent = f"from :{2 * n - 2}\n" if n > 1 else ""
        proc.stdin.write(
            b"blob\nmark :%d\ndata %d\n%s\n" % (2 * n - 1, len(text), text)
            + (
                f"commit refs/heads/main\nmark :{2 * n}\ncommitter Bench <b@example.com> {stamp + 60 * n} +0000\n"
                f"data 10\ncommit {n % 1000:03d}\n{parent}M 100644 :{2 * n - 1} data/file{n % 64:02d}.txt\n\n"
            ).encode()
        )
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    subprocess.run(["git", "-C", str(repo), "reset", "-q", "--hard"], check=True)
    return total


def timed(argv: list[str], env: dict[str, str] | None = None, stdout: int | None = None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system of the process and its children), exit code."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=stdout if stdout is not None else subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--content", choices=("source", "random"), default="source")
    args = parser.parse_args()
    base = "/var/tmp" if os.path.isdir("/var/tmp") else None
    top = Path(tempfile.mkdtemp(prefix="keyroll-bench-leaks-", dir=base))
    try:
        began = time.perf_counter()
        values = make_home(top / "home", args.secrets)
        planted = [values[name] for name in sorted(values)[:10]]
        blob_bytes = make_repo(top / "repo", args.commits, args.mb, planted, args.content)
        setup = time.perf_counter() - began
        repo = str(top / "repo")
        objects = subprocess.run(
            ["git", "-C", repo, "count-objects", "-v"], capture_output=True, text=True, check=True
        ).stdout
        print(
            f"setup {setup:.1f} s: {args.commits} commits, {blob_bytes / 1e6:.0f} MB of blobs, {args.secrets} secrets, {args.content} content"
        )
        print(" ".join(line for line in objects.splitlines() if line.startswith(("count", "in-pack", "size-pack"))))
        floor_cmd = ["git", "-C", repo, "cat-file", "--batch-all-objects", "--batch"]
        scan_cmd = [
            sys.executable,
            "-m",
            "keyroll",
            "--config",
            str(top / "home" / "config.toml"),
            "leaks",
            "scan",
            repo,
        ]
        floors, scans, floor_cpu, scan_cpu = [], [], [], []
        with open(os.devnull, "wb") as null:
            for _ in range(args.runs):
                wall, cpu, _ = timed(floor_cmd, stdout=null.fileno())
                floors.append(wall)
                floor_cpu.append(cpu)
                wall, cpu, code = timed(scan_cmd, env=keyroll_env(top / "home"))
                assert code == 1, f"the scan should find the planted values (exit {code})"
                scans.append(wall)
                scan_cpu.append(cpu)
        out = subprocess.run(scan_cmd, env=keyroll_env(top / "home"), capture_output=True, text=True, check=False)
        assert out.returncode == 1, f"the last scan failed (exit {out.returncode}): {out.stderr.strip()}"
        found = sum(1 for line in out.stdout.splitlines() if line.startswith("LIVE "))
        floor, scan = statistics.median(floors), statistics.median(scans)
        shown = ", ".join(f"{x:.2f}" for x in floors)
        print(f"floor  git cat-file --batch-all-objects --batch > /dev/null   median {floor:.2f} s  ({shown})")
        shown = ", ".join(f"{x:.2f}" for x in scans)
        print(f"scan   keyroll leaks scan (whole process)                     median {scan:.2f} s  ({shown})")
        print(f"ratio  {scan / floor:.2f}x the floor (goal <= 3x); {found} findings of the 10 planted values")
        fc, sc = statistics.median(floor_cpu), statistics.median(scan_cpu)
        print(f"cpu    floor {fc:.2f} s, scan {sc:.2f} s (user + system, git included): {sc / fc:.2f}x")
        git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
        print(
            f"       ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, python {sys.version.split()[0]}, {git_version})"
        )
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
