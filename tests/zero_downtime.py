"""Measure what consumers see while keyroll rotates a database credential: a consumer
process (login_consumer.py) opens a new connection every 10 ms with the credentials
it read at its last restart, keyroll restarts it (a `command:` restart that signals it
and waits until it has re-read the files), and we count its failed logins over N
consecutive `keyroll rotate` runs.  Used by tests/integration/test_zero_downtime.py and
bench/bench_strategies.py."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from keyroll.records import record

HERE = Path(__file__).resolve().parent
CONSUMER = HERE / "login_consumer.py"


@record(frozen=True)
class Measurement:
    strategy: str
    rotations: int
    attempts: int
    failures: int
    reloads: int
    seconds_per_rotation: float


def _keyroll(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keyroll", "--config", str(config), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def measure(
    workdir: Path,
    *,
    kind: str,
    server: Any,
    user: str,
    initial: str,
    admin_user: str,
    admin_password: str,
    strategy: str,
    rotations: int = 20,
) -> Measurement:
    """Rotate `user`'s password `rotations` times (keyroll processes, one after the other)
    while a consumer logs in every 10 ms; count its failed logins.  `workdir` is fresh."""
    for folder in ("secrets", "backups", "state"):
        (workdir / folder).mkdir(mode=0o700, parents=True)
    (workdir / "admin").write_text(admin_password)
    ready = workdir / "consumer.ready"
    target_type = "postgres" if kind == "postgres" else "mysql"
    extra = f'strategy = "{strategy}"\ngrace = "1h"\n'
    if strategy == "alternating":
        extra += 'username_secret = "db_user"\n'
    (workdir / "config.toml").write_text(
        f"""
[paths]
secrets_dir = "secrets"
backup_dir = "backups"
state_dir = "state"

[backup]
keep = 3

[targets.db]
type = "{target_type}"
host = "{server.host}"
port = {server.port}
user = "{user}"
admin_user = "{admin_user}"
admin_password_file = "{workdir / "admin"}"
{extra}
[secrets.db_password]
target = "db"
RESTART
"""
    )
    restart = f'restart = ["command:{shlex.quote(sys.executable)} {CONSUMER} reload PID {ready}"]'
    config = workdir / "config.toml"
    template = config.read_text()
    config.write_text(template.replace("RESTART", ""))  # (adopting restarts nobody yet)
    done = subprocess.run(
        [sys.executable, "-m", "keyroll", "--config", str(config), "set", "db_password"],
        input=initial,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    login = "@db_user" if strategy == "alternating" else user
    consumer = subprocess.Popen(
        [
            sys.executable,
            str(CONSUMER),
            "run",
            kind,
            server.host,
            str(server.port),
            str(workdir / "secrets"),
            "db_password",
            login,
            str(ready),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        config.write_text(template.replace("RESTART", restart.replace("PID", str(consumer.pid))))
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert consumer.poll() is None and time.monotonic() < deadline, "the consumer did not start"
            time.sleep(0.01)
        time.sleep(0.2)
        started = time.monotonic()
        for number in range(rotations):
            done = _keyroll(config, "rotate", "db_password")
            assert done.returncode == 0, f"rotation {number + 1}: {done.stdout}{done.stderr}"
        elapsed = time.monotonic() - started
        time.sleep(0.2)
    finally:
        consumer.send_signal(signal.SIGTERM)
        out, _ = consumer.communicate(timeout=30)
    summary = json.loads(out.strip().splitlines()[-1])
    return Measurement(
        strategy, rotations, summary["attempts"], summary["failures"], summary["reloads"], elapsed / rotations
    )
