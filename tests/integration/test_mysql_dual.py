"""MariaDB `strategy = "dual"` against a real throwaway mariadbd: the new and the old
password both log in until the grace has passed, then only the new one; hashes only
(the general query log is on)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from conftest import keyroll, mysql_target_toml, unique


@pytest.fixture
def account(mysql_account):  # type: ignore[no-untyped-def]
    return mysql_account("dual", strategy="dual", grace="1h", secret_extra='restart = ["command:true"]\n')


def test_old_and_new_both_log_in_until_retired(account, mariadb, home) -> None:  # type: ignore[no-untyped-def]
    done = keyroll(home.config, "rotate", "db_password")
    assert done.returncode == 0, done.stdout + done.stderr
    first = home.value("db_password")
    assert mariadb.login_ok(account.name, first) and mariadb.login_ok(account.name, account.initial)
    log = mariadb.general_log_text()
    assert "IDENTIFIED VIA mysql_native_password USING" in log
    assert first not in log and account.initial not in log
    # The next rotation keeps only the value it replaces beside the new one.
    assert keyroll(home.config, "rotate", "db_password").returncode == 0
    second = home.value("db_password")
    assert mariadb.login_ok(account.name, second) and mariadb.login_ok(account.name, first)
    assert not mariadb.login_ok(account.name, account.initial)
    # --emergency: the old one goes at once.
    assert keyroll(home.config, "rotate", "db_password", "--emergency").returncode == 0
    third = home.value("db_password")
    assert mariadb.login_ok(account.name, third) and not mariadb.login_ok(account.name, second)


def test_retirement_after_the_grace(account, mariadb, home) -> None:  # type: ignore[no-untyped-def]
    home.config.write_text(home.config.read_text().replace('grace = "1h"', 'grace = "1s"'))
    assert keyroll(home.config, "rotate", "db_password").returncode == 0
    assert mariadb.login_ok(account.name, account.initial)
    time.sleep(1.5)
    assert keyroll(home.config, "recover").returncode == 0
    assert not mariadb.login_ok(account.name, account.initial)
    assert mariadb.login_ok(account.name, home.value("db_password"))


@pytest.mark.parametrize("step", ["create", "apply", "verify", "store-write", "store", "restart", "retire", "finish"])
def test_sigkill_at_every_step_then_recover(account, mariadb, home, step: str) -> None:  # type: ignore[no-untyped-def]
    args = ["rotate", "db_password"] + (["--emergency"] if step == "retire" else [])
    assert keyroll(home.config, *args, env={"KEYROLL_FAILPOINT": step}).returncode == -signal.SIGKILL
    done = keyroll(home.config, "recover")
    assert done.returncode == 0, done.stdout + done.stderr
    assert mariadb.login_ok(account.name, home.value("db_password"))
    assert keyroll(home.config, "rotate", "db_password", "--emergency").returncode == 0
    assert not mariadb.login_ok(account.name, account.initial)
    assert mariadb.login_ok(account.name, home.value("db_password"))


def test_unhealthy_consumers_leave_only_the_old_password(account, mariadb, home) -> None:  # type: ignore[no-untyped-def]
    flag = home.root / "broken"
    text = home.config.read_text().replace(
        'restart = ["command:true"]',
        f'restart = ["command:touch {flag}"]\nhealth = ["command:test ! -e {flag}"]\nhealth_timeout = "1s"',
    )
    home.config.write_text(text)
    done = keyroll(home.config, "rotate", "db_password")
    assert done.returncode == 75 and "rolled back" in done.stdout
    assert home.value("db_password") == account.initial
    chain = mariadb.execute_admin(f"SHOW CREATE USER '{account.name}'@'%'")[0][0]
    assert chain.count("'*") == 1 and mariadb.login_ok(account.name, account.initial)


def test_dual_needs_an_admin(account, home) -> None:  # type: ignore[no-untyped-def]
    text = home.config.read_text().replace('admin_user = "root"\n', "")
    home.config.write_text(text)
    done = keyroll(home.config, "config", "validate", "--static")
    assert done.returncode == 2 and "targets.db.admin_user" in done.stdout + done.stderr


def test_set_rollback_and_restore(account, mariadb, home) -> None:  # type: ignore[no-untyped-def]
    assert keyroll(home.config, "rotate", "db_password").returncode == 0
    rotated = home.value("db_password")
    # `rollback` goes back to the value the account still takes (its grace): both keep working.
    done = keyroll(home.config, "rollback", "db_password")
    assert done.returncode == 0, done.stdout + done.stderr
    assert home.value("db_password") == account.initial
    assert mariadb.login_ok(account.name, account.initial) and mariadb.login_ok(account.name, rotated)
    # `set` of a new value: new OR the one it replaces.
    given = "Given" * 6 + "zz"
    done = keyroll(home.config, "set", "db_password", stdin=given)
    assert done.returncode == 0, done.stdout + done.stderr
    assert mariadb.login_ok(account.name, given) and mariadb.login_ok(account.name, account.initial)
    assert not mariadb.login_ok(account.name, rotated)
    # `restore` of the oldest backup, then --emergency: only the stored value logs in.
    oldest = sorted(
        b["name"] for b in json.loads(keyroll(home.config, "list-backups", "--json").stdout)["data"]["backups"]
    )[0]
    done = keyroll(home.config, "restore", oldest)
    assert done.returncode == 0, done.stdout + done.stderr
    assert home.value("db_password") == account.initial and mariadb.login_ok(account.name, account.initial)
    assert keyroll(home.config, "rotate", "db_password", "--emergency").returncode == 0
    for old in (account.initial, given, rotated):
        assert not mariadb.login_ok(account.name, old)
    assert mariadb.login_ok(account.name, home.value("db_password"))


def test_init_keeps_the_password_the_account_had_for_the_grace(mariadb, home) -> None:  # type: ignore[no-untyped-def]
    # An account whose password keyroll does not know: `init` gives it a new one, and the one the consumers use
    # today keeps working until the grace has passed (as with alternating PostgreSQL logins).
    user, today = unique("dualinit"), "Today" * 6 + "pw"
    mariadb.create_user(user, today)
    (home.root / "mariadb-admin").write_text(mariadb.admin_password)
    home.write_config(
        f"""
{mysql_target_toml(mariadb, user, home.root / "mariadb-admin", strategy="dual", grace="1s")}
[secrets.db_password]
target = "db"
"""
    )
    done = keyroll(home.config, "init")
    assert done.returncode == 0, done.stdout + done.stderr
    new = home.value("db_password")
    assert mariadb.login_ok(user, new) and mariadb.login_ok(user, today)
    time.sleep(1.5)
    assert keyroll(home.config, "recover").returncode == 0
    assert mariadb.login_ok(user, new) and not mariadb.login_ok(user, today)
    assert mariadb.execute_admin(f"SHOW CREATE USER '{user}'@'%'")[0][0].count("'*") == 1


def test_init_whose_consumers_fail_to_restart_still_retires_the_old_password(mariadb, home) -> None:  # type: ignore[no-untyped-def]
    # The restart fails: the new value is kept (nothing to go back to), so the password the
    # account had before must still go after the grace, not stay valid until the next rotation.
    user, today = unique("dualfail"), "Today" * 6 + "pw"
    mariadb.create_user(user, today)
    (home.root / "mariadb-admin").write_text(mariadb.admin_password)
    home.write_config(
        f"""
{mysql_target_toml(mariadb, user, home.root / "mariadb-admin", strategy="dual", grace="1s")}
[secrets.db_password]
target = "db"
restart = ["command:false"]
"""
    )
    done = keyroll(home.config, "init")
    assert done.returncode == 1 and "kept" in done.stdout, done.stdout + done.stderr
    new = home.value("db_password")
    # the consumers that did not restart still log in with the old one during the grace
    assert mariadb.login_ok(user, new) and mariadb.login_ok(user, today)
    time.sleep(1.5)
    assert keyroll(home.config, "recover").returncode == 0
    assert mariadb.login_ok(user, new) and not mariadb.login_ok(user, today)


def test_an_account_with_another_plugin_is_refused_unchanged(mariadb, home) -> None:  # type: ignore[no-untyped-def]
    # dual writes password hashes only: an account that also logs in via unix_socket would lose that silently.
    user, today = unique("dualsock"), "Sock" * 8
    mariadb.execute_admin(
        f"CREATE USER '{user}'@'%' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('{today}')"
    )
    before = mariadb.execute_admin(f"SHOW CREATE USER '{user}'@'%'")
    (home.root / "mariadb-admin").write_text(mariadb.admin_password)
    home.write_config(
        f"""
{mysql_target_toml(mariadb, user, home.root / "mariadb-admin", strategy="dual")}
[secrets.db_password]
target = "db"
"""
    )
    checked = keyroll(home.config, "config", "validate")
    assert checked.returncode == 1 and "via unix_socket" in checked.stdout + checked.stderr
    done = keyroll(home.config, "init")
    assert done.returncode == 1 and "unix_socket" in done.stdout + done.stderr
    assert mariadb.execute_admin(f"SHOW CREATE USER '{user}'@'%'") == before


def test_an_admin_without_the_privilege_fails_cleanly(account, mariadb, home) -> None:  # type: ignore[no-untyped-def]
    # A refusal by the server is no outage: exit 1 (not 75), nothing left in flight, the old password kept.
    admin, value = unique("weakadm"), "Weak" * 8
    mariadb.create_user(admin, value)
    mariadb.execute_admin(f"GRANT SELECT ON mysql.* TO '{admin}'@'%'")
    (home.root / "weak-admin").write_text(value)
    home.config.write_text(
        home.config.read_text()
        .replace('admin_user = "root"', f'admin_user = "{admin}"')
        .replace("mariadb-admin", "weak-admin")
    )
    checked = keyroll(home.config, "config", "validate")
    said = checked.stdout + checked.stderr
    assert checked.returncode == 1 and f"admin '{admin}' lacks the CREATE USER privilege" in said, said
    assert "'*" not in said  # (the grants it reads hold the admin's password hash)
    done = keyroll(home.config, "rotate", "db_password")
    assert done.returncode == 1 and "CREATE USER privilege" in done.stdout + done.stderr, done.stdout + done.stderr
    # An UPDATE grant on the mysql database is enough (ALTER USER's documented alternative).
    mariadb.execute_admin(f"GRANT UPDATE ON mysql.* TO '{admin}'@'%'")
    checked = keyroll(home.config, "config", "validate")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    mariadb.execute_admin(f"REVOKE UPDATE ON mysql.* FROM '{admin}'@'%'")
    status = json.loads(keyroll(home.config, "status", "--json").stdout)["data"]["secrets"]
    assert [s["state"] for s in status] == ["FAILED"]
    assert home.value("db_password") == account.initial and mariadb.login_ok(account.name, account.initial)
