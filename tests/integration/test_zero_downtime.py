"""Zero downtime, measured: a consumer opens a new connection every 10 ms with the
credentials it read at its last restart (keyroll restarts it after each rotation),
through 20 consecutive rotations.  With PostgreSQL `alternating` and MariaDB `dual`
not one login fails; with `single` the same consumer does see failures, which shows
the probe would notice them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import unique
from zero_downtime import measure

ROTATIONS = 20


@pytest.fixture
def pg_role(pg):  # type: ignore[no-untyped-def]
    role, admin = unique("zd"), unique("zdadmin")
    pg.create_role(admin, "Adm1n" * 6 + "xy", createrole=True)
    pg.create_role(role, "Initial" * 4 + "pass")
    return {"user": role, "initial": "Initial" * 4 + "pass", "admin_user": admin, "admin_password": "Adm1n" * 6 + "xy"}


def test_postgres_alternating_no_failed_login(pg, pg_role, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = measure(tmp_path, kind="postgres", server=pg, strategy="alternating", rotations=ROTATIONS, **pg_role)
    assert result.reloads == ROTATIONS and result.attempts > ROTATIONS * 20
    assert result.failures == 0, result


def test_postgres_single_shows_failed_logins(pg, pg_role, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = measure(tmp_path, kind="postgres", server=pg, strategy="single", rotations=ROTATIONS, **pg_role)
    assert result.reloads == ROTATIONS
    assert result.failures > 0, "the probe must see the failures a single password causes"


def test_mariadb_dual_no_failed_login(mariadb, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    user, initial = unique("zd"), "Maria" * 6 + "db"
    mariadb.create_user(user, initial)
    result = measure(
        tmp_path,
        kind="mysql",
        server=mariadb,
        user=user,
        initial=initial,
        admin_user="root",
        admin_password=mariadb.admin_password,
        strategy="dual",
        rotations=ROTATIONS,
    )
    assert result.reloads == ROTATIONS and result.attempts > ROTATIONS * 20
    assert result.failures == 0, result
