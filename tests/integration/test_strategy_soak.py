"""Randomized crash soak of the zero-downtime strategies: a real `keyroll rotate all`
over a PostgreSQL role with alternating logins and a MariaDB account with dual
passwords is killed with SIGKILL at random moments (half at a random failpoint of the
transaction, half after a random delay), at least 100 times.  After each kill the next
keyroll run recovers, and then: the stored login name and password log in and act as
the role, the MariaDB password logs in, and no other login holds a known password
(grace 0s: the login left behind is retired at once).  Slow: deselect with -m 'not slow'."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from conftest import keyroll, make_pg_login, mysql_target_toml, pg_target_toml, unique

KILLS = int(os.environ.get("KEYROLL_STRATEGY_SOAK_KILLS", "100"))
# Seconds. About 150 s on an idle 2-core machine; the bound only catches a soak that hangs or crawls, with room
# for a loaded CI runner (the CI job has 90 minutes).
BUDGET = float(os.environ.get("KEYROLL_STRATEGY_SOAK_BUDGET", "480"))
FAILPOINTS = [
    "backup",
    "create",
    "apply:1",
    "apply:2",
    "verify:1",
    "verify:2",
    "store-write",
    "store",
    "restart:1",
    "restart:2",
    "retire:1",
    "retire:2",
    "finish",
]


@pytest.mark.slow
def test_random_sigkills_keep_every_pair_accepted(pg, mariadb, home, kr, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Compiled bytecode (in a private cache folder) as a real install has it: ~0.1 s less per run.
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(home.root / "pycache"))
    started = time.monotonic()
    pg_initial, my_initial = "Pg" * 16, "My" * 16
    login = make_pg_login(pg, home.root, "soakalt", pg_initial)
    role, clone, account = login.role, login.clone, unique("soakdual")
    mariadb.create_user(account, my_initial)
    (home.root / "my-admin").write_text(mariadb.admin_password)
    home.write_config(
        f"""
{pg_target_toml(pg, login, name="pg", username_secret="pg_user", grace="0s")}
{mysql_target_toml(mariadb, account, home.root / "my-admin", strategy="dual", grace="0s")}
[secrets.pg_password]
target = "pg"
restart = ["command:true"]

[secrets.db_password]
target = "db"
restart = ["command:true"]
"""
    )
    for name, value in (("pg_password", pg_initial), ("db_password", my_initial)):
        done = keyroll(home.config, "set", name, stdin=value)
        assert done.returncode == 0, done.stdout + done.stderr
    durations = []
    for _ in range(2):
        began = time.monotonic()
        assert keyroll(home.config, "rotate", "all").returncode == 0
        durations.append(time.monotonic() - began)
    duration = min(durations)
    known_pg, known_my = [pg_initial], [my_initial]
    rng = random.Random(1212)
    kills = rounds = 0
    while kills < KILLS:
        assert time.monotonic() - started < BUDGET, f"only {kills} kills in {rounds} rounds in {BUDGET:.0f}s"
        env = dict(os.environ)
        if rounds % 2 == 0:
            env["KEYROLL_FAILPOINT"] = rng.choice(FAILPOINTS)
        process = subprocess.Popen(
            [sys.executable, "-m", "keyroll", "--config", str(home.config), "rotate", "all"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        if rounds % 2:
            time.sleep(rng.uniform(duration * 0.3, duration * 0.95))
            process.send_signal(signal.SIGKILL)
        process.wait()
        kills += process.returncode == -signal.SIGKILL
        rounds += 1
        # The recovery in this process (the same code as `keyroll recover`, without a new interpreter and its
        # imports: a cheaper round); the killed runs are real processes. --wait: a restart program the killed run
        # was starting can hold its copy of the lock for a moment, until it execs.
        follow_up = kr("--config", str(home.config), "recover", "--wait", "10")
        assert follow_up.code == 0, follow_up.both
        login, password, my_password = home.value("pg_user"), home.value("pg_password"), home.value("db_password")
        assert login in (role, clone)
        with psycopg.connect(pg.conninfo(login, password)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,), f"round {rounds}"
        assert mariadb.login_ok(account, my_password), f"round {rounds}: MariaDB refuses the stored password"
        # No login other than the stored one holds a recent known password (checked in full at the end).
        other = clone if login == role else role
        for old in known_pg[-3:]:
            assert not pg.login_ok(other, old), f"round {rounds}: {other} still holds a known password"
        for old in known_my[-3:]:
            assert old == my_password or not mariadb.login_ok(account, old), f"round {rounds}: old password kept"
        for known, value in ((known_pg, password), (known_my, my_password)):
            if value != known[-1]:
                known.append(value)
    for old in known_pg[:-1]:
        assert not pg.login_ok(role, old) and not pg.login_ok(clone, old)
    for old in known_my[:-1]:
        assert not mariadb.login_ok(account, old)
    chain = mariadb.execute_admin(f"SHOW CREATE USER '{account}'@'%'")[0][0]
    assert chain.count("'*") == 1
    assert keyroll(home.config, "validate").returncode == 0
    print(
        f"\nstrategy soak: {kills} kills in {rounds} rounds, {time.monotonic() - started:.0f}s, {len(known_pg)} values"
    )
