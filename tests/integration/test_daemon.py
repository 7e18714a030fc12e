"""`keyroll daemon` as systemd runs it: a real process, a real $NOTIFY_SOCKET
datagram socket, real signals, and SIGKILL followed by a restart."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import peers


class DaemonProcess:
    """A `keyroll daemon` subprocess with its stderr in a file."""

    def __init__(self, home, notify: peers.NotifySocket | None = None, env: dict[str, str] | None = None) -> None:  # type: ignore[no-untyped-def]
        self.log_path = home.root / f"daemon-{time.monotonic_ns()}.log"
        self.log_file = self.log_path.open("w")
        full_env = {**os.environ, **(notify.env if notify else {}), **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "keyroll", "--config", str(home.config), "daemon"],
            stdout=subprocess.DEVNULL,
            stderr=self.log_file,
            env=full_env,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, pattern: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log)
            if found:
                return found.group(0)
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not logged; log:\n{self.log}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(sig)
        code = self.process.wait(timeout)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log_file.close()


@pytest.fixture
def daemons():  # type: ignore[no-untyped-def]
    started: list[DaemonProcess] = []

    def start(home, notify=None, env=None) -> DaemonProcess:  # type: ignore[no-untyped-def]
        started.append(DaemonProcess(home, notify, env))
        return started[-1]

    yield start
    for daemon in started:
        daemon.close()


@pytest.fixture
def notify_socket(tmp_path: Path):  # type: ignore[no-untyped-def]
    with peers.NotifySocket(tmp_path) as sock:
        yield sock


def _logged_at(line: str) -> float:
    """The time (seconds since the epoch) of a daemon log line, from its timestamp (local time, to the second)."""
    return time.mktime(time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S"))


def rotations(kr, home, name: str) -> int:  # type: ignore[no-untyped-def]
    entries = json.loads(kr("--config", str(home.config), "history", name, "--json").out)["data"]["entries"]
    return sum(1 for e in entries if e["op"] == "rotate" and e["outcome"] == "rotated")


SCHEDULED = """
[defaults]
schedule = "{schedule}"

[secrets.ticket_key]
kind = "api_key"
unattended = true

