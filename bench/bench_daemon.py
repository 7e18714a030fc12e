"""The idle daemon with the 12 seed secrets: resident memory after 60 s, CPU
seconds used over those 60 s, and the time from SIGTERM to exit.

    .venv/bin/python bench/bench_daemon.py [--idle 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(
            KEYROLL_SECRETS_DIR=f"{tmp}/s",
            KEYROLL_BACKUP_DIR=f"{tmp}/b",
            KEYROLL_STATE_DIR=f"{tmp}/st",
            HOME=tmp,
            XDG_CONFIG_HOME=f"{tmp}/c",
            WATCHDOG_USEC="60000000",
        )
        keyroll = [sys.executable, "-m", "keyroll"]
        subprocess.run([*keyroll, "init"], env=env, stdout=subprocess.DEVNULL, check=True)
        log = open(f"{tmp}/daemon.log", "w")  # noqa: SIM115
        daemon = subprocess.Popen([*keyroll, "daemon"], env=env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        while "ready" not in Path(f"{tmp}/daemon.log").read_text():
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not get ready")
            time.sleep(0.05)
        ready_rss = rss_kib(daemon.pid)
        cpu_start = cpu_seconds(daemon.pid)
        time.sleep(args.idle)
        idle_rss = rss_kib(daemon.pid)
        cpu_used = cpu_seconds(daemon.pid) - cpu_start
        started = time.perf_counter()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(30)
        stop = time.perf_counter() - started
        log.close()
    print(f"RSS when ready:         {ready_rss / 1024:.1f} MB")
    print(f"RSS after {args.idle:.0f} s idle:    {idle_rss / 1024:.1f} MB")
    print(f"CPU over {args.idle:.0f} s idle:     {cpu_used:.3f} s")
    print(f"SIGTERM to exit:        {stop * 1000:.0f} ms (exit status {code})")


if __name__ == "__main__":
    main()
