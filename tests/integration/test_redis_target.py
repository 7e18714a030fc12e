"""Redis target against a real throwaway redis-server with an ACL file."""

from __future__ import annotations

import json
import signal
import time

import pytest

import peers
from conftest import CmdlineWatcher, keyroll, unique


@pytest.fixture
def cache(redis_server, home):  # type: ignore[no-untyped-def]
    user = unique("cache")
    initial = "Cache" * 6 + "ok"
    redis_server.create_user(user, initial)
    redis_server.acl_save()
    admin_file = home.root / "redis-admin"
    admin_file.write_text(redis_server.default_password + "\n")

    def configure(grace: str = "2s", extra: str = "") -> None:
        home.write_config(
            f"""
[targets.cache]
type = "redis"
host = "{redis_server.host}"
port = {redis_server.port}
user = "{user}"
admin_user = "default"
admin_password_file = "{admin_file}"
grace = "{grace}"

[secrets.redis_password]
services = ["redis", "aidb"]
target = "cache"
{extra}
"""
        )

    configure()

    class Cache:
        config = home.config
        name = user

    Cache.initial = initial  # type: ignore[attr-defined]
    Cache.configure = staticmethod(configure)  # type: ignore[attr-defined]
    assert keyroll(home.config, "set", "redis_password", stdin=initial).returncode == 0
    return Cache


def test_old_and_new_work_side_by_side_until_the_grace_ends(cache, redis_server, home) -> None:  # type: ignore[no-untyped-def]
    with CmdlineWatcher() as watcher:
        done = keyroll(cache.config, "rotate", "redis_password")
    assert done.returncode == 0, done.stdout + done.stderr
    new = home.value("redis_password")
    assert redis_server.login_ok(cache.name, new)
    assert redis_server.login_ok(cache.name, cache.initial), "the old password must survive the grace period"
    acl = redis_server.acl_file_text()
    assert peers_hash(new) in acl, "ACL SAVE persisted the new password"
    for value in (new, cache.initial):
        assert value not in acl and value not in redis_server.config_file_text()
        assert not watcher.carries(value)
    time.sleep(2.2)
    # The next writing command (or the daemon) retires the old password once the grace has passed.
    retired = keyroll(cache.config, "recover")
    assert retired.returncode == 0 and "redis_password: old credential retired" in retired.stdout
    assert not redis_server.login_ok(cache.name, cache.initial)
    assert redis_server.login_ok(cache.name, new)
    # (only this user's line: the module's Redis server holds other tests' users, some with the same password)
    own = [line for line in redis_server.acl_file_text().splitlines() if line.startswith(f"user {cache.name} ")]
    assert len(own) == 1 and peers_hash(cache.initial) not in own[0] and peers_hash(new) in own[0]


def peers_hash(value: str) -> str:
    from keyroll.targets.redis import password_hash

    return password_hash(value)


def test_emergency_revokes_the_old_password_at_once(cache, redis_server, home) -> None:  # type: ignore[no-untyped-def]
    done = keyroll(cache.config, "rotate", "redis_password", "--emergency")
    assert done.returncode == 0, done.stdout
    assert redis_server.login_ok(cache.name, home.value("redis_password"))
    assert not redis_server.login_ok(cache.name, cache.initial)


def test_health_failure_removes_the_new_password_and_keeps_the_old(cache, redis_server, home) -> None:  # type: ignore[no-untyped-def]
    flag = home.root / "broken"
    cache.configure(
        extra=f'restart = ["command:touch {flag}"]\nhealth = ["command:test ! -e {flag}"]\nhealth_timeout = "1s"'
    )
    done = keyroll(cache.config, "rotate", "redis_password")
    assert done.returncode == 75 and "rolled back" in done.stdout
    assert home.value("redis_password") == cache.initial
    assert redis_server.login_ok(cache.name, cache.initial)
    assert redis_server.acl_file_text().count(cache.name) == 1
    history = json.loads(keyroll(cache.config, "history", "--json").stdout)["data"]["entries"]
    assert history[0]["outcome"] == "failed"


