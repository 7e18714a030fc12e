"""What the programs keyroll runs (a command target, `command:` restarts and health
checks) get from it and what keyroll repeats of them: stdin holds exactly the value
(the replaced one only with `old_value = true`), the environment is minimal, output
holding part of a value is withheld everywhere (messages, history, JSON, a notice
sent to a real HTTP endpoint), and a keyroll process leaves no core file behind.
Real keyroll processes, real shell programs, a real SIGQUIT."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import peers
from tests_helpers import keyroll_argv


def parts(value: str, size: int = 8) -> set[str]:
    """Every run of `size` characters of a value."""
    return {value[i : i + size] for i in range(len(value) - size + 1)}


def assert_holds_no_part(text: str, value: str) -> None:
    leaked = sorted(part for part in parts(value) if part in text)
    assert not leaked, f"{len(leaked)} runs of 8 characters of a value appear"


def program(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def command_config(home, argv: Path, extra: str = "", secret: str = "") -> tuple[str, str]:  # type: ignore[no-untyped-def]
    home.write_config(
        f"""
[targets.app]
type = "command"
argv = ["{argv}"]
{extra}

[secrets.app_password]
target = "app"
{secret}
"""
    )
    return ("--config", str(home.config))


# --- stdin: the value alone ----------------------------------------------------------------


def recording_service(tmp_path: Path) -> tuple[Path, Path]:
    """A service that keeps the value it accepts and keeps, call by call, exactly what
    it read on stdin (all of it, as `v=$(cat)` or `curl --data-binary @-` would)."""
    accepted, calls = tmp_path / "accepted", tmp_path / "calls"
    calls.mkdir()
    path = program(
        tmp_path / "service",
        f"""n=$(ls {calls} | wc -l)
f={calls}/$(printf %03d "$n").$KEYROLL_PHASE
cat > "$f"
first=$(head -n1 "$f")
case "$KEYROLL_PHASE" in
  verify) [ "$first" = "$(cat {accepted} 2>/dev/null)" ] ;;
  apply|rollback) printf %s "$first" > {accepted} ;;
esac
""",
    )
    return path, calls


def stdin_by_phase(calls: Path) -> list[tuple[str, bytes]]:
    return [(path.suffix[1:], path.read_bytes()) for path in sorted(calls.iterdir())]


def test_a_program_reading_all_of_stdin_gets_the_value_alone_in_every_phase(kr, home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, calls = recording_service(tmp_path)
    pinned = tmp_path / "pinned"  # the consumer works with this value only
    health = program(tmp_path / "health", f'[ "$(cat {tmp_path / "accepted"})" = "$(cat {pinned})" ]\n')
    cfg = command_config(home, service)
    assert kr(*cfg, "init").code == 0
    first = home.value("app_password")
    assert kr(*cfg, "rotate", "app_password").code == 0
    second = home.value("app_password")
    pinned.write_text(second)
    command_config(home, service, secret=f'health = ["command:{health}"]\nhealth_timeout = "1s"')
    failed = kr(*cfg, "rotate", "app_password")  # apply, verify, then a rollback to `second`
    assert failed.code == 1 and "rolled back" in failed.out, failed.both
    seen = stdin_by_phase(calls)
    assert {phase for phase, _ in seen} == {"apply", "verify", "rollback"}
    for phase, received in seen:  # exactly one value and one newline, whatever the phase
        assert received.endswith(b"\n") and received.count(b"\n") == 1 and len(received) == 33, phase
    assert ("apply", f"{second}\n".encode()) in seen and ("rollback", f"{second}\n".encode()) in seen
    assert ("verify", f"{first}\n".encode()) in seen
    assert home.value("app_password") == second


def test_old_value_true_sends_the_replaced_value_on_line_2(kr, home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    service, calls = recording_service(tmp_path)
    pinned = tmp_path / "pinned"  # the consumer works with this value only
    health = program(tmp_path / "health", f'[ "$(cat {tmp_path / "accepted"})" = "$(cat {pinned})" ]\n')
    cfg = command_config(home, service, extra="old_value = true")
    assert kr(*cfg, "init").code == 0
    first = home.value("app_password")
    assert kr(*cfg, "rotate", "app_password").code == 0
    second = home.value("app_password")
    pinned.write_text(second)
    command_config(
        home, service, extra="old_value = true", secret=f'health = ["command:{health}"]\nhealth_timeout = "1s"'
    )
    assert kr(*cfg, "rotate", "app_password").code == 1
    seen = stdin_by_phase(calls)
    assert ("apply", f"{second}\n{first}\n".encode()) in seen  # the new value, then the one it replaces
    third = [received for phase, received in seen if phase == "apply"][-1].split(b"\n")[0].decode()
    assert ("apply", f"{third}\n{second}\n".encode()) in seen
    assert ("rollback", f"{second}\n{third}\n".encode()) in seen  # back to the old value; line 2 the undone one
    assert all(received.count(b"\n") == 1 for phase, received in seen if phase == "verify")


# --- output: never a part of a value ------------------------------------------------------


@pytest.fixture
def http():  # type: ignore[no-untyped-def]
    with peers.HTTPSink() as sink:
        yield sink


@pytest.mark.parametrize("echoed", ["new value", "current value"])
def test_output_holding_31_of_32_characters_is_withheld_everywhere(kr, home, tmp_path, http, echoed) -> None:  # type: ignore[no-untyped-def]
    accepted, refuse, pending = tmp_path / "accepted", tmp_path / "refuse", tmp_path / "pending"
    leak = (
        '"$(printf %s "$v" | cut -c1-31)"'
        if echoed == "new value"
        else f'"$(cut -c2-32 {home.secrets / "app_password"})"'
    )
    service = program(
        tmp_path / "service",
        f"""v=$(head -n1)
