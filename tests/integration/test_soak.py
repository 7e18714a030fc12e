"""Randomized crash soak: a real `keyroll rotate all` over a PostgreSQL role and a
Redis ACL user is killed with SIGKILL at random moments, over and over; after each
kill the next keyroll run must leave the stored values exactly the ones the
services accept.  Slow (a few minutes): deselect with -m 'not slow'."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import keyroll, unique

KILLS = int(os.environ.get("KEYROLL_SOAK_KILLS", "200"))
FAILPOINT_CHOICES = [
    "backup",
    "create",
    "apply:1",
    "apply:2",
    "verify:1",
    "verify:2",
    "store-write",
    "store",
    "retire:1",
    "finish",
]


@pytest.mark.slow
def test_random_sigkills_never_lose_a_credential(pg, redis_server, home) -> None:  # type: ignore[no-untyped-def]
    role, user = unique("soak"), unique("soak")
    pg_initial, redis_initial = "Pg" * 16, "Rd" * 16
    pg.create_role(role, pg_initial)
    redis_server.create_user(user, redis_initial)
    admin_file = home.root / "admins"
    admin_file.mkdir()
    (admin_file / "pg").write_text(pg.admin_password)
    (admin_file / "redis").write_text(redis_server.default_password)
    home.write_config(
        f"""
[targets.pg]
type = "postgres"
host = "{pg.host}"
port = {pg.port}
user = "{role}"
admin_user = "postgres"
admin_password_file = "{admin_file / "pg"}"

[targets.cache]
type = "redis"
host = "{redis_server.host}"
port = {redis_server.port}
user = "{user}"
admin_user = "default"
admin_password_file = "{admin_file / "redis"}"
grace = "0s"

[secrets.postgres_password]
target = "pg"

[secrets.redis_password]
target = "cache"
"""
    )
    for name, value in (("postgres_password", pg_initial), ("redis_password", redis_initial)):
        assert keyroll(home.config, "set", name, stdin=value).returncode == 0
    durations = []
    for _ in range(3):  # the shortest of three: kills land mid-run even when later runs are faster
        started = time.monotonic()
        assert keyroll(home.config, "rotate", "all").returncode == 0
        durations.append(time.monotonic() - started)
    duration = min(durations)
    rng = random.Random(1128)
    killed_mid_run = 0
    outcomes: dict[str, int] = {}
    for round_number in range(KILLS):
        # Half the rounds die at a random step of the transaction (a failpoint, for either
        # secret), half at a random moment (most of a run is interpreter start-up).
        env = dict(os.environ)
        if round_number % 2 == 0:
            env["KEYROLL_FAILPOINT"] = rng.choice(FAILPOINT_CHOICES)
        process = subprocess.Popen(
            [sys.executable, "-m", "keyroll", "--config", str(home.config), "rotate", "all"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        if round_number % 2:
            time.sleep(rng.uniform(duration * 0.3, duration * 0.95))
            process.send_signal(signal.SIGKILL)
        process.wait()
        killed_mid_run += process.returncode == -signal.SIGKILL
        # The next writing command recovers first: alternate `recover` and `backup`.
        follow_up = keyroll(home.config, "recover" if round_number % 2 else "backup")
        assert follow_up.returncode == 0, follow_up.stdout + follow_up.stderr
        stored_pg, stored_redis = home.value("postgres_password"), home.value("redis_password")
        assert pg.login_ok(role, stored_pg), f"round {round_number}: PostgreSQL does not take the stored value"
        assert redis_server.login_ok(user, stored_redis), f"round {round_number}: Redis does not take the stored value"
        word = "recovered" if "recover:" in follow_up.stdout else "clean"
        outcomes[word] = outcomes.get(word, 0) + 1
    assert keyroll(home.config, "validate").returncode == 0
    print(f"\nsoak: {KILLS} kills ({killed_mid_run} mid-run) over {duration:.2f}s rotations: {outcomes}")
    assert killed_mid_run >= KILLS * 0.8