def test_a_server_that_is_down(cache, redis_server, home, running) -> None:  # type: ignore[no-untyped-def]
    running(redis_server)
    redis_server.stop()
    done = keyroll(cache.config, "rotate", "redis_password")
    assert done.returncode == 75
    assert f"Redis ACL user '{cache.name}' at {redis_server.host}:{redis_server.port}: unreachable" in done.stdout
    assert home.value("redis_password") == cache.initial
    redis_server.start()
    assert keyroll(cache.config, "rotate", "redis_password").returncode == 0


def test_wrong_admin_credentials(cache, redis_server, home) -> None:  # type: ignore[no-untyped-def]
    (home.root / "redis-admin").write_text("nope")
    done = keyroll(cache.config, "rotate", "redis_password")
    assert done.returncode == 1
    assert "login refused" in done.stdout and "wrong admin credentials (file" in done.stdout


@pytest.mark.parametrize(
    "step", ["backup", "create", "apply", "verify", "store-write", "store", "restart", "retire", "finish"]
)
def test_sigkill_at_every_step_leaves_store_and_server_in_step(cache, redis_server, home, step: str) -> None:  # type: ignore[no-untyped-def]
    # grace 0s: the old password is removed within the transaction (the `retire` step).
    cache.configure(grace="0s", extra=f'restart = ["command:touch {home.root / "restarted"}"]')
    killed = keyroll(cache.config, "rotate", "redis_password", env={"KEYROLL_FAILPOINT": step})
    assert killed.returncode == -signal.SIGKILL
    recovered = keyroll(cache.config, "recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    stored = home.value("redis_password")
    assert redis_server.login_ok(cache.name, stored)
    if stored != cache.initial:
        # Driven forward: the consumer was restarted and the old password is gone.
        assert (home.root / "restarted").exists()
        assert not redis_server.login_ok(cache.name, cache.initial)
    assert keyroll(cache.config, "validate").returncode == 0


def test_requirepass_mode_changes_the_running_server_only(home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with peers.RedisServer(tmp_path / "bare", default_password="Bare" * 8) as bare:
        config_before = bare.config_file_text()
        home.write_config(
            f"""
[targets.bare]
type = "redis"
host = "{bare.host}"
port = {bare.port}
mode = "requirepass"

[secrets.redis_password]
target = "bare"
"""
        )
        old = bare.default_password
        assert keyroll(home.config, "set", "redis_password", stdin=old).returncode == 0
        done = keyroll(home.config, "rotate", "redis_password")
        assert done.returncode == 0, done.stdout + done.stderr
        new = home.value("redis_password")
        assert bare.login_ok("default", new) and not bare.login_ok("default", old)
        assert bare.config_file_text() == config_before, "no CONFIG REWRITE: redis.conf is untouched"
        bare.default_password = new


def test_going_back_within_the_grace_period_keeps_the_value_going_back_to(cache, redis_server, home) -> None:  # type: ignore[no-untyped-def]
    cache.configure(grace="2s")
    assert keyroll(cache.config, "rotate", "redis_password").returncode == 0
    second = home.value("redis_password")
    back = keyroll(cache.config, "rollback", "redis_password")  # both are still valid: recorded only
    assert back.returncode == 0, back.stdout + back.stderr
    assert home.value("redis_password") == cache.initial
    time.sleep(2.2)
    assert keyroll(cache.config, "recover").returncode == 0
    assert redis_server.login_ok(cache.name, cache.initial), "the stored value must keep working"
    assert not redis_server.login_ok(cache.name, second), "the value left behind is retired"


def test_an_interrupted_emergency_rotation_still_revokes_at_once(cache, redis_server, home) -> None:  # type: ignore[no-untyped-def]
    cache.configure(grace="10m")
    killed = keyroll(cache.config, "rotate", "redis_password", "--emergency", env={"KEYROLL_FAILPOINT": "store"})
    assert killed.returncode == -signal.SIGKILL
    assert keyroll(cache.config, "recover").returncode == 0
    assert redis_server.login_ok(cache.name, home.value("redis_password"))
    assert not redis_server.login_ok(cache.name, cache.initial)


def test_a_password_from_before_keyroll_is_retired_too(cache, redis_server, home) -> None:  # type: ignore[no-untyped-def]
    """The account had a second password keyroll never stored: it goes after the grace
    like the one left behind (and at once with --emergency)."""
    stray = "Stray" * 6 + "pw"
    with redis_server.client() as admin:
        admin.execute_command("ACL", "SETUSER", cache.name, f">{stray}")
    assert redis_server.login_ok(cache.name, stray)
    cache.configure(grace="1s")
    assert keyroll(cache.config, "rotate", "redis_password").returncode == 0
    assert redis_server.login_ok(cache.name, stray) and redis_server.login_ok(cache.name, cache.initial)
    time.sleep(1.2)
    assert keyroll(cache.config, "recover").returncode == 0
    assert not redis_server.login_ok(cache.name, stray) and not redis_server.login_ok(cache.name, cache.initial)
    assert redis_server.login_ok(cache.name, home.value("redis_password"))


def test_emergency_also_revokes_passwords_still_in_their_grace(cache, redis_server, home) -> None:  # type: ignore[no-untyped-def]
    cache.configure(grace="10m")
    assert keyroll(cache.config, "rotate", "redis_password").returncode == 0
    leaked = home.value("redis_password")  # now current; the initial one is in its grace period
    done = keyroll(cache.config, "rotate", "redis_password", "--emergency")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not redis_server.login_ok(cache.name, leaked)
    assert not redis_server.login_ok(cache.name, cache.initial)
    assert redis_server.login_ok(cache.name, home.value("redis_password"))
    with redis_server.client() as admin:
        reply = admin.execute_command("ACL", "GETUSER", cache.name)
        passwords = reply.get("passwords", reply.get(b"passwords"))
        assert len(passwords) == 1, "only the new password is left"


def test_a_refused_login_is_one_attempt(cache, redis_server, home) -> None:  # type: ignore[no-untyped-def]
    """redis-py retries by default (~11 attempts in 4 s): each would hold the lock
    longer and fill the ACL log, which lockout tools watch."""
    from keyroll.config.policy import load_policy
    from keyroll.targets import open_target

    policy = load_policy(str(cache.config))
    target = open_target(policy, "cache", "redis_password", lambda name: home.value(name))
    with redis_server.client() as admin:
        admin.execute_command("ACL", "LOG", "RESET")
        started = time.monotonic()
        assert target.accepts("Wrong" * 6 + "xy") is False
        took = time.monotonic() - started
        failures = [e for e in admin.execute_command("ACL", "LOG") if cache.name in str(e)]
    target.close()
    assert took < 1.0, f"one refused login took {took:.1f}s"
    counts = [int(entry.get("count", entry.get(b"count", 0))) for entry in failures]
    assert sum(counts) == 1, failures


def test_a_queued_retirement_survives_the_secret_leaving_its_target(cache, redis_server, home) -> None:  # type: ignore[no-untyped-def]
    """The operator edits the config during the grace period (the secret moves off the
    target, or the target goes): the old password is still removed from the service,
    or keyroll says it could not be, never quietly marked retired while Redis accepts it."""
    assert keyroll(cache.config, "rotate", "redis_password").returncode == 0
    assert redis_server.login_ok(cache.name, cache.initial), "in its grace period"
    config = cache.config.read_text()
    cache.config.write_text(config.replace('target = "cache"', ""))  # [targets.cache] stays
    time.sleep(2.2)
    done = keyroll(cache.config, "recover")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not redis_server.login_ok(cache.name, cache.initial), "the old password was removed"
    assert redis_server.login_ok(cache.name, home.value("redis_password"))

    cache.config.write_text(config)
    assert keyroll(cache.config, "rotate", "redis_password").returncode == 0
    left = home.value("redis_password")
    head, _, _ = config.partition("[secrets.redis_password]")
    cache.config.write_text(config.replace(head, "").replace('target = "cache"', ""))  # the target is gone
    time.sleep(2.2)
    assert keyroll(cache.config, "recover").returncode == 0
    history = json.loads(keyroll(cache.config, "history", "redis_password", "--json").stdout)["data"]["entries"]
    assert any("target 'cache' is no longer configured; remove it by hand" in e["detail"] for e in history), history
    assert redis_server.login_ok(cache.name, left)
