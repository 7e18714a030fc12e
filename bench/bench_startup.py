"""Cold start of `keyroll status` with the 12 seed secrets, beside a bare interpreter.

Median of N runs each, in the same run: `python -c pass`, `keyroll status` without
a terminal (plain text), `keyroll status` on a pseudo-terminal (the rich table),
`keyroll status --json`, `python -m keyroll status` (runpy adds a few ms) and
`keyroll --help`.  Bytecode is compiled first
(`compileall`) and PYTHONDONTWRITEBYTECODE is cleared, as in a real install.

    .venv/bin/python bench/bench_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import compileall
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str], tty: bool = False) -> float:
    started = time.perf_counter()
    if tty:
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(argv[0], argv, env)
        while True:
            try:
                if not os.read(fd, 65536):
                    break
            except OSError:
                break
        os.waitpid(pid, 0)
        os.close(fd)
    else:
        subprocess.run(argv, env=env, capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "daemon" / "keyroll"), quiet=1)
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(
            KEYROLL_SECRETS_DIR=f"{tmp}/secrets",
            KEYROLL_BACKUP_DIR=f"{tmp}/backups",
            KEYROLL_STATE_DIR=f"{tmp}/state",
            KEYROLL_CONFIG="",
            HOME=tmp,
            XDG_CONFIG_HOME=f"{tmp}/config",
            TERM="xterm-256color",
            COLUMNS="200",
        )
        subprocess.run([python, "-m", "keyroll", "init"], env=env, stdout=subprocess.DEVNULL, check=True)
        keyroll = str(Path(python).parent / "keyroll")  # the console script, as installed
        cases = {
            "python -c pass": ([python, "-c", "pass"], False),
            "keyroll status (no terminal)": ([keyroll, "status"], False),
            "keyroll status --json": ([keyroll, "status", "--json"], False),
            "keyroll status (terminal, rich)": ([keyroll, "status"], True),
            "python -m keyroll status": ([python, "-m", "keyroll", "status"], False),
            "keyroll --help": ([keyroll, "--help"], False),
        }
        for argv, tty in cases.values():  # warm the page cache
            timed(argv, env, tty)
        results = {name: [timed(argv, env, tty) for _ in range(args.runs)] for name, (argv, tty) in cases.items()}
    bare = statistics.median(results["python -c pass"])
    print(f"{'case':36} {'median':>9} {'min':>9} {'x bare':>7}   ({args.runs} runs each)")
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"{name:36} {median * 1000:7.1f}ms {min(samples) * 1000:7.1f}ms {median / bare:6.1f}x")


if __name__ == "__main__":
    main()