case "$KEYROLL_PHASE" in
  verify) [ "$v" = "$(cat {accepted})" ] ;;
  *) if [ -e {refuse} ]; then
       printf %s "$v" > {pending}
       printf '\\n  rejected: %s is not allowed here\\nsecond line\\n' {leak} >&2
       exit 1
     fi
     printf %s "$v" > {accepted} ;;
esac
""",
    )
    url = http.url("/keyroll").replace("http://", "json://")
    home.write_config(
        f"""
[defaults]
schedule = "1s"

[notify]
urls = ["{url}"]
on = ["failure"]

[targets.app]
type = "command"
argv = ["{service}"]

[secrets.app_password]
target = "app"
"""
    )
    cfg = ("--config", str(home.config))
    assert kr(*cfg, "init").code == 0
    current = home.value("app_password")
    refuse.touch()
    time.sleep(1.1)
    outputs = []
    ran = kr(*cfg, "-v", "run", "--json")  # (-v shows no more of it)
    assert ran.code == 1, ran.both
    http.wait_for(1, timeout=20)
    rotated = kr(*cfg, "-v", "rotate", "app_password")
    assert rotated.code == 1
    assert "apply failed: exit status 1: (output withheld: it contained part of a secret)" in rotated.out
    outputs += [ran.both, rotated.both, json.dumps(http.bodies)]
    for argv in (("history", "--json"), ("history",), ("status", "--json"), ("validate", "--json")):
        outputs.append(kr(*cfg, *argv).both)
    everything = "\n".join(outputs)
    assert "output withheld" in json.dumps(http.bodies)
    assert "rejected" not in everything and "second line" not in everything
    for value in (current, pending.read_text()):
        assert len(value) == 32
        assert_holds_no_part(everything, value)


def test_a_first_line_without_any_part_of_a_value_is_shown(kr, home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    service = program(
        tmp_path / "service",
        f"""v=$(head -n1)
[ "$KEYROLL_PHASE" = verify ] && [ "$v" = "$(cat {tmp_path / "accepted"} 2>/dev/null)" ] && exit 0
[ -e {tmp_path / "refuse"} ] && {{ printf '\\nHTTP 403 from the admin API\\n%s\\n' "$v" >&2; exit 1; }}
printf %s "$v" > {tmp_path / "accepted"}
""",
    )
    cfg = command_config(home, service)
    assert kr(*cfg, "init").code == 0
    (tmp_path / "refuse").touch()
    result = kr(*cfg, "rotate", "app_password")
    assert result.code == 1
    assert "apply failed: exit status 1: HTTP 403 from the admin API" in result.out  # the first line only


# --- environment and core dumps -----------------------------------------------------------

POISON = {
    "SOPS_AGE_KEY_FILE": "/poison/age-key.txt",
    "SOPS_AGE_KEY": "AGE-SECRET-KEY-1POISONPOISONPOISON",
    "CREDENTIALS_DIRECTORY": "/poison/credentials",
    "PGPASSWORD": "poison-pg-password",
    "AWS_SECRET_ACCESS_KEY": "poison-aws",
}


def test_programs_get_a_minimal_environment(home, krp, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dumps = tmp_path / "env"
    dumps.mkdir()
    service = program(
        tmp_path / "service",
        f"""v=$(head -n1)
