"""SIGTERM (as `systemctl stop` with KillMode=mixed sends it) and Ctrl-C (SIGINT to
the whole process group) sent to a real `keyroll rotate` / `keyroll run` while a
live target is being changed: the command stops at the next safe point, with the
store and the service agreeing and nothing left in flight, and exits 75 for what
it did not start; a second signal stops it at once, and recovery then puts
everything in step.  The daemon keeps its own handling, during recovery too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

NAMES = ("a_password", "b_password", "c_password")
INITIAL = {name: (name.replace("_", "") * 4)[:32] for name in NAMES}  # the services' passwords before keyroll


def _slow_service(tmp_path: Path) -> Path:
    """A command target that keeps each secret's accepted value in a file and takes
    1.5 s to apply one (it says when it starts by creating `applying-NAME`)."""
    script = tmp_path / "slow-service"
    script.write_text(
        f"""#!/bin/sh
value=$(head -n1)
state="{tmp_path}/accepted-$KEYROLL_SECRET"
case "$KEYROLL_PHASE" in
  apply) touch "{tmp_path}/applying-$KEYROLL_SECRET"; sleep 1.5; echo "$value" > "$state" ;;
  rollback) echo "$value" > "$state" ;;
  verify) touch "{tmp_path}/verifying-$KEYROLL_SECRET"; [ -e "{tmp_path}/slow-verify" ] && sleep 1
          [ "$value" = "$(cat "$state" 2>/dev/null)" ] ;;
esac
"""
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def slow_home(home, krp, tmp_path):  # type: ignore[no-untyped-def]
    script = _slow_service(tmp_path)
    home.write_config(
        "".join(
            f'[targets.{name}]\ntype = "command"\nargv = ["{script}"]\n'
            f'[secrets.{name}]\ntarget = "{name}"\nschedule = "1s"\n'
            for name in NAMES
        )
    )
    for name in NAMES:  # the service's current passwords, adopted by init
        (tmp_path / f"accepted-{name}").write_text(INITIAL[name] + "\n")
        home.secrets.mkdir(exist_ok=True)
        (home.secrets / name).write_text(INITIAL[name])
    assert krp("--config", str(home.config), "init").code == 0
    return home


def _launch(config: Path, *argv: str, once: Callable[[], bool]) -> subprocess.Popen[str]:
    """keyroll in a process group of its own (as a shell runs a foreground job),
    returned once `once()` holds."""
    process = subprocess.Popen(
        [sys.executable, "-m", "keyroll", "--config", str(config), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not once():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    return process


def _seen(folder: Path, pattern: str) -> Callable[[], bool]:
    return lambda: any(folder.glob(pattern))


def _start(home, tmp_path: Path, *argv: str) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    """keyroll, once the first apply has begun."""
    return _launch(home.config, *argv, once=_seen(tmp_path, "applying-*"))


def _in_step(home, krp, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Each secret's stored value, after checking that the service accepts exactly it."""
    stored = {name: home.value(name).strip() for name in NAMES}
    accepted = {name: (tmp_path / f"accepted-{name}").read_text().strip() for name in NAMES}
    assert stored == accepted
    status = json.loads(krp("--config", str(home.config), "status", "--json").out)["data"]["secrets"]
    assert all(s["state"] != "IN FLIGHT" for s in status)
    return stored


@pytest.mark.parametrize(
    ("argv", "sig"),
    [(("rotate", "all"), signal.SIGTERM), (("rotate", "all"), signal.SIGINT), (("run",), signal.SIGTERM)],
    ids=["rotate-SIGTERM", "rotate-SIGINT", "run-SIGTERM"],
)
def test_a_signal_mid_rotation_stops_at_the_next_safe_point(slow_home, krp, tmp_path, argv, sig) -> None:  # type: ignore[no-untyped-def]
    if argv == ("run",):
        time.sleep(1.1)  # every secret falls due (schedule 1s)
    process = _start(slow_home, tmp_path, *argv)
    started = time.monotonic()
    if sig == signal.SIGINT:
        os.killpg(process.pid, sig)  # Ctrl-C: the whole foreground group
    else:
        process.send_signal(sig)  # systemctl stop, KillMode=mixed: keyroll alone
    out, err = process.communicate(timeout=30)
    assert process.returncode == 75, (out, err)  # what was not started: retry later
    assert time.monotonic() - started < 10
    assert "stopping at the next safe point" in err and "stopped at a safe point" in err
    assert "Traceback" not in err
    # The secret being applied was finished, the others not started: no recovery needed.
    stored = _in_step(slow_home, krp, tmp_path)
    changed = [name for name in NAMES if stored[name] != INITIAL[name]]
    assert len(changed) == 1, stored
    assert "not started: keyroll was stopping" in out
    assert krp("--config", str(slow_home.config), "validate").code == 0


