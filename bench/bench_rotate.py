"""`keyroll rotate all` on the directory store, with its backup and every fsync,
for 100, 1,000 and 10,000 secrets: wall time (median of N runs, a whole
`keyroll` process each, start-up included), time per secret, and the peak
memory of the process.

    .venv/bin/python bench/bench_rotate.py [--sizes 100 1000 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and the child's peak RSS (KiB) of one keyroll process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before)


def bench(size: int, runs: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(
            "[backup]\nkeep = 3\n" + "".join(f"[secrets.s{i:05d}]\nkind = 'password'\n" for i in range(size))
        )
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(KEYROLL_SECRETS_DIR=f"{tmp}/s", KEYROLL_BACKUP_DIR=f"{tmp}/b", KEYROLL_STATE_DIR=f"{tmp}/st")
        argv = [sys.executable, "-m", "keyroll", "--config", str(config)]
        subprocess.run([*argv, "init"], env=env, stdout=subprocess.DEVNULL, check=True)
        samples, peaks = [], []
        for _ in range(runs):
            elapsed, peak = run([*argv, "rotate", "all"], env)
            samples.append(elapsed)
            peaks.append(peak)
        start_up, _ = run([sys.executable, "-m", "keyroll", "--version"], env)
    return statistics.median(samples), start_up, max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'secrets':>8} {'rotate all':>11} {'per secret':>11} {'peak RSS':>9}")
    for size in args.sizes:
        median, _, peak = bench(size, args.runs)
        print(f"{size:>8} {median:>10.3f}s {median / size * 1e6:>9.0f}us {peak / 1024:>7.1f}MB")


if __name__ == "__main__":
    main()
