"""`rotate all` of a 1,000-key SOPS bundle with [gitops] publishing it, beside the same rotation without.

    .venv/bin/python bench/bench_gitops.py [--secrets 1000] [--runs 5]

Everything lives in a temporary folder: an age identity made with pyrage, a
.sops.yaml, a bare git repository as the remote and a clone of it as keyroll's
work tree, and two keyroll setups with the same N secrets: one plain, one with
`[gitops] publish = ["bundle"]` and `push = "origin main"`.  `keyroll init`
runs once for each (setup, not timed).  Then `rotate all` runs `--runs` times
in-process for each setup, alternating.  Printed: the median and spread of
each, and for the [gitops] one the time spent publishing (writing the bundle
into the work tree, the plaintext check, `git add`, `git commit`, `git push`)
and its share of the whole.  Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> None:
    env = {**os.environ, **GIT_ENV, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b"}
    env["GIT_COMMITTER_EMAIL"] = "b@b"
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def setup(root: Path, count: int, recipient: str, gitops: bool) -> Path:
    root.mkdir()
    (root / ".sops.yaml").write_text(f"creation_rules:\n  - path_regex: secrets\\.sops\\.yaml$\n    age: {recipient}\n")
    tables = "".join(f"[secrets.s{i:04d}]\nkind = 'password'\n" for i in range(count))
    section = '[gitops]\nrepo = "../fleet"\npublish = ["bundle"]\npush = "origin main"\n' if gitops else ""
    config = root / "config.toml"
    config.write_text(
        '[paths]\nsecrets_dir = "secrets"\nbackup_dir = "backups"\nstate_dir = "state"\n'
        '[store]\nkind = "sops"\nage_key_file = "../age.key"\n[backup]\nkeep = 1000\n' + section + tables
    )
    return config


def describe(label: str, figures: list[float]) -> str:
    return (
        f"{label:<48} median {statistics.median(figures) * 1000:7.1f} ms"
        f"   min {min(figures) * 1000:7.1f} ms   max {max(figures) * 1000:7.1f} ms   ({len(figures)} runs)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="keyroll-bench-gitops-") as folder:
        root = Path(folder)
        for name in ("KEYROLL_SECRETS_DIR", "KEYROLL_BACKUP_DIR", "KEYROLL_STATE_DIR", "SOPS_AGE_KEY_FILE"):
            os.environ.pop(name, None)
        os.environ["HOME"] = str(root)
        import pyrage

        identity = pyrage.x25519.Identity.generate()
        (root / "age.key").write_text(f"{identity}\n")
        (root / "age.key").chmod(0o600)
        git(root, "init", "--quiet", "--bare", "-b", "main", "remote.git")
        git(root, "clone", "--quiet", "remote.git", "fleet")
        (root / "fleet" / "README.md").write_text("fleet\n")
        git(root / "fleet", "add", ".")
        git(root / "fleet", "commit", "--quiet", "-m", "start")
        git(root / "fleet", "push", "--quiet", "origin", "main")

        from keyroll.actions.init import initialize
        from keyroll.actions.rotate import rotate
        from keyroll.config.policy import load_policy

        recipient = str(identity.to_public())
        plain = load_policy(str(setup(root / "plain", args.secrets, recipient, gitops=False)))
        published = load_policy(str(setup(root / "gitops", args.secrets, recipient, gitops=True)))
        for policy in (plain, published):
            initialize(policy)

        figures: dict[str, list[float]] = {"plain": [], "gitops": [], "git": [], "git processes": [], "check": []}
        spent = {"git processes": 0.0, "check": 0.0}
        import keyroll.gitops as engine

        def measured(function, key):  # type: ignore[no-untyped-def]
            def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    spent[key] += time.perf_counter() - started

            return wrapper

        engine.Git.run = measured(engine.Git.run, "git processes")  # type: ignore[method-assign]
        engine.plaintext_problem = measured(engine.plaintext_problem, "check")

        def rotate_all(label: str) -> None:
            policy = published if label == "gitops" else plain
            spent.update(dict.fromkeys(spent, 0.0))
            started = time.perf_counter()
            report = rotate(policy, ["all"])
            figures[label].append(time.perf_counter() - started)
            if report.exit_code != 0:
                raise SystemExit(f"rotation failed: {[o.message for o in report.outcomes if not o.ok][:3]}")
            if label == "gitops":
                figures["git"].append(report.timings.get("git", 0.0))
                figures["git processes"].append(spent["git processes"])
                figures["check"].append(spent["check"])

        rotate_all("plain")  # warm-up: imports, page cache
        rotate_all("gitops")
        for values in figures.values():
            values.clear()
        for _ in range(args.runs):
            rotate_all("plain")
            rotate_all("gitops")
        size = (root / "gitops" / "secrets.sops.yaml").stat().st_size
        out = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True).stdout.strip()
        print(f"{out}; bundle {size / 1024:.0f} KiB, {args.secrets} keys; remote: a local bare repository")
        print(describe("rotate all, no [gitops]", figures["plain"]))
        print(describe("rotate all, [gitops] bundle + push", figures["gitops"]))
        print(describe("  of which publishing (write, check, git)", figures["git"]))
        print(describe("    of which git processes (add, commit, push)", figures["git processes"]))
        print(describe("    of which the plaintext check", figures["check"]))
        share = statistics.median(figures["git processes"]) / statistics.median(figures["gitops"])
        extra = statistics.median(figures["gitops"]) - statistics.median(figures["plain"])
        print(f"git processes: {share:.0%} of the [gitops] rotation; {extra * 1000:+.0f} ms against no [gitops]")
        commits = subprocess.run(
            ["git", "--git-dir", str(root / "remote.git"), "rev-list", "--count", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"remote: {commits} commits (one per command)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
