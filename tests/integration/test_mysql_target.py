"""MariaDB target against a real throwaway mariadbd (general query log on)."""

from __future__ import annotations

import signal

import pytest

from conftest import keyroll


@pytest.fixture
def account(mysql_account):  # type: ignore[no-untyped-def]
    return mysql_account("acct")


def test_rotation_sends_only_the_hash(account, mariadb, home) -> None:  # type: ignore[no-untyped-def]
    done = keyroll(home.config, "rotate", "db_password")
    assert done.returncode == 0, done.stdout + done.stderr
    new = home.value("db_password")
    assert mariadb.login_ok(account.name, new) and not mariadb.login_ok(account.name, account.initial)
    log = mariadb.general_log_text()
    assert "IDENTIFIED BY PASSWORD" in log
    assert new not in log and account.initial not in log


def test_a_server_that_is_down(account, mariadb, home, running) -> None:  # type: ignore[no-untyped-def]
    running(mariadb)
    mariadb.stop()
    done = keyroll(home.config, "rotate", "db_password")
    assert done.returncode == 75 and "unreachable" in done.stdout
    assert home.value("db_password") == account.initial


@pytest.mark.parametrize("step", ["apply", "verify", "store"])
def test_sigkill_then_recover(account, mariadb, home, step: str) -> None:  # type: ignore[no-untyped-def]
    killed = keyroll(home.config, "rotate", "db_password", env={"KEYROLL_FAILPOINT": step})
    assert killed.returncode == -signal.SIGKILL
    assert keyroll(home.config, "recover").returncode == 0
    assert mariadb.login_ok(account.name, home.value("db_password"))


def test_health_failure_rolls_the_account_back(account, mariadb, home) -> None:  # type: ignore[no-untyped-def]
    flag = home.root / "broken"
    text = home.config.read_text().replace(
        'target = "db"',
        f'target = "db"\nrestart = ["command:touch {flag}"]\nhealth = ["command:test ! -e {flag}"]\nhealth_timeout = "1s"',
    )
    home.config.write_text(text)
    done = keyroll(home.config, "rotate", "db_password")
    assert done.returncode == 75 and "rolled back" in done.stdout
    assert home.value("db_password") == account.initial
    assert mariadb.login_ok(account.name, account.initial)
