"""Crash safety of the store-only rotation: a real `keyroll rotate all` process is
killed with SIGKILL, at random moments and at every failpoint; afterwards every
file holds a whole old or a whole new value, the next writing command completes
or undoes the interrupted work and removes temp files, validate passes, and no
value is lost (whatever changed is in a verified backup)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyroll.paths import TEMP_PREFIX
from keyroll.rotation import FAILPOINTS

VALUE = re.compile(r"^[A-Za-z0-9]{32}$")


def config_for(home, count: int) -> Path:  # type: ignore[no-untyped-def]
    tables = "".join(f"[secrets.s{i:04d}]\nkind = 'password'\n" for i in range(count))
    return home.write_config(tables)


def run(home, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "keyroll", "--config", str(home.config), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def store(home) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {p.name: p.read_text() for p in home.secrets.iterdir()}


def backed_up_values(home) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    """Every value of every secret held by a backup that verifies."""
    from keyroll.backup import read_backup

    saved: dict[str, set[str]] = {}
    for folder in home.backups.iterdir():
        if folder.name.startswith("secrets_"):
            for name, data in read_backup(folder).files.items():
                saved.setdefault(name, set()).add(data.decode())
    return saved


def check_after_kill(home, before: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Right after the kill: every secret file is whole (old, or a complete new value)."""
    files = store(home)
    secrets = {n: v for n, v in files.items() if not n.startswith(TEMP_PREFIX)}
    assert set(secrets) == set(before), "a secret file vanished"
    for name, value in secrets.items():
        assert value == before[name] or VALUE.match(value), f"{name} holds a torn value"


def check_recovered(home, before: dict[str, str], command: tuple[str, ...]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    done = run(home, *command)
    assert done.returncode == 0, done.stdout + done.stderr
    after = store(home)
    assert not [n for n in after if n.startswith(TEMP_PREFIX)], "temp files left behind"
    assert not [p for p in home.backups.iterdir() if p.name.startswith(TEMP_PREFIX)], "partial backup left behind"
    validate = run(home, "validate", "--json")
    assert validate.returncode == 0, validate.stdout[-2000:]
    changed = {n for n in before if after[n] != before[n]}
    if changed:
        # Nothing lost: every value that was replaced is in a verified backup.
        saved = backed_up_values(home)
        assert all(before[n] in saved.get(n, set()) for n in changed)
    return after


def test_sigkill_at_20_random_moments_of_a_1000_secret_rotation(home) -> None:  # type: ignore[no-untyped-def]
    config_for(home, 1000)
    assert run(home, "init").returncode == 0
    timings = []
    for _ in range(3):
        started = time.monotonic()
        assert run(home, "rotate", "all").returncode == 0
        timings.append(time.monotonic() - started)
    duration = min(timings)
    rng = random.Random(20261128)
    kills = 0
    outcomes = {"completed": 0, "untouched": 0}
    for round_number in range(20):
        before = store(home)
        process = subprocess.Popen(
            [sys.executable, "-m", "keyroll", "--config", str(home.config), "rotate", "all"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, duration * 0.9))
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += process.returncode == -signal.SIGKILL
        check_after_kill(home, before)
        # Alternate: `keyroll recover`, or simply the next writing command.
        command = ("recover",) if round_number % 2 == 0 else ("backup",)
        after = check_recovered(home, before, command)
        changed = sum(after[n] != before[n] for n in before)
        assert changed in (0, len(before)), f"recovery left a half-rotated set ({changed} of {len(before)})"
        outcomes["completed" if changed else "untouched"] += 1
    assert kills >= 12, "most kills should land while keyroll was still running"
    print(f"\n20 kills over {duration:.2f}s runs: {outcomes}")


@pytest.mark.parametrize("step", [s for s in FAILPOINTS if s not in ("apply", "verify", "restart", "retire")])
def test_sigkill_at_each_step(home, step: str) -> None:  # type: ignore[no-untyped-def]
    config_for(home, 50)
    assert run(home, "init").returncode == 0
    before = store(home)
    if step == "recover":
        # Leave something in flight first, then kill the recovery itself.
        assert run(home, "rotate", "all", env={"KEYROLL_FAILPOINT": "store-write"}).returncode == -signal.SIGKILL
        killed = run(home, "recover", env={"KEYROLL_FAILPOINT": "recover"})
    else:
        killed = run(home, "rotate", "all", env={"KEYROLL_FAILPOINT": step})
    assert killed.returncode == -signal.SIGKILL, f"failpoint {step} was not reached"
    check_after_kill(home, before)
    status = json.loads(run(home, "status", "--json").stdout)["data"]["secrets"]
    in_flight = sum(s["state"] == "IN FLIGHT" for s in status)
    assert in_flight == (0 if step == "backup" else 50)
    after = check_recovered(home, before, ("recover",))
    changed = sum(after[n] != before[n] for n in before)
    # Killed before the pending values were durable: nothing changes.  After: completed.
    assert changed == (0 if step == "backup" else 50)
