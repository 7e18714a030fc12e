"""A PostgreSQL `alternating` target whose login name is published to Kubernetes
with its password: real throwaway PostgreSQL (tests/peers.py), and the fake API
server of tests/kube_fake.py (no real Kubernetes API server can run here).

The login name changes with each rotation, so the pods must always get the login
and the password that belong together: both in the cluster before the one rollout
starts, and both back to the previous pair when the rotation is rolled back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.kube_fake import FakeKube

from conftest import keyroll, make_pg_login, pg_target_toml

pytest.importorskip("lightkube")

API = "deployment/ai-stack/api"


@pytest.fixture
def cluster(fake_cluster) -> tuple[FakeKube, Path]:  # type: ignore[no-untyped-def]
    return fake_cluster(API)  # type: ignore[no-any-return]


def _setup(pg: Any, home: Any, kubeconfig: Path, username_key: str) -> tuple[str, str]:
    """An alternating target; the password goes to db/password, the login name to
    `username_key` (a username secret has no consumers of its own: deployment/api
    reads both)."""
    initial = "Initial" * 4 + "pass"
    login = make_pg_login(pg, home.root, "kalt", initial)
    home.write_config(
        f"""
[kubernetes]
kubeconfig = "{kubeconfig}"
namespace = "ai-stack"
rollout_timeout = "20s"

{pg_target_toml(pg, login, grace="1h")}
[secrets.app_password]
target = "pg_app"
kubernetes = ["db/password"]
restart = ["kubernetes:deployment/api"]

[secrets.app_db_user]
kind = "username"
kubernetes = ["{username_key}"]
"""
    )
    done = keyroll(home.config, "set", "app_password", stdin=initial)
    assert done.returncode == 0, done.stdout + done.stderr
    done = keyroll(home.config, "kubernetes", "sync")
    assert done.returncode == 0, done.stdout + done.stderr
    return login.role, initial


def _verifiers(pg: Any, role: str) -> list[tuple[Any, ...]]:
    """The role's and its clone's (name, password verifier), as the server keeps them."""
    return pg.execute_admin(
        "SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN (%s, %s) ORDER BY rolname", (role, f"{role}_clone")
    )


def _cluster_pair(fake: FakeKube, username_key: str) -> tuple[str | None, str | None]:
    secret, key = username_key.split("/")
    return fake.secret_value("ai-stack", secret, key), fake.secret_value("ai-stack", "db", "password")


@pytest.mark.parametrize("username_key", ["db/username", "db-user/username"])
def test_login_name_is_published_with_its_password(pg, home, cluster, username_key: str) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    role, initial = _setup(pg, home, kubeconfig, username_key)
    assert _cluster_pair(fake, username_key) == (role, initial)
    before = dict(fake.rollouts)
    done = keyroll(home.config, "rotate", "app_password")
    assert done.returncode == 0, done.stdout + done.stderr
    login, password = home.value("app_db_user"), home.value("app_password")
    assert login == f"{role}_clone" and pg.login_ok(login, password)
    assert _cluster_pair(fake, username_key) == (login, password)
    # one rollout of each workload, whose new pods read the new login with the new password
    for ident in (API,):
        assert fake.rollouts[ident] - before.get(ident, 0) == 1, ident
        sees = fake.pods_see[ident]
        secret, key = username_key.split("/")
        assert sees[("ai-stack", secret, key)] == login
        assert sees[("ai-stack", "db", "password")] == password
    assert password not in done.stdout + done.stderr


@pytest.mark.parametrize("username_key", ["db/username", "db-user/username"])
def test_rolled_back_rotation_puts_the_previous_pair_back_in_the_cluster(pg, home, cluster, username_key: str) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    role, initial = _setup(pg, home, kubeconfig, username_key)
    fake.deadline_once = {API}  # the rollout on the new pair fails; on the old pair it succeeds
    done = keyroll(home.config, "rotate", "app_password")
    assert done.returncode == 1, done.stdout + done.stderr
    assert (home.value("app_db_user"), home.value("app_password")) == (role, initial)
    assert pg.login_ok(role, initial)
    assert _cluster_pair(fake, username_key) == (role, initial)
    secret, key = username_key.split("/")
    for ident in (API,):
        sees = fake.pods_see[ident]  # the pods run the previous pair again
        assert (sees[("ai-stack", secret, key)], sees[("ai-stack", "db", "password")]) == (role, initial), ident
    drift = keyroll(home.config, "validate")
    assert "differs from the store" not in drift.stdout + drift.stderr


def test_sigkill_while_waiting_then_recover_puts_the_previous_pair_back(pg, home, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    username_key = "db-user/username"
    role, initial = _setup(pg, home, kubeconfig, username_key)
    fake.deadline_once = {API}
    killed = keyroll(home.config, "rotate", "app_password", env={"KEYROLL_FAILPOINT": "kube-wait"})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert _cluster_pair(fake, username_key) != (role, initial)  # the new pair was published
    done = keyroll(home.config, "recover")
    assert done.returncode == 1, done.stdout + done.stderr  # the rollout failed on the new pair
    assert (home.value("app_db_user"), home.value("app_password")) == (role, initial)
    assert pg.login_ok(role, initial)
    assert _cluster_pair(fake, username_key) == (role, initial)
    sees = fake.pods_see[API]
    assert (sees[("ai-stack", "db-user", "username")], sees[("ai-stack", "db", "password")]) == (role, initial)


def test_login_name_secret_forbidden_stops_before_any_change(pg, home, cluster) -> None:  # type: ignore[no-untyped-def]
    """The login name's Secret is published in the same step as the password: the
    health gate checks it too, so a 403 there changes nothing (no PostgreSQL change)."""
    fake, kubeconfig = cluster
    role, initial = _setup(pg, home, kubeconfig, "db-user/username")
    fake.forbidden.add(("patch", "/secrets/db-user"))
    before = dict(fake.rollouts)
    verifiers_before = _verifiers(pg, role)
    done = keyroll(home.config, "rotate", "app_password")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Kubernetes Secret ai-stack/db-user" in done.stdout + done.stderr and "not rotated" in done.stdout
    assert (home.value("app_db_user"), home.value("app_password")) == (role, initial)
    assert fake.rollouts == before and not pg.login_ok(f"{role}_clone", home.value("app_password"))
    # No PostgreSQL change: neither login's password (nor whether the clone exists) moved.
    assert _verifiers(pg, role) == verifiers_before
