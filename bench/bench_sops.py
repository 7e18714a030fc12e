"""Rotate every secret of a 1,000-key SOPS bundle and time it.

    .venv/bin/python bench/bench_sops.py [--secrets 1000] [--runs 5] [--cli]

Everything lives in a temporary folder: an age identity made with pyrage, a
.sops.yaml naming its recipient, a config with N secrets and `[store] kind =
"sops"`, and `keyroll init` run once (setup, not timed).  Then `rotate all` runs
`--runs` times in-process (the rotation itself: lock, recovery, one decrypt, a
backup of the encrypted bundle, the journal, one encrypt, the atomic replace)
and, with --cli, as a whole `keyroll rotate all` process (interpreter start-up
and imports included).  The figures printed are the median and the spread; the
goal for the in-process rotation of 1,000 keys is 0.5 s.  Not a test: nothing
is asserted.
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


def setup(root: Path, count: int) -> Path:
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    key = root / "age.key"
    key.write_text(f"{identity}\n")
    key.chmod(0o600)
    (root / ".sops.yaml").write_text(
        f"creation_rules:\n  - path_regex: secrets\\.sops\\.yaml$\n    age: {identity.to_public()}\n"
    )
    tables = "".join(f"[secrets.s{i:04d}]\nkind = 'password'\n" for i in range(count))
    config = root / "config.toml"
    config.write_text(
        '[paths]\nsecrets_dir = "secrets"\nbackup_dir = "backups"\nstate_dir = "state"\n'
        '[store]\nkind = "sops"\nage_key_file = "age.key"\n[backup]\nkeep = 1000\n' + tables
    )
    return config


def timed(function: object, runs: int) -> list[float]:
    figures = []
    for _ in range(runs):
        started = time.perf_counter()
        function()  # type: ignore[operator]
        figures.append(time.perf_counter() - started)
    return figures


def describe(label: str, figures: list[float]) -> str:
    return (
        f"{label:<44} median {statistics.median(figures) * 1000:7.1f} ms"
        f"   min {min(figures) * 1000:7.1f} ms   max {max(figures) * 1000:7.1f} ms   ({len(figures)} runs)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cli", action="store_true", help="also time whole `keyroll rotate all` processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="keyroll-bench-sops-") as folder:
        root = Path(folder)
        for name in ("KEYROLL_SECRETS_DIR", "KEYROLL_BACKUP_DIR", "KEYROLL_STATE_DIR", "SOPS_AGE_KEY_FILE"):
            os.environ.pop(name, None)
        os.environ["HOME"] = str(root)
        config = setup(root, args.secrets)

        from keyroll.actions.init import initialize
        from keyroll.actions.rotate import rotate
        from keyroll.config.policy import load_policy
        from keyroll.store.sops import SopsStore, find_sops

        policy = load_policy(str(config))
        started = time.perf_counter()
        initialize(policy)
        print(f"setup: init of {args.secrets} secrets took {time.perf_counter() - started:.2f} s (not counted)")

        def rotate_all() -> None:
            report = rotate(policy, ["all"])
            if report.exit_code != 0:
                raise SystemExit(f"rotation failed: {[o.message for o in report.outcomes if not o.ok][:3]}")

        rotate_all()  # warm-up: imports, page cache
        store = SopsStore(policy)
        raw = store.read_ciphertext() or b""
        data = store.decrypt_bytes(raw, "yaml", store.location)
        print(f"sops {find_sops()}; bundle {len(raw) / 1024:.0f} KiB, {len(data)} keys")
        print(describe("sops decrypt (one call)", timed(lambda: store.decrypt_bytes(raw, "yaml", "bench"), args.runs)))
        print(describe("sops encrypt (one call)", timed(lambda: store.encrypt_data(data), args.runs)))
        rotation = timed(rotate_all, args.runs)
        print(describe(f"rotate all, in-process ({args.secrets} keys)", rotation))
        if args.cli:
            argv = [sys.executable, "-m", "keyroll", "--config", str(config), "rotate", "all"]

            def cli() -> None:
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

            print(describe(f"keyroll rotate all, process ({args.secrets} keys)", timed(cli, args.runs)))
        goal = 0.5
        median = statistics.median(rotation)
        print(f"goal: rotation <= {goal:.1f} s -> {'met' if median <= goal else 'NOT met'} ({median:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