env > {dumps}/target.$KEYROLL_PHASE
[ "$KEYROLL_PHASE" = verify ] && [ "$v" != "$(cat {tmp_path / "accepted"} 2>/dev/null)" ] && exit 1
[ "$KEYROLL_PHASE" = verify ] || printf %s "$v" > {tmp_path / "accepted"}
""",
    )
    restart = program(tmp_path / "restart", f"env > {dumps}/restart\n")
    health = program(tmp_path / "health", f"env > {dumps}/health\n")
    cfg = command_config(
        home,
        service,
        extra='env = ["GRAFANA_URL=http://127.0.0.1:3000", "PGPASSWORD=given-on-purpose"]',
        secret=f'restart = ["command:env RESTART_URL=http://127.0.0.1:9 {restart}"]\nhealth = ["command:{health}"]',
    )
    env = {**POISON, "LANG": "C.UTF-8"}
    for argv in (("init",), ("rotate", "app_password")):
        result = krp(*cfg, *argv, env=env)
        assert result.code == 0, result.both
    found = {
        path.name: dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        for path in dumps.iterdir()
    }
    assert set(found) == {"target.apply", "target.verify", "restart", "health"}
    for name, seen in found.items():
        leaked = {key for key in POISON if key in seen and seen[key] == POISON[key]}
        assert not leaked, (name, leaked)
        assert not {key for key in seen if key.startswith(("SOPS_", "CREDENTIALS", "AWS_"))}, name
        assert seen["KEYROLL_SECRET"] == "app_password" and seen["LANG"] == "C.UTF-8" and "PATH" in seen
        assert "KEYROLL_CONFIG" not in seen and "FAKE" not in seen
    assert found["target.apply"]["KEYROLL_PHASE"] == "apply" and found["target.apply"]["KEYROLL_TARGET"] == "app"
    assert found["target.apply"]["GRAFANA_URL"] == "http://127.0.0.1:3000"  # what the target's env names
    assert found["target.apply"]["PGPASSWORD"] == "given-on-purpose"
    assert "GRAFANA_URL" not in found["restart"] and "PGPASSWORD" not in found["health"]
    assert found["restart"]["RESTART_URL"] == "http://127.0.0.1:9"  # (named in the command itself)


def test_a_bad_env_entry_is_a_config_error(kr, home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for entry, why in (("NOEQUALS", "write NAME=value"), ("KEYROLL_PHASE=x", "keyroll's own"), ("1X=y", "NAME=value")):
        cfg = command_config(home, Path("/bin/true"), extra=f'env = ["{entry}"]')
        result = kr(*cfg, "config", "validate")
        assert result.code == 2 and "targets.app.env" in result.err and why in result.err, result.err
        assert "NOEQUALS" not in result.err  # (an entry without "=" may be a value: never quoted)


@pytest.mark.parametrize("command", ["recover", "rotate", "status"])
def test_keyroll_is_not_dumpable_and_its_core_limit_is_0(home, command) -> None:  # type: ignore[no-untyped-def]
    """Checked in a real process started with an unlimited core limit: every command
    sets it to 0; writing ones also become non-dumpable (read-only ones hold nothing
    the store does not, and skip the cost of ctypes)."""
    probe = (
        "import ctypes, resource, sys\n"
        "from keyroll.cli import main\n"
        f"main([{command!r}])\n"
        "dumpable = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)\n"  # PR_GET_DUMPABLE
        "print('RESULT', dumpable, resource.getrlimit(resource.RLIMIT_CORE)[0], file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)),
        check=False,
    )
    expected = "RESULT 1 0" if command == "status" else "RESULT 0 0"
    assert expected in done.stderr, done.stderr


def test_sigquit_mid_rotation_leaves_no_core_file(home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The kernel here writes cores as `core` in the process's folder: a keyroll
    started with an unlimited core limit, killed by SIGQUIT while its command target
    applies a new value, leaves none (and its limit, read by the program, is 0)."""
    if Path("/proc/sys/kernel/core_pattern").read_text().strip() not in ("core", "core.%p"):
        pytest.skip("this test reads core files from the working folder (kernel.core_pattern = core)")
    started, limits, pid_file = tmp_path / "started", tmp_path / "limits", tmp_path / "pid"
    service = program(
        tmp_path / "service",
        f"""v=$(head -n1)
case "$KEYROLL_PHASE" in
  verify) [ "$v" = "$(cat {tmp_path / "accepted"} 2>/dev/null)" ] ;;
  apply) if [ -e {tmp_path / "slow"} ]; then
           cat /proc/$PPID/limits > {limits}; echo $$ > {pid_file}; touch {started}; sleep 60
         fi
         printf %s "$v" > {tmp_path / "accepted"} ;;
esac
""",
    )
    cfg = command_config(home, service)
    folder = tmp_path / "cwd"
    folder.mkdir()

    def unlimited() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    argv = [*keyroll_argv(), *cfg]
    assert subprocess.run([*argv, "init"], cwd=folder, capture_output=True, check=False).returncode == 0
    (tmp_path / "slow").touch()
    rotation = subprocess.Popen(
        [*argv, "rotate", "app_password"],
        cwd=folder,
        preexec_fn=unlimited,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline and rotation.poll() is None
            time.sleep(0.02)
        rotation.send_signal(signal.SIGQUIT)
        assert rotation.wait(timeout=20) == -signal.SIGQUIT
    finally:
        if rotation.poll() is None:
            rotation.kill()
        if pid_file.exists():
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    assert re.search(r"^Max core file size +0 ", limits.read_text(), re.M), limits.read_text()
    assert not list(folder.iterdir()), "a core file was written"


def test_config_show_does_not_print_env_values(kr, home) -> None:  # type: ignore[no-untyped-def]
    cfg = command_config(home, Path("/bin/true"), extra='env = ["GRAFANA_TOKEN=glsa_TokenValue123"]')
    for argv in (("config", "show"), ("config", "show", "--json")):
        shown = kr(*cfg, *argv)
        assert shown.code == 0 and "GRAFANA_TOKEN=***" in shown.out and "TokenValue123" not in shown.out