[secrets.manual_key]
kind = "api_key"
"""


def test_systemd_readiness_watchdog_reload_and_stop(kr, home, daemons, notify_socket) -> None:  # type: ignore[no-untyped-def]
    home.write_config(SCHEDULED.format(schedule="90d"))
    assert kr("--config", str(home.config), "init").code == 0
    daemon = daemons(home, notify_socket, {"WATCHDOG_USEC": "400000"})
    notify_socket.wait_for("READY=1", timeout=20)
    status = notify_socket.wait_for(lambda line: line.startswith("STATUS="), timeout=5)
    assert status.isascii() and re.match(r"STATUS=next: (ticket_key|remind about manual_key) at \d{4}-", status)
    pings_before = notify_socket.messages().count("WATCHDOG=1")
    time.sleep(1.6)
    pings = notify_socket.messages().count("WATCHDOG=1") - pings_before
    assert 4 <= pings <= 11, f"{pings} pings in 1.6 s with WATCHDOG_USEC=0.4 s (every 0.2 s expected)"
    daemon.process.send_signal(signal.SIGHUP)
    notify_socket.wait_for("RELOADING=1", timeout=5)
    messages = notify_socket.messages()
    after = messages[messages.index("RELOADING=1") :]
    assert any(re.fullmatch(r"MONOTONIC_USEC=\d+", m) for m in after)
    deadline = time.monotonic() + 5
    while "READY=1" not in notify_socket.messages()[messages.index("RELOADING=1") :] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "READY=1" in notify_socket.messages()[messages.index("RELOADING=1") :]
    code, took = daemon.stop(signal.SIGTERM)
    assert code == 0 and took < 1.0, f"idle stop took {took:.2f}s"
    assert "STOPPING=1" in notify_socket.messages()


def test_sighup_with_a_broken_config_keeps_the_old_one(kr, home, daemons, notify_socket) -> None:  # type: ignore[no-untyped-def]
    home.write_config(SCHEDULED.format(schedule="90d"))
    assert kr("--config", str(home.config), "init").code == 0
    daemon = daemons(home, notify_socket)
    notify_socket.wait_for("READY=1", timeout=20)
    good = home.config.read_text()
    home.config.write_text(good + "\n[defaults\n")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log(r"reload failed, keeping the previous configuration: .*config\.toml: invalid TOML")
    notify_socket.wait_for(lambda line: "reload failed, previous config kept" in line, timeout=5)
    assert daemon.process.poll() is None
    home.config.write_text(good.replace("90d", "30d"))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log("configuration reloaded")
    assert daemon.stop()[0] == 0


def test_rotates_on_schedule_and_catches_up_once_after_sigkill(kr, home, daemons) -> None:  # type: ignore[no-untyped-def]
    home.write_config(SCHEDULED.format(schedule="2s"))
    assert kr("--config", str(home.config), "init").code == 0
    daemon = daemons(home)
    daemon.wait_log(r"ticket_key: rotated", timeout=10)
    daemon.stop(signal.SIGKILL)
    assert rotations(kr, home, "manual_key") == 0, "without unattended or a target: reminders only"
    time.sleep(5)  # two periods missed while the daemon is down
    before = rotations(kr, home, "ticket_key")
    restarted = daemons(home)
    restarted.wait_log("ready", timeout=10)
    deadline = time.monotonic() + 10
    while rotations(kr, home, "ticket_key") == before:  # waits for the catch-up, however loaded the machine
        assert time.monotonic() < deadline, f"missed rotations are caught up:\n{restarted.log}"
        time.sleep(0.05)
    time.sleep(0.5)  # a second catch-up would follow at once; the next scheduled rotation comes 2 s later
    assert rotations(kr, home, "ticket_key") == before + 1, "missed rotations are caught up exactly once"
    deadline = time.monotonic() + 5
    while rotations(kr, home, "ticket_key") < before + 2:
        assert time.monotonic() < deadline, "then the schedule goes on"
        time.sleep(0.1)
    entries = json.loads(kr("--config", str(home.config), "history", "ticket_key", "--json").out)["data"]["entries"]
    from keyroll.schedule import from_iso

    gap = (from_iso(entries[0]["at"]) - from_iso(entries[1]["at"])).total_seconds()
    assert gap >= 1, "the next one comes a period after the catch-up, not right away"
    assert restarted.stop()[0] == 0


def test_one_daemon_per_state_folder_and_the_writer_lock_is_free_while_idle(kr, home, daemons) -> None:  # type: ignore[no-untyped-def]
    home.write_config(SCHEDULED.format(schedule="90d"))
    assert kr("--config", str(home.config), "init").code == 0
    first = daemons(home)
    first.wait_log("ready")
    second = daemons(home)
    assert second.process.wait(15) == 3
    assert f"a keyroll daemon is already running for {home.state}" in second.log
    assert "--wait" not in second.log  # (the daemon has no such option)
    manual = kr("--config", str(home.config), "rotate", "all")
    assert manual.code == 0, manual.both
    assert first.stop()[0] == 0


def test_a_config_no_writer_can_use_stops_the_daemon_before_ready(home, daemons, notify_socket) -> None:  # type: ignore[no-untyped-def]
    """Exit 2 (RestartPreventExitStatus=2 in the unit), nothing created, no READY=1."""
    home.write_config(SCHEDULED.format(schedule="90d") + "\n[store]\nrequire_encrypted = true\n")
    daemon = daemons(home, notify_socket)
    assert daemon.process.wait(15) == 2
    assert "encryption is required" in daemon.log and daemon.log.count("error") == 1
    assert not home.state.exists() and not home.secrets.exists()
    assert not any(m.startswith("READY=1") for m in notify_socket.messages())


def test_sigterm_mid_rotation_stops_at_a_safe_point(kr, home, daemons, tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "accepted"
    marker = tmp_path / "applying"
    script = tmp_path / "slow-service"
    script.write_text(
        f"""#!/bin/sh
value=$(head -n1)
case "$KEYROLL_PHASE" in
  apply) touch {marker}; sleep 3; echo "$value" > {state} ;;
  rollback) echo "$value" > {state} ;;
  verify) [ "$value" = "$(cat {state} 2>/dev/null)" ] ;;
esac
"""
    )
    script.chmod(0o755)
    home.write_config(
        f"""
[defaults]
schedule = "2s"
[targets.slow]
type = "command"
argv = ["{script}"]
[secrets.first_password]
target = "slow"
[secrets.second_key]
kind = "api_key"
unattended = true
"""
    )
    assert kr("--config", str(home.config), "init").code == 0
    marker.unlink()
    daemon = daemons(home)
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline, daemon.log
        time.sleep(0.02)
    code, took = daemon.stop(signal.SIGTERM)
    assert code == 0 and took < 10, f"stopping mid-rotation took {took:.1f}s"
    status = json.loads(kr("--config", str(home.config), "status", "--json").out)["data"]["secrets"]
    assert all(s["state"] != "IN FLIGHT" for s in status), "the journal is consistent: nothing left in flight"
    assert state.read_text().strip() == home.value("first_password")
    assert kr("--config", str(home.config), "validate").code == 0


def test_logs_are_journald_friendly_and_never_carry_a_value(kr, home, daemons, values) -> None:  # type: ignore[no-untyped-def]
    home.write_config(SCHEDULED.format(schedule="1s"))
    assert kr("--config", str(home.config), "init").code == 0
    daemon = daemons(home, env={"JOURNAL_STREAM": "8:12345"})
    daemon.wait_log("ticket_key: rotated")
    daemon.stop()
    lines = [line for line in daemon.log.splitlines() if line]
    assert lines and all(re.match(r"(INFO|WARNING|ERROR|DEBUG) ", line) for line in lines), lines[:3]
    for value in values(home).values():
        assert value not in daemon.log


def test_a_secret_falling_due_during_a_long_cycle_runs_right_after_it(kr, home, daemons, tmp_path) -> None:  # type: ignore[no-untyped-def]
    slow = tmp_path / "slow-service"
    slow.write_text('#!/bin/sh\ncat > /dev/null\n[ "$KEYROLL_PHASE" = apply ] && sleep 2\nexit 0\n')
    slow.chmod(0o755)
    home.write_config(
        f"""
