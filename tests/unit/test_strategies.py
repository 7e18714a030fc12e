"""The zero-downtime strategies' configuration: what is required, what is refused
(one line naming the key), and the login-name secret keyroll adds and manages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from keyroll.config.policy import load_policy
from keyroll.errors import ConfigError, UsageError

ENV = {"HOME": "/home/op"}
ALTERNATING = """
[targets.pg]
type = "postgres"
user = "aidb"
admin_user = "postgres"
strategy = "alternating"
username_secret = "aidb_db_user"
[secrets.postgres_password]
target = "pg"
services = ["aidb"]
mode = "0640"
"""


def policy_from(text: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_policy(str(path), ENV)


def test_the_login_name_secret_follows_its_password(tmp_path: Path) -> None:
    policy = policy_from(ALTERNATING, tmp_path)
    user = policy.secrets["aidb_db_user"]
    assert (user.kind, user.follows, user.target, user.restart) == ("username", "postgres_password", None, ())
    assert user.mode == 0o640 and user.services == ("aidb",)  # as its password's
    # `rotate all` (and the daemon, which never finds it due) leaves it to its password.
    assert [s.name for s in policy.select(["all"])] == ["postgres_password"]
    with pytest.raises(UsageError, match="rotate postgres_password"):
        policy.select(["aidb_db_user"])
    assert policy.targets["pg"].grace == "1h"


def test_a_declared_login_name_secret_keeps_its_own_mode(tmp_path: Path) -> None:
    text = ALTERNATING + '[secrets.aidb_db_user]\nkind = "username"\nmode = "0644"\n'
    assert policy_from(text, tmp_path).secrets["aidb_db_user"].mode == 0o644


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('username_secret = "aidb_db_user"\n', ""), "targets.pg.username_secret: required"),
        (('admin_user = "postgres"\n', ""), "targets.pg.admin_user: the alternating strategy needs an admin"),
        (('admin_user = "postgres"', 'admin_user = "aidb"'), "targets.pg.admin_user: must differ from user"),
        (('strategy = "alternating"\n', ""), 'targets.pg.username_secret: only used with strategy = "alternating"'),
        (('strategy = "alternating"', 'strategy = "dual"'), "targets.pg.strategy: must be one of"),
        (('username_secret = "aidb_db_user"', 'username_secret = "postgres_password"'), "already used"),
        (('user = "aidb"', 'user = "aidb"\nalternate_user = "aidb"'), "alternate_user: must differ from user"),
    ],
)
def test_bad_alternating_settings(change: tuple[str, str], expected: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        policy_from(ALTERNATING.replace(*change), tmp_path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_username_kind_only_for_a_username_secret(tmp_path: Path) -> None:
    text = ALTERNATING + '[secrets.other]\nkind = "username"\n'
    with pytest.raises(ConfigError, match=r'secrets.other.kind: "username" is only for'):
        policy_from(text, tmp_path)
    text = ALTERNATING + '[secrets.aidb_db_user]\nrestart = ["systemd:x.service"]\nkind = "username"\n'
    with pytest.raises(ConfigError, match="with no target and no restart"):
        policy_from(text, tmp_path)


def test_mysql_dual_needs_an_admin(tmp_path: Path) -> None:
    text = '[targets.db]\ntype = "mysql"\nuser = "app"\nstrategy = "dual"\n[secrets.db_password]\ntarget = "db"\n'
    with pytest.raises(ConfigError, match=r"targets.db.admin_user: the dual strategy needs an admin login"):
        policy_from(text, tmp_path)
    policy = policy_from(text.replace('user = "app"', 'user = "app"\nadmin_user = "root"'), tmp_path)
    assert policy.targets["db"].strategy == "dual"


@pytest.mark.parametrize(
    ("version", "refused"), [("8.0.36", True), ("10.3.39-MariaDB", True), ("10.11.6-MariaDB-0+deb12u1", False)]
)
def test_dual_refuses_mysql_and_old_mariadb(version: str, refused: bool, tmp_path: Path) -> None:
    """No MySQL 8 server can run on these machines: the server's answers are given
    here (the query for the account, VERSION(), SHOW CREATE USER), as MySQL and
    MariaDB word them."""
    from keyroll.errors import TargetError
    from keyroll.targets import open_target

    text = '[targets.db]\ntype = "mysql"\nuser = "app"\nadmin_user = "root"\nstrategy = "dual"\n'
    policy = policy_from(text + '[secrets.db_password]\ntarget = "db"\n', tmp_path)
    target = open_target(policy, "db", "db_password", lambda name: None)
    answers = {
        "SELECT count(*)": [(1,)],
        "SELECT VERSION()": [(version,)],
        "SHOW CREATE USER": [("CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '*" + "A" * 40 + "'",)],
        "SHOW GRANTS": [("GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION",)],
    }
    target._execute = lambda query, params=(): next(v for k, v in answers.items() if query.startswith(k))  # type: ignore[attr-defined]
    if refused:
        with pytest.raises(
            TargetError, match=r"needs MariaDB 10.4 or later .*RETAIN CURRENT PASSWORD is not supported"
        ):
            target.check()
    else:
        target.check()


@pytest.mark.parametrize(
    ("grants", "may"),
    [
        (["GRANT USAGE ON *.* TO `k`@`%` IDENTIFIED BY PASSWORD '*AB'", "GRANT SELECT ON `mysql`.* TO `k`@`%`"], False),
        (["GRANT PROXY ON ``@`%` TO `k`@`%`", "GRANT SELECT, INSERT ON *.* TO `k`@`%`"], False),
        (["GRANT USAGE ON *.* TO `k`@`%`", "GRANT UPDATE ON `mysql`.* TO `k`@`%`"], True),
        (["GRANT SELECT, CREATE USER ON *.* TO `k`@`%` IDENTIFIED BY PASSWORD '*AB'"], True),
        (["GRANT ALL PRIVILEGES ON *.* TO `k`@`%` WITH GRANT OPTION"], True),
        (["GRANT USAGE ON *.* TO `k`@`%`", "GRANT `dba` TO `k`@`%`"], True),  # a role: not second-guessed
        (["GRANT USAGE ON *.* TO `k ON *.* CREATE USER`@`%` IDENTIFIED BY PASSWORD ' ON *.*'"], False),
    ],
)
def test_the_mysql_admin_privilege_is_read_from_its_grants(grants: list[str], may: bool, tmp_path: Path) -> None:
    """MariaDB's SHOW GRANTS wording (10.11), given here: ALTER USER needs global CREATE USER (or UPDATE/ALL),
    or UPDATE on the mysql database."""
    from keyroll.targets import open_target

    text = '[targets.db]\ntype = "mysql"\nuser = "app"\nadmin_user = "k"\n[secrets.db_password]\ntarget = "db"\n'
    target = open_target(policy_from(text, tmp_path), "db", "db_password", lambda name: None)
    target._execute = lambda query, params=(): [(g,) for g in grants]  # type: ignore[attr-defined]
    assert target._may_alter_users() is may  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("createrole", "version", "admin_option", "expected"),
    [
        (True, 150000, {}, None),  # PostgreSQL 15: CREATEROLE is enough
        (False, 150000, {}, "lacks CREATEROLE"),
        (True, 160002, {"aidb": True, "aidb_clone": True}, None),
        (True, 160002, {"aidb": False, "aidb_clone": True}, "lacks ADMIN OPTION on 'aidb' (GRANT aidb TO postgres"),
        (
            False,
            170000,
            {"aidb": False, "aidb_clone": False},
            "lacks CREATEROLE and ADMIN OPTION on 'aidb' (GRANT aidb TO postgres WITH ADMIN OPTION) and ADMIN "
            "OPTION on 'aidb_clone'",
        ),
    ],
)
def test_alternating_check_names_what_the_admin_lacks(
    createrole: bool, version: int, admin_option: dict[str, bool], expected: str | None, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """No PostgreSQL 16 runs on these machines: its answers are given here (the admin's
    attributes and the server version, whether the roles exist, pg_has_role ... WITH
    ADMIN OPTION), as PostgreSQL words them; the tests against a real PostgreSQL 15
    cover the CREATEROLE half (tests/integration/test_pg_alternating.py)."""
    from keyroll.errors import TargetError
    from keyroll.targets import open_target
    from keyroll.targets.postgres import PostgresTarget

    monkeypatch.setattr(PostgresTarget, "check", lambda self: None)  # (reachable, logged in: not what is tested)
    policy = policy_from(ALTERNATING, tmp_path)
    target = open_target(policy, "pg", "postgres_password", lambda name: None)

    def answer(query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        if query.startswith("SELECT rolsuper, rolcreaterole"):
            return [(False, createrole, version, False)]
        if query.startswith("SELECT 1 FROM pg_roles"):
            return [(1,)] if params[0] in admin_option else []
        if query.startswith("SELECT pg_has_role"):
            return [(admin_option[str(params[0])],)]
        raise AssertionError(f"unexpected query {query!r}")

    monkeypatch.setattr(target, "_execute", answer)
    if expected is None:
        target.check()
    else:
        with pytest.raises(TargetError, match=re.escape(expected)):
            target.check()
