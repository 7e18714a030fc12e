"""The rotation transaction with a `command` target and real consumers: a small
program stands in for the service that checks the value (it is exactly the
interface keyroll offers users: phase in the environment, value on stdin), a
restart command and real health checks (TCP, HTTP, command) follow the rotation."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SERVICE = textwrap.dedent(
    """\
    #!{python}
    # A stand-in service: remembers which values it accepts, like a database would.
    import json, os, sys, pathlib
    state = pathlib.Path(os.environ["FAKE_STATE"])
    log = pathlib.Path(os.environ["FAKE_LOG"])
    phase = os.environ["KEYROLL_PHASE"]
    lines = sys.stdin.read().split("\\n")
    with log.open("a") as f:
        f.write(json.dumps({{"phase": phase, "argv": sys.argv, "secret": os.environ["KEYROLL_SECRET"]}}) + "\\n")
    if pathlib.Path(os.environ["FAKE_STATE"] + ".down").exists():
        print("service is down", file=sys.stderr)
        sys.exit(75)
    accepted = json.loads(state.read_text()) if state.exists() else []
    if phase == "verify":
        sys.exit(0 if lines[0] in accepted else 1)
    if phase == "apply" and pathlib.Path(os.environ["FAKE_STATE"] + ".refuse").exists():
        print("refusing " + lines[0], file=sys.stderr)  # a careless program echoing the value
        sys.exit(1)
    state.write_text(json.dumps([lines[0]]))
    """
)

RESTART = textwrap.dedent(
    """\
    #!/bin/sh
    # A consumer restart: counts restarts; the consumer copies the secret when it starts.
    n=$(cat "$FAKE_COUNTER" 2>/dev/null || echo 0)
    echo $((n + 1)) > "$FAKE_COUNTER"
    """
)

HEALTH_ODD_FAILS = textwrap.dedent(
    """\
    #!/bin/sh
    # Healthy before any restart and after an even number of them (the rollback's).
    n=$(cat "$FAKE_COUNTER" 2>/dev/null || echo 0)
    [ $((n % 2)) -eq 0 ] || { echo "consumer crashed on start" >&2; exit 1; }
    """
)


@pytest.fixture
def service(home):  # type: ignore[no-untyped-def]
    """Scripts and state files of the stand-in service and its consumer.  The service
    finds its files through the target's `env` entries (FAKE_STATE, FAKE_LOG: keyroll
    passes on nothing else of its environment); the consumer's scripts name theirs."""
    bin_dir = home.root / "bin"
    bin_dir.mkdir()
    counter = f"'{home.root / 'restarts'}'"
    scripts = {
        "fake-service": SERVICE.format(python=sys.executable),
        "restart-consumer": RESTART.replace('"$FAKE_COUNTER"', counter),
        "health-odd-fails": HEALTH_ODD_FAILS.replace('"$FAKE_COUNTER"', counter),
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    state = home.root / "service.json"
    env = [f"FAKE_STATE={state}", f"FAKE_LOG={home.root / 'service.log'}"]

    class Service:
        def accepted(self) -> list[str]:
            return json.loads(state.read_text()) if state.exists() else []

        def accept(self, value: str) -> None:
            state.write_text(json.dumps([value]))

        def calls(self) -> list[dict[str, object]]:
            log = home.root / "service.log"
            return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

        def down(self, is_down: bool = True) -> None:
            flag = Path(str(state) + ".down")
            flag.touch() if is_down else flag.unlink(missing_ok=True)

        def refuse(self) -> None:
            Path(str(state) + ".refuse").touch()

        def restarts(self) -> int:
            counter = home.root / "restarts"
            return int(counter.read_text()) if counter.exists() else 0

        bin = bin_dir
        env_entries = env

    return Service()


def write_config(home, service, restart: str = "", health: str = "") -> tuple[str, str]:  # type: ignore[no-untyped-def]
    home.write_config(
        f"""
[targets.app]
type = "command"
argv = ["{service.bin / "fake-service"}", "--no-secrets-here"]
env = {json.dumps(service.env_entries)}

[secrets.app_password]
kind = "password"
services = ["app"]
target = "app"
restart = [{restart}]
health = [{health}]
health_timeout = "2s"

[secrets.plain_key]
kind = "api_key"
services = ["worker"]
"""
    )
    return ("--config", str(home.config))


def test_rotation_applies_tests_and_stores_through_the_command(kr, home, service) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(home, service, restart=f'"command:{service.bin / "restart-consumer"}"')
    assert kr(*cfg, "init").code == 0
    initial = home.value("app_password")
    assert service.accepted() == [initial]  # init applied the created value through the target
    assert service.restarts() == 1  # and restarted the consumer so that it reads it
    result = kr(*cfg, "rotate", "all")
    assert result.code == 0, result.both
    new = home.value("app_password")
    assert new != initial and service.accepted() == [new]
    assert (
        "app_password: rotated -> command" in result.out
        and f"restarted command:{service.bin / 'restart-consumer'}" in result.out
    )
    assert "plain_key: rotated in the store only" in result.out
    assert service.restarts() == 2
    phases = [c["phase"] for c in service.calls()]
    assert phases[-3:] == ["verify", "apply", "verify"]  # check (current value), apply, test
    assert all(initial not in json.dumps(c["argv"]) and new not in json.dumps(c["argv"]) for c in service.calls())
    assert all(c["secret"] == "app_password" for c in service.calls())


def test_a_failed_health_check_rolls_back_target_store_and_consumers(kr, home, service) -> None:  # type: ignore[no-untyped-def]
    restart = f'"command:{service.bin / "restart-consumer"}"'
    cfg = write_config(home, service, restart=restart)
    assert kr(*cfg, "init").code == 0
    kr(*cfg, "rotate", "app_password")  # two restarts so far: the consumer is healthy
    write_config(home, service, restart=restart, health=f'"command:{service.bin / "health-odd-fails"}"')
    before = home.value("app_password")
    restarts = service.restarts()
    result = kr(*cfg, "rotate", "app_password")
    assert result.code == 1, result.both  # healthy again once back on the old value: not an outage
    assert (
        "health check failed" in result.out
        and "consumer crashed on start" in result.out
        and "rolled back" in result.out
        and "healthy again on the previous value" in result.out
    )
    assert home.value("app_password") == before
    assert service.accepted() == [before]
    assert service.restarts() == restarts + 2  # restarted with the new value, then again with the old
    history = json.loads(kr(*cfg, "history", "app_password", "--json").out)["data"]["entries"]
    assert history[0]["outcome"] == "failed"
    assert kr(*cfg, "validate").code == 0


def test_a_stack_already_failing_is_not_rotated(kr, home, service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    cfg = write_config(home, service, health=f'"tcp:127.0.0.1:{port}"')
    created = kr(*cfg, "init")  # nothing to roll back to: the new secret is kept, and the failure reported
    assert created.code == 75
    assert (
        f"app_password: created -> command {service.bin / 'fake-service'} (target app) (health check failed"
        in created.out
    )
    assert "kept: there is no previous value to go back to" in created.out
    assert service.accepted() == [home.value("app_password")]
    before = home.value("app_password")
    result = kr(*cfg, "rotate", "app_password")
    assert result.code == 75
    assert f"consumers already unhealthy before any change (tcp:127.0.0.1:{port}:" in result.out
    assert home.value("app_password") == before and service.accepted() == [before]
    with socket.create_server(("127.0.0.1", port)):
        assert kr(*cfg, "rotate", "app_password").code == 0
    assert home.value("app_password") != before


def test_http_health_checks(kr, home, service) -> None:  # type: ignore[no-untyped-def]
    status = {"code": 200}
    expected = "Basic " + base64.b64encode(b"probe:s3cr et").decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            protected = self.path.startswith("/protected")
            authorized = self.headers.get("Authorization") == expected
            self.send_response(401 if protected and not authorized else status["code"])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/health"
        cfg = write_config(home, service, health=f'"{url}"')
        assert kr(*cfg, "init").code == 0
        assert kr(*cfg, "rotate", "app_password").code == 0
        status["code"] = 503
        result = kr(*cfg, "rotate", "app_password")
        assert result.code == 75 and f"{url}: HTTP 503" in result.out
        # Credentials in the URL go as HTTP Basic auth, and are never shown.
        status["code"] = 200
        port = server.server_address[1]
        protected = f"http://probe:s3cr%20et@127.0.0.1:{port}/protected?token=T0KEN"
        cfg = write_config(home, service, health=f'"{protected}"')
        assert kr(*cfg, "rotate", "app_password").code == 0
        cfg = write_config(home, service, health=f'"{protected.replace("s3cr", "wrong")}"')
        refused = kr(*cfg, "rotate", "app_password")
        assert refused.code == 75 and f"http://***@127.0.0.1:{port}/protected?***: HTTP 401" in refused.out
        assert "wrong" not in refused.both and "T0KEN" not in refused.both
    finally:
        server.shutdown()


@pytest.mark.parametrize("url", ["http://u:PASS@[::1:9/x", "http://u:PASS@host:99999/x", "http:///x"])
def test_a_health_url_that_cannot_work_is_a_config_error(kr, home, url) -> None:  # type: ignore[no-untyped-def]
    home.write_config(f'[secrets.app_key]\nkind = "api_key"\nhealth = ["{url}"]\n')
    result = kr("--config", str(home.config), "config", "validate")
    assert result.code == 2 and "secrets.app_key.health" in result.err and result.err.count("\n") == 1
    assert "PASS" not in result.err


def test_a_consumer_that_refuses_the_new_value_is_a_failure_not_an_outage(kr, home, service) -> None:  # type: ignore[no-untyped-def]
    """Healthy again once rolled back: the new value is the cause (exit 1, not 75, so a
    timer does not retry it as if the service were down)."""
    pinned = home.root / "consumer-knows"
    check = home.root / "consumer-check"
    check.write_text(f'#!/bin/sh\ntest "$(cat {home.secrets / "app_password"})" = "$(cat {pinned})"\n')
    check.chmod(0o755)
    cfg = write_config(home, service, health=f'"command:{check}"')
    pinned.write_text("")
    assert kr(*cfg, "init").code == 75  # created, kept (nothing to go back to), consumer not healthy
    pinned.write_text(home.value("app_password"))  # the consumer only ever works with this value
    before = home.value("app_password")
    result = kr(*cfg, "rotate", "app_password")
    assert result.code == 1, result.both
    assert "healthy again on the previous value, so the new one is refused" in result.out
    assert home.value("app_password") == before and service.accepted()[-1] == before


def test_a_service_that_is_down_fails_cleanly_and_the_others_go_on(kr, home, service) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(home, service)
    assert kr(*cfg, "init").code == 0
    before = {n: home.value(n) for n in ("app_password", "plain_key")}
    service.down()
    result = kr(*cfg, "rotate", "all")
    assert result.code == 75
    line = next(ln for ln in result.out.splitlines() if ln.startswith("app_password:"))
    assert "failed" in line and "service is down" in line
    assert home.value("app_password") == before["app_password"]
    assert home.value("plain_key") != before["plain_key"]
    assert json.loads(kr(*cfg, "status", "--json").out)["data"]["secrets"][0]["state"] == "FAILED"
    service.down(False)
    assert kr(*cfg, "rotate", "app_password").code == 0


def test_a_refused_value_is_reported_without_echoing_it(kr, home, service) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(home, service)
    assert kr(*cfg, "init").code == 0
    service.refuse()
    result = kr(*cfg, "rotate", "app_password")
    assert result.code == 1
    assert "apply failed: exit status 1: (output withheld: it contained part of a secret)" in result.out
    assert service.accepted() == [home.value("app_password")]


def test_set_adopts_what_the_service_already_accepts_and_applies_the_rest(kr, home, service) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(home, service)
    live = "L" * 32
    service.accept(live)
    adopted = kr(*cfg, "set", "app_password", stdin=live)
    assert adopted.code == 0 and "app_password: adopted" in adopted.out
    assert [c["phase"] for c in service.calls()] == ["verify"]  # recorded only, nothing applied
    chosen = "C" * 32
    applied = kr(*cfg, "set", "app_password", stdin=chosen)
    assert applied.code == 0 and "app_password: set" in applied.out
    assert service.accepted() == [chosen] and home.value("app_password") == chosen


def test_dry_run_plan_names_targets_restarts_and_checks(kr, home, service) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(home, service, restart='"systemd:app.service"', health='"tcp:127.0.0.1:1"')
    result = kr(*cfg, "rotate", "all", "--dry-run")
    assert result.code == 0
    assert "target:  command" in result.out
    assert "restart: systemctl try-restart app.service" in result.out
    assert "health:  tcp:127.0.0.1:1" in result.out
    assert "note:    missing from the store" in result.out


@pytest.mark.parametrize("step", ["create", "apply", "verify", "store-write", "store", "restart", "finish"])
def test_sigkill_at_each_step_then_recovery_agrees_with_the_service(home, service, step: str) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(home, service, restart=f'"command:{service.bin / "restart-consumer"}"')
    argv = [sys.executable, "-m", "keyroll", *cfg]
    assert subprocess.run([*argv, "init"], capture_output=True).returncode == 0
    killed = subprocess.run(
        [*argv, "rotate", "app_password"], env={**os.environ, "KEYROLL_FAILPOINT": step}, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL
    recovered = subprocess.run([*argv, "recover"], capture_output=True, text=True)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert service.accepted() == [home.value("app_password")]
    assert subprocess.run([*argv, "validate"], capture_output=True).returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_failed_set_keeps_an_unresolved_rotation(kr, home, service) -> None:  # type: ignore[no-untyped-def]
    """`keyroll set` settles a rotation left in flight only once the set itself begins;
    if it fails before that, the interrupted rotation's values stay in the journal."""
    cfg = write_config(home, service)
    argv = [sys.executable, "-m", "keyroll", *cfg]
    assert kr(*cfg, "init").code == 0
    killed = subprocess.run([*argv, "rotate", "app_password"], env={**os.environ, "KEYROLL_FAILPOINT": "verify"})
    assert killed.returncode == -signal.SIGKILL
    taken = service.accepted()[0]
    assert home.value("app_password") != taken  # the service has the new value, the store the old one
    service.down()
    failed = kr(*cfg, "set", "app_password", stdin="Q" * 32)
    assert failed.code == 75, failed.both
    service.down(False)
    recovered = kr(*cfg, "recover")
    assert recovered.code == 0, recovered.both
    assert home.value("app_password") == taken and service.accepted() == [taken], failed.both + recovered.both


def test_recovery_restarts_the_consumers_of_a_store_only_secret(home, service) -> None:  # type: ignore[no-untyped-def]
    home.write_config(
        f'[secrets.plain_key]\nkind = "api_key"\nrestart = ["command:{service.bin / "restart-consumer"}"]\n'
    )
    argv = [sys.executable, "-m", "keyroll", "--config", str(home.config)]
    assert subprocess.run([*argv, "init"], capture_output=True).returncode == 0
    restarts = service.restarts()
    killed = subprocess.run([*argv, "rotate", "plain_key"], env={**os.environ, "KEYROLL_FAILPOINT": "store"})
    assert killed.returncode == -signal.SIGKILL
    assert service.restarts() == restarts  # killed after the store write, before the restart
    assert subprocess.run([*argv, "recover"], capture_output=True).returncode == 0
    assert service.restarts() == restarts + 1


def test_a_value_changed_by_hand_after_a_crash_is_left_alone(home) -> None:  # type: ignore[no-untyped-def]
    home.write_config('[secrets.plain_key]\nkind = "api_key"\n')
    argv = [sys.executable, "-m", "keyroll", "--config", str(home.config)]
    assert subprocess.run([*argv, "init"], capture_output=True).returncode == 0
    killed = subprocess.run([*argv, "rotate", "plain_key"], env={**os.environ, "KEYROLL_FAILPOINT": "create"})
    assert killed.returncode == -signal.SIGKILL
    (home.secrets / "plain_key").write_text("H" * 64)
    done = subprocess.run([*argv, "recover"], capture_output=True, text=True)
    assert done.returncode == 1 and "changed by hand after the interrupted rotation" in done.stdout
    assert home.value("plain_key") == "H" * 64
    settled = subprocess.run([*argv, "set", "plain_key"], input="H" * 64, capture_output=True, text=True)
    assert settled.returncode == 0, settled.stdout
    assert subprocess.run([*argv, "validate"], capture_output=True).returncode == 0


def test_a_restart_that_cannot_run_is_a_hard_failure(kr, home, service) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(home, service, restart='"command:false"')
    assert kr(*cfg, "init").code == 1  # created and kept (nothing to go back to); retrying will not help
    before = home.value("app_password")
    result = kr(*cfg, "rotate", "app_password")
    assert result.code == 1, result.both  # retrying will not help: not a temporary failure
    assert "restart failed: command:false: exit status 1" in result.out and "rolled back" in result.out
    assert home.value("app_password") == before and service.accepted() == [before]


def test_a_program_left_running_by_a_killed_keyroll_cannot_land_after_recovery(home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    accepted = tmp_path / "accepted"
    started = tmp_path / "applying"
    program = tmp_path / "slow-service"
    program.write_text(
        f"""#!/bin/sh
value=$(head -n1)
case "$KEYROLL_PHASE" in
  apply) touch {started}; sleep 3; echo "$value" > {accepted} ;;
  rollback) echo "$value" > {accepted} ;;
  verify) [ "$value" = "$(cat {accepted})" ] ;;
esac
"""
    )
    program.chmod(0o755)
    home.write_config(
        f'[targets.slow]\ntype = "command"\nargv = ["{program}"]\n[secrets.slow_password]\ntarget = "slow"\n'
    )
    argv = [sys.executable, "-m", "keyroll", "--config", str(home.config)]
    accepted.write_text("I" * 32 + "\n")
    assert (
        subprocess.run([*argv, "set", "slow_password"], input="I" * 32, capture_output=True, text=True).returncode == 0
    )
    rotation = subprocess.Popen(
        [*argv, "rotate", "slow_password"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while not started.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    rotation.kill()  # SIGKILL while the program is applying the new value
    rotation.wait()
    recovered = subprocess.run([*argv, "recover"], capture_output=True, text=True)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    time.sleep(3.5)  # long enough for a straggling apply to land
    assert accepted.read_text().strip() == home.value("slow_password")


def test_a_restart_that_cannot_run_is_a_failure_not_a_retry(kr, home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home.write_config(
        '[secrets.x_key]\nkind = "api_key"\nrestart = ["command:/nonexistent/reload"]\n'
        '[secrets.y_key]\nkind = "api_key"\nrestart = ["command:/bin/false"]\n'
    )
    cfg = ("--config", str(home.config))
    created = kr(*cfg, "init")
    assert created.code == 1, created.both  # nothing will make these work by retrying: not 75
    assert "x_key: created" in created.out and "not found" in created.out and "exit status 1" in created.out
    assert len(home.value("x_key")) == 64 and len(home.value("y_key")) == 64  # kept: nothing to go back to
    plan = kr(*cfg, "rotate", "--dry-run", "all")
    assert "/nonexistent/reload: not found or not executable" in plan.out
    before = home.value("x_key")
    rotated = kr(*cfg, "rotate", "all")
    assert rotated.code == 1
    assert (
        "x_key: failed (command:/nonexistent/reload: /nonexistent/reload: not found or not executable; not rotated)"
        in rotated.out
    )
    assert home.value("x_key") == before  # refused before any change, not applied and rolled back


def test_a_program_on_the_targets_own_path_is_found(kr, home, service) -> None:  # type: ignore[no-untyped-def]
    """`argv = ["fake-service"]` with `env = ["PATH=<its folder>"]`: the program is looked
    up on the PATH it runs with, not keyroll's, by `config validate` and by the target's
    own check."""
    env = [*service.env_entries, f"PATH={service.bin}:/usr/bin:/bin"]
    home.write_config(
        f"""
[targets.app]
type = "command"
argv = ["fake-service"]
env = {json.dumps(env)}

[secrets.app_password]
kind = "password"
services = ["app"]
target = "app"
"""
    )
    cfg = ("--config", str(home.config))
    assert kr(*cfg, "init").code == 0
    validated = kr(*cfg, "config", "validate")
    assert validated.code == 0, validated.both
    assert "not found" not in validated.both
    assert "reachable: command fake-service (target app)" in validated.out
    home.write_config(home.config.read_text().replace(f"{service.bin}:", ""))
    refused = kr(*cfg, "config", "validate")
    assert refused.code == 1, refused.both
    assert "fake-service: not found or not executable" in refused.out