[defaults]
schedule = "4s"
unattended = true
[targets.slow]
type = "command"
argv = ["{slow}"]
[secrets.slow_password]
target = "slow"
[secrets.quick_key]
kind = "api_key"
"""
    )
    assert kr("--config", str(home.config), "init").code == 0
    time.sleep(1)
    assert kr("--config", str(home.config), "rotate", "quick_key").code == 0  # due 1 s after slow_password
    daemon = daemons(home)
    daemon.wait_log("ready")
    deadline = time.monotonic() + 20
    while rotations(kr, home, "quick_key") < 3 or rotations(kr, home, "slow_password") < 2:
        assert time.monotonic() < deadline, f"the schedule stalled:\n{daemon.log}"
        time.sleep(0.2)
    assert "maximum number of running instances" not in daemon.log
    assert daemon.stop()[0] == 0


def test_a_cycle_that_fails_as_a_whole_backs_off_and_is_reported(kr, home, daemons) -> None:  # type: ignore[no-untyped-def]
    with peers.HTTPSink() as http:
        home.write_config(
            f"""
[store]
kind = "sops"
[daemon]
retry_min = "1s"
[defaults]
schedule = "1s"
unattended = true
[notify]
urls = ["{http.url("/hook").replace("http://", "json://")}"]
[secrets.a_key]
kind = "api_key"
"""
        )
        daemon = daemons(home)
        ready = _logged_at(daemon.wait_log(r".* INFO ready: .*"))
        # Retried (waited for: each failed cycle also sends a notice, slow on a loaded machine) ...
        deadline = time.monotonic() + 30
        while (
            daemon.log.count("the cycle failed") < 2 or len(re.findall(r"next cycle at .* \(retry: ", daemon.log)) < 2
        ):
            assert time.monotonic() < deadline, f"no second failed cycle:\n{daemon.log}"
            time.sleep(0.1)
        # ... with a growing delay: at most 5 failed cycles in the 6 s after ready (by the log's own clock).
        while time.time() < ready + 7:
            time.sleep(0.1)
        failures = [t for t in map(_logged_at, re.findall(r".* ERROR the cycle failed", daemon.log)) if t < ready + 7]
        assert len(failures) <= 5, f"{len(failures)} failed cycles in 6 s with retry_min=1s doubling:\n{daemon.log}"
        http.wait_for(1, timeout=10)
        assert http.bodies[0]["type"] == "failure" and "recovery at start failed" in http.bodies[0]["title"]
        http.wait_for(2, timeout=10)
        assert "the cycle failed" in http.bodies[1]["title"] and ".sops.yaml: not found" in http.bodies[1]["message"]
        assert daemon.stop()[0] == 0


def test_a_stop_does_not_wait_for_a_hanging_notifier(kr, home, daemons) -> None:  # type: ignore[no-untyped-def]
    """Two URLs that never answer would hold a notice for 2 x 10 s; once SIGTERM comes,
    the notice gets at most STOPPING_NOTICE_LIMIT (5 s) more."""
    with peers.HTTPSink() as http:
        http.hang_seconds = 60
        urls = [http.url(p).replace("http://", "json://") for p in ("/a", "/b")]
        home.write_config(
            SCHEDULED.format(schedule="1s")
            + f'\n[notify]\nurls = {json.dumps(urls)}\non = ["success"]\ntimeout = "10s"\n'
        )
        assert kr("--config", str(home.config), "init").code == 0
        time.sleep(1.1)
        daemon = daemons(home)
        daemon.wait_log("ticket_key: rotated")
        time.sleep(1.0)  # the notice child is now waiting on the first URL
        code, took = daemon.stop(signal.SIGTERM, timeout=30)
        assert code == 0 and took < 8.0, f"stop took {took:.1f}s with a hanging notifier"
        assert "notice to" in daemon.log and "killed" in daemon.log
