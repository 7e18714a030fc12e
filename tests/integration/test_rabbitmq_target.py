"""The `http` target against a real RabbitMQ node (Debian's rabbitmq-server, with the
management plugin, started once for this module on free loopback ports: the
machine's own node is left alone).  The recipe is docs/recipes.md's: a user's
password set with `PUT /api/users/NAME` (password and tags: PUT replaces the
user), checked with `GET /api/whoami` as that user; AMQP logins (pika) prove
what consumers see."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from peers import RabbitMQServer

pytest.importorskip("pika", reason="pip install 'keyroll[test]' (pika)")

_names = itertools.count(1)


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    with RabbitMQServer(tmp_path_factory.mktemp("rabbitmq")) as server:
        yield server


def recipe(rabbit: RabbitMQServer, user: str, admin_file: str = "rabbitmq-admin") -> str:
    return f"""
[targets.rabbit]
type = "http"
base_url = "{rabbit.api_url}"
timeout = "10s"
apply  = {{ method = "PUT", path = "/api/users/{user}", json = {{ password = "{{value}}", tags = "management" }}, auth = "basic-file:{rabbit.admin_user}:{admin_file}", expect = [201, 204] }}
verify = {{ method = "GET", path = "/api/whoami", auth = "basic:{user}:{{value}}", expect = [200] }}

[secrets.rabbit_password]
kind = "password"
services = ["worker"]
target = "rabbit"
"""


@pytest.fixture
def account(kr, home, rabbit: RabbitMQServer) -> tuple[str, str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    """A fresh RabbitMQ user adopted by keyroll: (user, its password, the --config arguments)."""
    user, password = f"app{next(_names)}", f"initial-{os.urandom(6).hex()}"
    rabbit.create_user(user, password)
    (home.root / "rabbitmq-admin").write_text(rabbit.admin_password + "\n")
    cfg = ("--config", str(home.write_config(recipe(rabbit, user))))
    adopted = kr(*cfg, "set", "rabbit_password", "--allow-weak", stdin=password + "\n")
    assert adopted.code == 0, adopted.both
    return user, password, cfg


def whoami(rabbit: RabbitMQServer, user: str, password: str) -> int:
    return rabbit.api("GET", "/api/whoami", user=user, password=password)[0]


def test_rotation_changes_the_password_consumers_log_in_with(kr, home, rabbit, account) -> None:  # type: ignore[no-untyped-def]
    user, old, cfg = account
    result = kr(*cfg, "rotate", "rabbit_password")
    assert result.code == 0, result.both
    new = home.value("rabbit_password")
    assert new != old
    assert whoami(rabbit, user, new) == 200 and whoami(rabbit, user, old) == 401
    assert rabbit.amqp_login_ok(user, new)
    assert not rabbit.amqp_login_ok(user, old)
    # PUT replaced the user: the recipe restated its tags, and its permissions stayed
    assert rabbit.api("GET", f"/api/users/{user}")[1]["tags"] == ["management"]
    logs = rabbit.log_text()
    assert f"/api/users/{user}" in logs  # the access log records requests: the value is never in a URL
    assert new not in logs and old not in logs
    assert new not in result.both and rabbit.admin_password not in result.both


def test_rollback_gives_the_previous_password_back(kr, home, rabbit, account) -> None:  # type: ignore[no-untyped-def]
    user, old, cfg = account
    assert kr(*cfg, "rotate", "rabbit_password").code == 0
    rotated = home.value("rabbit_password")
    result = kr(*cfg, "rollback", "rabbit_password")
    assert result.code == 0, result.both
    assert home.value("rabbit_password") == old
    assert rabbit.amqp_login_ok(user, old) and not rabbit.amqp_login_ok(user, rotated)


def test_a_value_full_of_json_special_characters(kr, home, rabbit, account) -> None:  # type: ignore[no-untyped-def]
    user, _, cfg = account
    nasty = 'q"uo\\te{value}\\n\\u0022</>{"a": [1]}\'é-and-long-enough'
    result = kr(*cfg, "set", "rabbit_password", "--allow-weak", stdin=nasty + "\n")
    assert result.code == 0, result.both
    assert home.value("rabbit_password") == nasty
    assert whoami(rabbit, user, nasty) == 200
    assert rabbit.amqp_login_ok(user, nasty)


def test_wrong_admin_credentials_are_a_failure(kr, home, rabbit, account) -> None:  # type: ignore[no-untyped-def]
    user, old, cfg = account
    (home.root / "rabbitmq-admin").write_text("not-the-admin-password\n")
    result = kr(*cfg, "rotate", "rabbit_password")
    assert result.code == 1, result.both
    assert "the service does not accept the credentials of this request (basic-file)" in result.both
    assert "not-the-admin-password" not in result.both
    assert home.value("rabbit_password") == old and rabbit.amqp_login_ok(user, old)
    # The broker turned the change down: nothing to roll back, nothing left for `recover`.
    assert "left in flight" not in result.both and "rolled back" in result.both
    assert "nothing was in flight" in kr(*cfg, "recover").out


@pytest.mark.parametrize("step", ["apply", "verify", "store-write", "store", "finish"])
def test_sigkill_at_each_step_then_recovery_agrees_with_the_broker(home, rabbit, account, step: str) -> None:  # type: ignore[no-untyped-def]
    user, old, cfg = account
    argv = [sys.executable, "-m", "keyroll", *cfg]
    killed = subprocess.run(
        [*argv, "rotate", "rabbit_password"], env={**os.environ, "KEYROLL_FAILPOINT": step}, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL
    recovered = subprocess.run([*argv, "recover"], capture_output=True, text=True)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    stored = home.value("rabbit_password")
    assert rabbit.amqp_login_ok(user, stored)
    assert stored == old or not rabbit.amqp_login_ok(user, old)
    assert subprocess.run([*argv, "validate"], capture_output=True).returncode == 0
    assert stored not in rabbit.log_text()


def test_a_broker_that_is_down_is_temporary(kr, home, rabbit, account) -> None:  # type: ignore[no-untyped-def]
    """Last in this module: it stops the node (and starts it again)."""
    user, old, cfg = account
    rabbit.stop()
    try:
        result = kr(*cfg, "rotate", "rabbit_password")
        assert result.code == 75, result.both
        assert "refused" in result.both.lower()
        assert home.value("rabbit_password") == old
    finally:
        rabbit.start()
    assert kr(*cfg, "rotate", "rabbit_password").code == 0
    assert rabbit.amqp_login_ok(user, home.value("rabbit_password"))
