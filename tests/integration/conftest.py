"""Real services for the integration tests: one throwaway PostgreSQL, Redis and
MariaDB per test session, on free loopback ports (never the machine's shared ones)."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import peers

_names = itertools.count(1)


def unique(prefix: str) -> str:
    """A role/user name no other test of this session uses."""
    return f"{prefix}{os.getpid()}_{next(_names)}"


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.PostgresServer]:
    with peers.PostgresServer(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.RedisServer]:
    with peers.RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.MariaDBServer]:
    with peers.MariaDBServer(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


@pytest.fixture
def running(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Make sure a server stopped by a test is started again afterwards."""
    servers: list[object] = []
    yield servers.append
    for server in servers:
        if not server.running:  # type: ignore[attr-defined]
            server.start()  # type: ignore[attr-defined]


class CmdlineWatcher:
    """Reads every process's /proc/PID/cmdline while a rotation runs, to show that no
    value ever appears in any argv (keyroll's own, or a child's)."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    with contextlib.suppress(OSError):
                        self.seen.add(Path(entry.path, "cmdline").read_bytes())
            time.sleep(0.002)

    def __enter__(self) -> CmdlineWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def carries(self, value: str) -> bool:
        return any(value.encode() in cmdline for cmdline in self.seen)


def keyroll(
    config: Path, *argv: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """keyroll as a real process (what crash tests kill)."""
    return subprocess.run(
        [sys.executable, "-m", "keyroll", "--config", str(config), *argv],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


# --- database accounts and their targets ---------------------------------------------------------------------


def mysql_target_toml(
    mariadb: peers.MariaDBServer, user: str, admin_file: Path, *, strategy: str | None = None, grace: str | None = None
) -> str:
    """`[targets.db]`: the MariaDB account `user`, changed by root (whose password is in `admin_file`). Tests edit
    this text by its lines (`admin_user = "root"`, `grace = "..."`): keep them as they are."""
    lines = [
        "[targets.db]",
        'type = "mysql"',
        f'host = "{mariadb.host}"',
        f"port = {mariadb.port}",
        f'user = "{user}"',
        'admin_user = "root"',
        f'admin_password_file = "{admin_file}"',
    ]
    if strategy is not None:
        lines.append(f'strategy = "{strategy}"')
    if grace is not None:
        lines.append(f'grace = "{grace}"')
    return "\n".join(lines) + "\n"


@dataclass
class Account:
    """A MariaDB account made for one test, whose password keyroll stores as db_password."""

    name: str
    initial: str


@pytest.fixture
def mysql_account(mariadb: peers.MariaDBServer, home: Any) -> Callable[..., Account]:
    """make(prefix, *, strategy=None, grace=None, secret_extra="") -> Account: a new MariaDB account (password
    "Maria"*6+"db"), root's password in home.root/mariadb-admin, a config with `[targets.db]` and
    `[secrets.db_password]` (target = "db", then `secret_extra` lines), and that password stored with `set`."""

    def make(prefix: str, *, strategy: str | None = None, grace: str | None = None, secret_extra: str = "") -> Account:
        user = unique(prefix)
        initial = "Maria" * 6 + "db"
        mariadb.create_user(user, initial)
        admin_file = home.root / "mariadb-admin"
        admin_file.write_text(mariadb.admin_password)
        target = mysql_target_toml(mariadb, user, admin_file, strategy=strategy, grace=grace)
        home.write_config(f'\n{target}\n[secrets.db_password]\ntarget = "db"\n{secret_extra}')
        assert keyroll(home.config, "set", "db_password", stdin=initial).returncode == 0
        return Account(user, initial)

    return make


PG_ADMIN_VALUE = "Adm1n" * 6 + "xy"


@dataclass
class PgLogin:
    """A PostgreSQL login role and the CREATEROLE admin (not a superuser) that changes it."""

    role: str
    admin: str
    admin_file: Path  # holds the admin's password

    @property
    def clone(self) -> str:
        """The second login of `strategy = "alternating"`."""
        return f"{self.role}_clone"


def make_pg_login(pg: peers.PostgresServer, folder: Path, prefix: str, initial: str | None) -> PgLogin:
    """Create the admin `<prefix>admin…` (password PG_ADMIN_VALUE, written to folder/pg-admin) and the login role
    `<prefix>…` with the password `initial` (None: no password)."""
    role, admin = unique(prefix), unique(f"{prefix}admin")
    pg.create_role(admin, PG_ADMIN_VALUE, createrole=True)
    pg.create_role(role, initial)
    admin_file = folder / "pg-admin"
    admin_file.write_text(PG_ADMIN_VALUE)
    return PgLogin(role, admin, admin_file)


def pg_target_toml(
    pg: peers.PostgresServer,
    login: PgLogin,
    *,
    name: str = "pg_app",
    username_secret: str = "app_db_user",
    grace: str | None = None,
) -> str:
    """`[targets.<name>]`: `login` with `strategy = "alternating"`, its login name stored as `username_secret`.
    Tests edit this text by its lines (`admin_user = "..."`, `grace = "..."`): keep them as they are."""
    lines = [
        f"[targets.{name}]",
        'type = "postgres"',
        f'host = "{pg.host}"',
        f"port = {pg.port}",
        f'user = "{login.role}"',
        f'admin_user = "{login.admin}"',
        f'admin_password_file = "{login.admin_file}"',
        'strategy = "alternating"',
        f'username_secret = "{username_secret}"',
    ]
    if grace is not None:
        lines.append(f'grace = "{grace}"')
    return "\n".join(lines) + "\n"


# --- a fake Kubernetes API server ----------------------------------------------------------------------------


@pytest.fixture
def fake_cluster(tmp_path: Path) -> Iterator[Callable[..., tuple[Any, Path]]]:
    """start(*workloads, helm_db_secret=False) -> (FakeKube, kubeconfig): the fake API server of tests/kube_fake.py
    for this test (stopped after it), with the workloads ("kind/namespace/name") and, if asked, the Secret
    ai-stack/db holding {"unrelated": "kept"} under Helm's field manager."""
    from tests.kube_fake import serve

    with contextlib.ExitStack() as stack:

        def start(*workloads: str, helm_db_secret: bool = False) -> tuple[Any, Path]:
            fake, kubeconfig = stack.enter_context(serve(tmp_path / "kube"))
            if helm_db_secret:
                fake.add_secret("ai-stack", "db", {"unrelated": "kept"}, manager="helm")
            for workload in workloads:
                kind, namespace, name = workload.split("/")
                fake.add_workload(kind, namespace, name)
            return fake, kubeconfig

        yield start


# --- a fleet repository ([gitops]) ----------------------------------------------------------------------------


@pytest.fixture
def fleet(home: Any) -> Any:
    """tests/fleet.py: a bare remote, keyroll's clone, a colleague's clone, and a config publishing to them."""
    from fleet import make_fleet

    return make_fleet(home)