def test_a_second_signal_stops_at_once_and_recovery_puts_things_in_step(slow_home, krp, tmp_path) -> None:  # type: ignore[no-untyped-def]
    process = _start(slow_home, tmp_path, "rotate", "all")
    process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGTERM  # died mid-apply, as `systemctl stop` + SIGKILL would leave it
    recovered = krp("--config", str(slow_home.config), "recover")
    assert recovered.code == 0, recovered.err
    _in_step(slow_home, krp, tmp_path)
    assert krp("--config", str(slow_home.config), "validate").code == 0


def test_a_stop_during_the_daemons_recovery_at_start_is_not_lost(slow_home, krp, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A rotation left in flight (keyroll killed mid-apply) ...
    process = _start(slow_home, tmp_path, "rotate", "all")
    process.kill()
    process.wait()
    for marker in tmp_path.glob("verifying-*"):
        marker.unlink()
    # ... which the daemon recovers at start: SIGTERM it while recovery asks the service.
    (tmp_path / "slow-verify").touch()  # recovery asks the service, a second per question
    daemon = _launch(slow_home.config, "daemon", once=_seen(tmp_path, "verifying-*"))
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=20)  # (before the fix it ran on, READY and all)
    assert daemon.returncode == 0, err
    assert "stopping at the next safe point" not in err  # the daemon's own stop, not the CLI's
    assert "ready" not in err
    # It stopped after the secret it was recovering: the others wait, safely, for the next start.
    status = json.loads(krp("--config", str(slow_home.config), "status", "--json").out)["data"]["secrets"]
    assert 1 <= sum(s["state"] == "IN FLIGHT" for s in status) < len(NAMES), status
    assert krp("--config", str(slow_home.config), "recover").code == 0
    _in_step(slow_home, krp, tmp_path)


def test_a_stop_during_the_checks_before_a_rotation_changes_nothing(slow_home, krp, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "slow-verify").touch()  # each check of a service takes a second
    for marker in tmp_path.glob("verifying-*"):
        marker.unlink()
    backups = sorted(slow_home.backups.iterdir())
    process = _launch(slow_home.config, "rotate", "all", once=_seen(tmp_path, "verifying-*"))
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 75, (out, err)
    assert out.count("not started: keyroll was stopping") == len(NAMES)
    assert sorted(slow_home.backups.iterdir()) == backups, "nothing changed: not even a backup"
    assert _in_step(slow_home, krp, tmp_path) == INITIAL


def test_ctrl_c_does_not_reach_a_restart_in_progress(home, krp, tmp_path) -> None:  # type: ignore[no-untyped-def]
    restart = tmp_path / "slow-restart"
    restart.write_text(f'#!/bin/sh\ntouch "{tmp_path}/restarting"\nsleep 1.5\ntouch "{tmp_path}/restarted"\n')
    restart.chmod(0o755)
    home.write_config(f'[secrets.app_key]\nkind = "api_key"\nrestart = ["command:{restart}"]\n')
    assert krp("--config", str(home.config), "init").code == 0
    (tmp_path / "restarting").unlink()
    (tmp_path / "restarted").unlink()
    before = home.value("app_key")
    process = _launch(home.config, "rotate", "app_key", once=_seen(tmp_path, "restarting"))
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, (out, err)  # the one secret was finished: nothing left to retry
    assert (tmp_path / "restarted").exists(), "the restart ran to its end"
    assert home.value("app_key") != before and "app_key: rotated" in out
