"""Real, throwaway peers for keyroll's integration tests.

Every peer listens on 127.0.0.1 on a free port (never the shared default ports 5432/6379/3306), lives in its own
unique directory and is torn down by its context manager even when the test fails:

* :class:`PostgresServer`, :class:`RedisServer`, :class:`MariaDBServer`, :class:`RabbitMQServer`: real server processes, each started in its
  own session so that stop/kill reach the whole process group; they also get a parent-death signal (via
  ``setpriv --pdeathsig``) and an ``atexit`` hook, so a crashed test run does not leave servers behind.
* :class:`SMTPSink`, :class:`HTTPSink`, :class:`NotifySocket`: in-process sinks (threads) recording what they receive.
* :func:`free_port` and :func:`require_tool` helpers.

A missing binary makes the test skip, or fail with the Debian package to install when ``CI=true``.
All classes work from session-scoped and function-scoped fixtures alike; instances are independent.
"""

from __future__ import annotations

import atexit
import contextlib
import email
import email.policy
import glob
import hashlib
import importlib
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Self

if TYPE_CHECKING:
    import psycopg
    import pymysql.connections
    import redis

__all__ = [
    "LOOPBACK",
    "Datagram",
    "HTTPRequest",
    "HTTPSink",
    "MariaDBServer",
    "NotifySocket",
    "PostgresServer",
    "RabbitMQServer",
    "RedisServer",
    "SMTPMessage",
    "SMTPSink",
    "find_tool",
    "free_port",
    "require_tool",
]

LOOPBACK = "127.0.0.1"
#: Ports of the machine's shared services (and common mail ports): never handed out, never touched.
_RESERVED_PORTS = frozenset({25, 465, 587, 1025, 3306, 4369, 5432, 5672, 6379, 8025, 15672, 25672})
#: Unix socket paths must fit in sockaddr_un.sun_path (108 bytes incl. NUL); keep a margin.
_MAX_SOCKET_PATH = 100
_POLL = 0.02

_DEBIAN_PACKAGES = {
    "initdb": "postgresql",
    "postgres": "postgresql",
    "pg_ctl": "postgresql",
    "psql": "postgresql-client",
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client",
    "setpriv": "util-linux",
    "psycopg": "python3-psycopg (or pip install 'keyroll[postgres]')",
    "redis": "python3-redis (or pip install 'keyroll[redis]')",
    "pymysql": "python3-pymysql (or pip install 'keyroll[mysql]')",
    "aiosmtpd": "python3-aiosmtpd (or pip install 'keyroll[test]')",
    "rabbitmq-server": "rabbitmq-server",
    "pika": "python3-pika (or pip install 'keyroll[test]')",
}


# --------------------------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------------------------

_port_lock = threading.Lock()
_issued_ports: set[int] = set()


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now and was not handed out before by this process."""
    with _port_lock:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in _RESERVED_PORTS and port not in _issued_ports:
                _issued_ports.add(port)
                return port
    raise RuntimeError(f"could not find a free port on {host}")


def _missing(what: str, package: str) -> NoReturn:
    """Skip the current test, or fail it when ``CI=true`` (where every peer must be available)."""
    import pytest

    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{what} is missing; CI=true requires it: install the Debian package {package}", pytrace=False)
    pytest.skip(f"{what} is missing (install the Debian package {package})")


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def find_tool(name: str) -> str | None:
    """Path of executable ``name``: searched in PATH, then /usr/lib/postgresql/*/bin (newest first), /usr/sbin, /sbin."""
    found = shutil.which(name)
    if found:
        return found
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for d in [*dirs, "/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/local/bin"]:
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_tool(name: str) -> str:
    """Like :func:`find_tool`, but skip the test when missing (``pytest.fail`` when the environment has ``CI=true``)."""
    found = find_tool(name)
    if found is None:
        _missing(f"executable {name!r}", _DEBIAN_PACKAGES.get(name, name))
    return found


def _require_module(name: str) -> ModuleType:
    """Import a driver lazily, skipping (or failing under CI) when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"Python module {name!r}", _DEBIAN_PACKAGES.get(name, name))


@dataclass(frozen=True)
class _OsUser:
    name: str
    uid: int
    gid: int


def _os_user(name: str, package: str) -> _OsUser:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _missing(f"OS user {name!r}", package)
    return _OsUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _traversable_by(path: Path, user: _OsUser | None) -> bool:
    """True if ``user`` (None: ourselves) can search every directory from / down to ``path``."""
    if user is None or user.uid == os.geteuid():
        return os.access(path, os.X_OK)
    groups = {user.gid, *(g.gr_gid for g in _groups_of(user.name))}
    for p in [path, *path.parents]:
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _groups_of(user: str) -> list[Any]:
    import grp

    return [g for g in grp.getgrall() if user in g.gr_mem]


def _proc_start_time(pid: int) -> str | None:
    """Kernel start time of ``pid`` (field 22 of /proc/PID/stat), to tell a live process from a reused pid."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data[data.rindex(")") + 2 :].split()[19]


def _alive(marker: Path) -> bool:
    """True while the process recorded in ``marker`` ("PID STARTTIME") is still running."""
    try:
        pid, start = marker.read_text().split()
    except (OSError, ValueError):
        return False
    return _proc_start_time(int(pid)) == start


def _write_marker(marker: Path, pid: int) -> None:
    marker.write_text(f"{pid} {_proc_start_time(pid)}\n")


_OWNER_MARKER = ".keyroll-owner"
_SERVER_MARKER = ".keyroll-server"


def _sweep_stale(parent: Path, prefix: str) -> None:
    """Remove private dirs left in ``parent`` by crashed runs (owner gone and no server of ours still running)."""
    for d in parent.glob(prefix + "*"):
        if not (d / _OWNER_MARKER).exists() or _alive(d / _OWNER_MARKER) or _alive(d / _SERVER_MARKER):
            continue
        shutil.rmtree(d, ignore_errors=True)


def _private_dir(
    base_dir: str | os.PathLike[str] | None, prefix: str, *, owner: _OsUser | None = None, reserve: int = 30
) -> tuple[Path, bool]:
    """Create a unique directory for one peer, owned by ``owner`` (default: us), mode 0700.

    It is created under ``base_dir`` when ``owner`` can traverse it and the path leaves ``reserve`` bytes for a unix
    socket name; otherwise under /tmp (returned flag True: the caller removes it on close).
    """
    if base_dir is not None:
        base = Path(base_dir).absolute()
        base.mkdir(parents=True, exist_ok=True)
        if _traversable_by(base, owner) and len(str(base)) + len(prefix) + 10 + reserve <= _MAX_SOCKET_PATH:
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
            if owner is not None:
                os.chown(path, owner.uid, owner.gid)
            return path, False
    parent = Path("/tmp") if os.path.isdir("/tmp") else Path(tempfile.gettempdir())
    _sweep_stale(parent, prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    _write_marker(path / _OWNER_MARKER, os.getpid())
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)
    return path, True


# --------------------------------------------------------------------------------------------------------------------
# server processes
# --------------------------------------------------------------------------------------------------------------------

_live_servers: set[_ServerProcess] = set()
_live_lock = threading.Lock()


@atexit.register
def _kill_live_servers() -> None:
    """Last resort when the interpreter exits with servers still running (e.g. an interrupted session)."""
    with _live_lock:
        servers = list(_live_servers)
    for server in servers:
        with contextlib.suppress(Exception):
            server.kill()
            server._cleanup_files()


class _PortInUse(Exception):
    pass


class _ServerProcess:
    """Shared lifecycle of a server child process: start / stop / kill / close, context manager.

    The child runs in its own session (process group == its pid), so :meth:`kill` and the final cleanup reach every
    process it forked.
    """

    kind: ClassVar[str] = "server"
    #: signal asking for a clean shutdown
    graceful_signal: ClassVar[signal.Signals] = signal.SIGTERM
    #: signal the kernel sends the server if the test process dies (setpriv --pdeathsig)
    orphan_signal: ClassVar[str] = "TERM"

    host: str
    port: int
    root_dir: Path
    log_path: Path

    def __init__(self, *, startup_timeout: float) -> None:
        self.host = LOOPBACK
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self._prepared = False
        self._started_once = False
        self._closed = False
        self._fixed_port = False
        self._private = False
        self._run_as: _OsUser | None = None
        #: how long the last :meth:`start` took, in seconds (first start includes initdb / install-db)
        self.last_start_seconds: float | None = None

    # -- hooks ---------------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """One-time initialisation before the first start (initdb, config files...)."""

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        """One readiness probe."""
        raise NotImplementedError

    def _after_first_start(self) -> None:
        """One-time setup once the server first accepts connections (admin password...)."""

    def _stdout_path(self) -> Path:
        return self.log_path

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    # -- public API ----------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """Pid of the main server process while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> Self:
        """Start the server (no-op if it runs) and wait until it accepts connections; same port on a restart."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.kind} was closed")
            if self.running:
                return self
            began = time.monotonic()
            if not self._prepared:
                self._prepare()
                self._prepared = True
            for attempt in range(5):
                try:
                    self._launch()
                    break
                except _PortInUse:
                    # Someone took the port between free_port() and bind(): pick another, only before first start.
                    if self._started_once or self._fixed_port or attempt == 4:
                        raise RuntimeError(f"{self.kind}: port {self.port} already in use") from None
                    self.port = free_port()
            if not self._started_once:
                self._after_first_start()
                self._started_once = True
            self.last_start_seconds = time.monotonic() - began
            return self

    def stop(self, timeout: float = 20.0) -> None:
        """Clean shutdown (data kept, :meth:`start` brings it back on the same port); SIGKILL after ``timeout``."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(self.graceful_signal)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout)
            self._reap()

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash; data kept, :meth:`start` recovers)."""
        with self._lock:
            if self._proc is not None:
                self._reap()

    def close(self) -> None:
        """Stop the server and remove its data; idempotent. Logs are kept for post-mortems when possible."""
        with self._lock:
            if self._closed:
                return
            try:
                self.stop()
            finally:
                self._closed = True
                self._cleanup_files()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{getattr(self, 'port', '?')} {state} in {self.root_dir}>"

    # -- internals -----------------------------------------------------------------------------------------------
    def _cleanup_files(self) -> None:
        if self._private:
            shutil.rmtree(self.root_dir, ignore_errors=True)

    def _reap(self) -> None:
        """SIGKILL whatever is left of the process group, then wait for the main process."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        self._proc = None
        with contextlib.suppress(OSError):
            (self.root_dir / _SERVER_MARKER).unlink()
        with _live_lock:
            _live_servers.discard(self)

    def _spawn(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        prefix: list[str] = []
        setpriv = find_tool("setpriv")
        # The parent-death signal fires when the *thread* that forked exits: only use it from the main thread.
        if setpriv is not None and threading.current_thread() is threading.main_thread():
            prefix = [setpriv, f"--pdeathsig={self.orphan_signal}", "--"]
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs.update(user=self._run_as.uid, group=self._run_as.gid, extra_groups=[])
        with open(self._stdout_path(), "ab") as out:
            proc = subprocess.Popen(
                [*prefix, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root_dir,
                env=self._env(),
                start_new_session=True,
                close_fds=True,
                **kwargs,
            )
        with contextlib.suppress(OSError):
            _write_marker(self.root_dir / _SERVER_MARKER, proc.pid)
        return proc

    def _log_text_since(self, offsets: Mapping[Path, int]) -> str:
        parts = []
        for path, offset in offsets.items():
            with contextlib.suppress(OSError), open(path, "rb") as fh:
                fh.seek(offset)
                parts.append(fh.read().decode("utf-8", "replace"))
        return "\n".join(parts)

    def _launch(self) -> None:
        logs = {p: (p.stat().st_size if p.exists() else 0) for p in {self.log_path, self._stdout_path()}}
        self._proc = self._spawn(self._argv())
        with _live_lock:
            _live_servers.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._reap()
                text = self._log_text_since(logs)
                if "already in use" in text:
                    raise _PortInUse
                raise RuntimeError(f"{self.kind} exited with status {code} while starting:\n{text[-4000:]}")
            if self._ready():
                return
            if time.monotonic() >= deadline:
                self._reap()
                raise TimeoutError(
                    f"{self.kind} not ready after {self.startup_timeout:g}s:\n{self._log_text_since(logs)[-4000:]}"
                )
            time.sleep(_POLL)


def _tcp_probe(host: str, port: int, payload: bytes = b"") -> bytes | None:
    """Connect, optionally send ``payload``, return the first bytes the server sends (None when refused)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            if payload:
                s.sendall(payload)
            return s.recv(256)
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------------------------------


def _pg_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresServer(_ServerProcess):
    """A throwaway PostgreSQL cluster (initdb + postgres) on 127.0.0.1:<free port>.

    * host connections need SCRAM-SHA-256 passwords (``password_encryption = scram-sha-256``);
    * the unix socket in :attr:`socket_dir` lets ``postgres`` in without a password (fixture setup, :meth:`execute_admin`);
    * ``log_statement = 'all'`` goes to :attr:`log_path`, so tests can assert a plaintext never reached the server
      log. The fixture's own password statements (:meth:`create_role`, :meth:`set_password`, the admin password) are
      executed with logging turned off for their transaction, so they never appear there;
    * running as root, the cluster belongs to the ``postgres`` OS user and lives where that user can reach it (a
      private dir under /tmp when ``base_dir`` is not traversable, e.g. pytest's 0700 ``tmp_path``).
    """

    kind = "PostgreSQL"
    graceful_signal = signal.SIGINT  # "fast" shutdown: disconnect clients, checkpoint, exit
    orphan_signal = "INT"
    admin_user = "postgres"

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        admin_password: str | None = None,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        """``base_dir``: where to create the cluster's directory; ``settings``: extra postgresql.conf lines."""
        super().__init__(startup_timeout=startup_timeout)
        self._psycopg: Any = _require_module("psycopg")
        self.initdb_bin = require_tool("initdb")
        postgres = Path(self.initdb_bin).with_name("postgres")
        self.postgres_bin = str(postgres) if postgres.exists() else require_tool("postgres")
        self._run_as = _os_user("postgres", "postgresql") if os.geteuid() == 0 else None
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.admin_password = admin_password or secrets.token_urlsafe(18)
        self.settings = dict(settings or {})
        self.root_dir, self._private = _private_dir(base_dir, "keyroll-pg-", owner=self._run_as, reserve=40)
        self.data_dir = self.root_dir / "data"
        self.socket_dir = self.root_dir / "sock"
        self.log_path = self.root_dir / "postgresql.log"
        self._base_dir = Path(base_dir) if base_dir is not None else None

    # -- lifecycle hooks -----------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        self.socket_dir.mkdir(mode=0o755)
        if self._run_as is not None:
            os.chown(self.socket_dir, self._run_as.uid, self._run_as.gid)
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs.update(user=self._run_as.uid, group=self._run_as.gid, extra_groups=[])
        argv = [
            self.initdb_bin,
            "--pgdata",
            str(self.data_dir),
            "--username",
            self.admin_user,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
        result = subprocess.run(
            argv, cwd=self.root_dir, env=self._env(), capture_output=True, timeout=120, check=False, **kwargs
        )
        if result.returncode != 0:
            out = (result.stdout + result.stderr).decode("utf-8", "replace")
            raise RuntimeError(f"initdb failed with status {result.returncode}:\n{out}")
        (self.data_dir / "pg_hba.conf").write_text(
            "# written by tests/peers.py\n"
            "local all postgres trust\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        conf = {
            "password_encryption": "scram-sha-256",
            "log_statement": "all",
            "log_min_error_statement": "error",
            "log_line_prefix": "%m [%p] %q%u@%d ",
            "logging_collector": "off",
            "log_destination": "stderr",
            "log_timezone": "UTC",
            "timezone": "UTC",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "wal_level": "minimal",
            "max_wal_senders": "0",
            "shared_buffers": "32MB",
            "max_connections": "50",
            "ssl": "off",
            "unix_socket_permissions": "0777",
            **self.settings,
        }
        with open(self.data_dir / "postgresql.conf", "a") as fh:
            fh.write("\n# added by tests/peers.py\n")
            fh.writelines(f"{key} = {_pg_quote(value)}\n" for key, value in conf.items())

    def _argv(self) -> list[str]:
        return [
            self.postgres_bin,
            "-D",
            str(self.data_dir),
            "-c",
            f"port={self.port}",
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
        ]

    def _ready(self) -> bool:
        if not (self.socket_dir / f".s.PGSQL.{self.port}").exists():
            return False
        try:
            with self._admin_connect(connect_timeout=2):
                return True
        except self._psycopg.OperationalError:
            return False

    def _after_first_start(self) -> None:
        self.set_password(self.admin_user, self.admin_password)

    def _cleanup_files(self) -> None:
        if self._private:
            # keep the server log next to the test's other files for post-mortems
            if self._base_dir is not None and self.log_path.exists():
                with contextlib.suppress(OSError):
                    shutil.copyfile(self.log_path, self._base_dir / f"{self.root_dir.name}.log")
            shutil.rmtree(self.root_dir, ignore_errors=True)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)  # ~40 MB each: do not let pytest's basetemps pile up

    # -- helpers -------------------------------------------------------------------------------------------------
    def conninfo(self, user: str | None = None, password: str | None = None, dbname: str = "postgres") -> str:
        """libpq connection string for a TCP login (default: the admin user with :attr:`admin_password`)."""
        if user is None:
            user, password = self.admin_user, self.admin_password
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": user,
            "dbname": dbname,
            "sslmode": "disable",
            "gssencmode": "disable",
            "passfile": str(self.root_dir / "no-pgpass"),  # never read ~/.pgpass
        }
        if password is not None:
            params["password"] = password
        return str(self._psycopg.conninfo.make_conninfo("", **params))

    def _admin_connect(self, connect_timeout: float = 10) -> psycopg.Connection[Any]:
        """Superuser connection over the unix socket (trust); autocommit."""
        conn: psycopg.Connection[Any] = self._psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.admin_user,
            dbname="postgres",
            connect_timeout=max(1, int(connect_timeout)),
            sslmode="disable",
            gssencmode="disable",
            passfile=str(self.root_dir / "no-pgpass"),
            autocommit=True,
        )
        return conn

    def execute_admin(
        self, query: Any, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement as superuser (unix socket, autocommit); return its rows ([] when none). Logged."""
        with self._admin_connect() as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall()) if cur.description else []

    def _execute_unlogged(self, query: Any) -> None:
        """Run a statement carrying a secret with statement logging off for its transaction."""
        with self._admin_connect() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL log_statement = 'none'")
            cur.execute("SET LOCAL log_min_error_statement = 'panic'")
            cur.execute(query)

    def create_role(
        self, name: str, password: str | None, superuser: bool = False, createrole: bool = False, login: bool = True
    ) -> None:
        """CREATE ROLE with a SCRAM password; the statement is kept out of the server log."""
        sql = self._psycopg.sql
        options = [
            "LOGIN" if login else "NOLOGIN",
            "SUPERUSER" if superuser else "NOSUPERUSER",
            "CREATEROLE" if createrole else "NOCREATEROLE",
        ]
        query = sql.SQL("CREATE ROLE {} WITH {} PASSWORD {}").format(
            sql.Identifier(name),
            sql.SQL(" ".join(options)),
            sql.Literal(password) if password is not None else sql.SQL("NULL"),
        )
        self._execute_unlogged(query)

    def set_password(self, name: str, password: str | None) -> None:
        """ALTER ROLE ... PASSWORD, kept out of the server log."""
        sql = self._psycopg.sql
        query = sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password) if password is not None else sql.SQL("NULL")
        )
        self._execute_unlogged(query)

    def password_verifier(self, name: str) -> str | None:
        """The stored verifier (``SCRAM-SHA-256$...``) of role ``name``, from pg_authid."""
        rows = self.execute_admin("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,))
        return rows[0][0] if rows else None

    def login_ok(self, user: str, password: str, dbname: str = "postgres", timeout: float = 5.0) -> bool:
        """True if a fresh TCP connection as ``user``/``password`` succeeds (False when refused or server down)."""
        try:
            conn = self._psycopg.connect(self.conninfo(user, password, dbname), connect_timeout=max(1, int(timeout)))
        except self._psycopg.OperationalError:
            return False
        conn.close()
        return True

    def log_text(self) -> str:
        """The server log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --------------------------------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------------------------------


def _redis_quote(value: str) -> str:
    return json.dumps(value)  # redis.conf understands double-quoted strings with backslash escapes


class RedisServer(_ServerProcess):
    """A throwaway ``redis-server`` on 127.0.0.1:<free port>, no persistence, ACLs in :attr:`acl_path`.

    The ``default`` user has :attr:`default_password` (stored hashed in the ACL file). ``ACL SAVE`` and
    ``CONFIG REWRITE`` work (the server runs from :attr:`config_path`). Note that :meth:`stop` / :meth:`start` reload
    the ACL file: ACL changes that were not saved with ``ACL SAVE`` are lost, as on a real restart. If a test
    rotates the default user's password, update :attr:`default_password` so :meth:`client` keeps working.
    """

    kind = "Redis"

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        default_password: str | None = None,
        extra_config: str = "",
        startup_timeout: float = 30.0,
    ) -> None:
        """``extra_config``: lines appended to redis.conf."""
        super().__init__(startup_timeout=startup_timeout)
        self._redis: Any = _require_module("redis")
        self.redis_bin = require_tool("redis-server")
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.default_password = default_password or secrets.token_urlsafe(18)
        self.extra_config = extra_config
        self.root_dir, self._private = _private_dir(base_dir, "keyroll-redis-")
        self.config_path = self.root_dir / "redis.conf"
        self.acl_path = self.root_dir / "users.acl"
        self.log_path = self.root_dir / "redis.log"

    def _prepare(self) -> None:
        digest = hashlib.sha256(self.default_password.encode()).hexdigest()
        self.acl_path.write_text(f"user default on #{digest} ~* &* +@all\n")
        self.acl_path.chmod(0o600)
        self.config_path.write_text(
            "# written by tests/peers.py (the port is given on the command line)\n"
            f"bind {self.host}\n"
            "protected-mode yes\n"
            "daemonize no\n"
            'save ""\n'
            "appendonly no\n"
            f"dir {_redis_quote(str(self.root_dir))}\n"
            f"logfile {_redis_quote(str(self.log_path))}\n"
            f"aclfile {_redis_quote(str(self.acl_path))}\n"
            "loglevel notice\n" + self.extra_config + ("\n" if self.extra_config else "")
        )
        self.config_path.chmod(0o600)

    def _stdout_path(self) -> Path:
        return self.root_dir / "redis.stdout"

    def _argv(self) -> list[str]:
        return [self.redis_bin, str(self.config_path), "--port", str(self.port)]

    def _ready(self) -> bool:
        reply = _tcp_probe(self.host, self.port, b"PING\r\n")
        return reply is not None and reply[:1] in (b"+", b"-") and not reply.startswith(b"-LOADING")

    # -- helpers -------------------------------------------------------------------------------------------------
    def client(self, username: str = "default", password: str | None = None, **kwargs: Any) -> redis.Redis:
        """A redis-py client (default: the ``default`` user with :attr:`default_password`), without retries."""
        retry = self._redis.retry.Retry(self._redis.backoff.NoBackoff(), 0)
        options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5, "retry": retry}
        options.update(kwargs)
        client: redis.Redis = self._redis.Redis(
            host=self.host,
            port=self.port,
            username=username,
            password=self.default_password if password is None and username == "default" else password,
            **options,
        )
        return client

    def create_user(
        self, name: str, password: str, commands: str = "+@all", keys: str = "~*", channels: str = "&*"
    ) -> None:
        """``ACL SETUSER name reset on >password keys channels commands`` (not saved: call ``acl_save()``)."""
        with contextlib.closing(self.client()) as admin:
            command: Any = admin.execute_command  # untyped in redis-py
            command("ACL", "SETUSER", name, "reset", "on", f">{password}", keys, channels, *commands.split())

    def acl_save(self) -> None:
        """``ACL SAVE`` as the default user."""
        with contextlib.closing(self.client()) as admin:
            command: Any = admin.execute_command
            command("ACL", "SAVE")

    def login_ok(self, user: str, password: str, timeout: float = 5.0) -> bool:
        """True if ``AUTH user password`` succeeds on a fresh connection (False on WRONGPASS or server down)."""
        conn = self._redis.connection.Connection(
            host=self.host,
            port=self.port,
            username=user,
            password=password,
            protocol=2,  # plain AUTH, no HELLO: a pure credential check independent of the user's command ACLs
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=self._redis.retry.Retry(self._redis.backoff.NoBackoff(), 0),
        )
        try:
            conn.connect()
        except self._redis.exceptions.RedisError:
            # redis-py raises AuthenticationError (WRONGPASS/NOAUTH), or ResponseError for e.g.
            # "HELLO must be called with the client already authenticated"; ConnectionError when the server is down.
            return False
        finally:
            conn.disconnect()
        return True

    def config_file_text(self) -> str:
        """Current text of redis.conf (e.g. to assert no plaintext was written by CONFIG REWRITE)."""
        return self.config_path.read_text()

    def acl_file_text(self) -> str:
        """Current text of the ACL file (passwords appear there only as ``#<sha256>``)."""
        return self.acl_path.read_text() if self.acl_path.exists() else ""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --------------------------------------------------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------------------------------------------------


class MariaDBServer(_ServerProcess):
    """A throwaway ``mariadbd`` on 127.0.0.1:<free port> plus a unix socket, started from ``mariadb-install-db``.

    ``root`` has :attr:`admin_password` for ``localhost`` (socket), ``127.0.0.1`` and ``::1``; name resolution is
    off, so TCP logins match ``'user'@'127.0.0.1'`` or ``'user'@'%'``. The general query log is on
    (:attr:`general_log_path`); the fixture's own password statements run with ``sql_log_off`` and never appear
    there. The error log is :attr:`log_path`. If a test rotates root's password, update :attr:`admin_password`.
    """

    kind = "MariaDB"
    admin_user = "root"

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        admin_password: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        """``extra_args``: more ``mariadbd`` options."""
        super().__init__(startup_timeout=startup_timeout)
        self._pymysql: Any = _require_module("pymysql")
        self.mariadbd_bin = require_tool("mariadbd")
        self.install_db_bin = require_tool("mariadb-install-db")
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.admin_password = admin_password or secrets.token_urlsafe(18)
        self.extra_args = list(extra_args)
        self.root_dir, self._private = _private_dir(base_dir, "keyroll-mariadb-", reserve=20)
        self.data_dir = self.root_dir / "data"
        self.tmp_dir = self.root_dir / "tmp"
        self.socket_path = self.root_dir / "mysqld.sock"
        self.log_path = self.root_dir / "error.log"
        self.general_log_path = self.root_dir / "general.log"
        self._root_has_password = False

    def _user_args(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def _prepare(self) -> None:
        self.tmp_dir.mkdir()
        argv = [
            self.install_db_bin,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            *self._user_args(),
        ]
        result = subprocess.run(argv, cwd=self.root_dir, env=self._env(), capture_output=True, timeout=180, check=False)
        if result.returncode != 0:
            out = (result.stdout + result.stderr).decode("utf-8", "replace")
            raise RuntimeError(f"mariadb-install-db failed with status {result.returncode}:\n{out[-4000:]}")

    def _stdout_path(self) -> Path:
        return self.root_dir / "mariadbd.stdout"

    def _argv(self) -> list[str]:
        return [
            self.mariadbd_bin,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--socket={self.socket_path}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--pid-file={self.root_dir / 'mariadbd.pid'}",
            f"--log-error={self.log_path}",
            "--general-log=1",
            f"--general-log-file={self.general_log_path}",
            f"--tmpdir={self.tmp_dir}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            "--innodb-use-native-aio=0",
            "--max-connections=100",
            "--character-set-server=utf8mb4",
            *self._user_args(),
            *self.extra_args,
        ]

    def _ready(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            self._admin_connect(connect_timeout=2).close()
        except self._pymysql.err.OperationalError as exc:
            return bool(exc.args and exc.args[0] in (1045, 1698))  # access denied: up, just not our password
        return True

    def _after_first_start(self) -> None:
        with contextlib.closing(self._admin_connect()) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_off = 1")
            # (install-db may also create root@<hostname>, which --skip-name-resolve ignores: leave it alone)
            cur.execute(
                "SELECT user, host FROM mysql.user WHERE user = 'root' AND host IN ('localhost', '127.0.0.1', '::1')"
            )
            for user, host in cur.fetchall():
                cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, self.admin_password))
        self._root_has_password = True

    # -- helpers -------------------------------------------------------------------------------------------------
    def _admin_connect(self, connect_timeout: float = 10) -> pymysql.connections.Connection[Any]:
        """root over the unix socket, autocommit."""
        conn: pymysql.connections.Connection[Any] = self._pymysql.connect(
            unix_socket=str(self.socket_path),
            user=self.admin_user,
            password=self.admin_password if self._root_has_password else "",
            connect_timeout=max(1, int(connect_timeout)),
            autocommit=True,
        )
        return conn

    def execute_admin(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement as root (unix socket, autocommit); return its rows. Appears in the general log."""
        with contextlib.closing(self._admin_connect()) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall()) if cur.description else []

    def create_user(
        self, name: str, password: str, host: str = "%", privileges: str | None = None, grant_option: bool = False
    ) -> None:
        """CREATE USER name@host IDENTIFIED BY password, kept out of the general log.

        ``privileges`` (trusted SQL, e.g. ``"ALL PRIVILEGES ON *.*"``) adds ``GRANT privileges TO name@host``
        [``WITH GRANT OPTION``].
        """
        with contextlib.closing(self._admin_connect()) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_off = 1")
            cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (name, host, password))
            if privileges:
                suffix = " WITH GRANT OPTION" if grant_option else ""
                cur.execute(f"GRANT {privileges} TO %s@%s{suffix}", (name, host))

    def set_password(self, name: str, password: str, host: str = "%") -> None:
        """ALTER USER name@host IDENTIFIED BY password, kept out of the general log."""
        with contextlib.closing(self._admin_connect()) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_off = 1")
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (name, host, password))

    def login_ok(self, user: str, password: str, timeout: float = 5.0) -> bool:
        """True if a fresh TCP connection as ``user``/``password`` succeeds (False when denied or server down)."""
        try:
            conn = self._pymysql.connect(
                host=self.host, port=self.port, user=user, password=password, connect_timeout=max(1, int(timeout))
            )
        except self._pymysql.err.OperationalError:
            return False
        conn.close()
        return True

    def general_log_text(self) -> str:
        return self.general_log_path.read_text(errors="replace") if self.general_log_path.exists() else ""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --------------------------------------------------------------------------------------------------------------------
# RabbitMQ
# --------------------------------------------------------------------------------------------------------------------


class RabbitMQServer(_ServerProcess):
    """A throwaway RabbitMQ node with the management plugin, on free loopback ports.

    Everything is its own: node name ``keyroll-test-<amqp port>@localhost``, AMQP, management (HTTP API) and
    distribution ports, Erlang cookie (``$HOME/.erlang.cookie`` in :attr:`root_dir`), mnesia, log and config files;
    the machine's ``/etc/rabbitmq/rabbitmq-env.conf`` is not read.  It registers with the machine's epmd (4369), as
    every node does.  The administrator is :attr:`admin_user` with :attr:`admin_password`.  Logs (the node's log at
    debug level and the management HTTP access log) are in :attr:`log_dir`.
    """

    kind = "RabbitMQ"
    admin_user = "keyroll-admin"

    def __init__(self, base_dir: str | os.PathLike[str] | None = None, *, startup_timeout: float = 90.0) -> None:
        super().__init__(startup_timeout=startup_timeout)
        script = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # (the /usr/sbin wrapper switches to the rabbitmq user)
        if not os.access(script, os.X_OK):
            _missing(f"executable {script!r}", "rabbitmq-server")
        self.script = script
        self.port = free_port()
        self.management_port = free_port()
        self.dist_port = free_port()
        self.admin_password = secrets.token_urlsafe(18)
        self.node_name = f"keyroll-test-{self.port}@localhost"
        self.root_dir, self._private = _private_dir(base_dir, "keyroll-rabbitmq-")
        self.log_dir = self.root_dir / "log"
        self.log_path = self.log_dir / f"{self.node_name}.log"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    def _prepare(self) -> None:
        for name in ("home", "mnesia", "log", "http-log"):
            (self.root_dir / name).mkdir(mode=0o700)
        cookie = self.root_dir / "home" / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        (self.root_dir / "rabbitmq-env.conf").write_text("")
        (self.root_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.root_dir / "rabbitmq.conf").write_text(
            "# written by tests/peers.py\n"
            f"listeners.tcp.local = {self.host}:{self.port}\n"
            f"management.tcp.ip = {self.host}\n"
            f"management.tcp.port = {self.management_port}\n"
            f"management.http_log_dir = {self.root_dir / 'http-log'}\n"
            "loopback_users = none\n"
            f"default_user = {self.admin_user}\n"
            f"default_pass = {self.admin_password}\n"
            "default_user_tags.administrator = true\n"
            "log.file.level = debug\n"
            "log.console = false\n"
        )

    def _env(self) -> dict[str, str]:
        return {
            **super()._env(),
            "HOME": str(self.root_dir / "home"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root_dir / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_MNESIA_BASE": str(self.root_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root_dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.root_dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root_dir / "advanced.config"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_PID_FILE": str(self.root_dir / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": self.host,
        }

    def _stdout_path(self) -> Path:
        return self.root_dir / "rabbitmq.stdout"

    def _argv(self) -> list[str]:
        return [self.script]

    def _ready(self) -> bool:
        try:
            return self.api("GET", "/api/overview", timeout=2)[0] == 200
        except OSError:
            return False

    # -- helpers -------------------------------------------------------------------------------------------------
    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 10,
    ) -> tuple[int, Any]:
        """One management API request (default: as the administrator); (status, parsed JSON or None)."""
        import base64
        import urllib.error
        import urllib.request

        login = f"{user or self.admin_user}:{self.admin_password if password is None else password}"
        headers = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.api_url + path, data=data, method=method, headers=headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, (json.loads(raw) if raw.strip() else None)

    def create_user(self, name: str, password: str, tags: str = "management") -> None:
        """A user with full rights on the default vhost."""
        assert self.api("PUT", f"/api/users/{name}", {"password": password, "tags": tags})[0] in (201, 204)
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        assert self.api("PUT", f"/api/permissions/%2F/{name}", everything)[0] in (201, 204)

    def amqp_login_ok(self, user: str, password: str) -> bool:
        """True if an AMQP 0-9-1 connection (pika) as ``user`` is accepted; False if the login is refused."""
        pika: Any = _require_module("pika")
        parameters = pika.ConnectionParameters(
            host=self.host,
            port=self.port,
            credentials=pika.PlainCredentials(user, password, erase_on_connect=True),
            connection_attempts=1,
            socket_timeout=5,
            blocked_connection_timeout=5,
        )
        try:
            connection = pika.BlockingConnection(parameters)
        except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError):
            return False
        connection.close()
        return True

    def log_text(self) -> str:
        """Every log the node wrote (node logs and the management HTTP access log)."""
        parts = []
        for folder in (self.log_dir, self.root_dir / "http-log"):
            for path in sorted(folder.glob("*")):
                if path.is_file():
                    parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)


# --------------------------------------------------------------------------------------------------------------------
# SMTP sink
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SMTPMessage:
    """One message received by :class:`SMTPSink`."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    #: login used with AUTH, if any
    login: str | None = None

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str:
        """The plain-text (else HTML) body."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        return str(part.get_content()) if part is not None else ""


class _Waitable:
    """Thread-safe list of received items with ``wait_for``."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._cond = threading.Condition()

    def _record(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def _snapshot(self) -> list[Any]:
        with self._cond:
            return list(self._items)

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._cond:
            self._items.clear()

    def _wait_count(self, n: int, timeout: float, what: str) -> list[Any]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._items) >= n, timeout):
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {n} {what}; got {len(self._items)}")
            return list(self._items)


class SMTPSink(_Waitable):
    """An aiosmtpd SMTP server on 127.0.0.1:<free port> recording every message.

    ``auth=(login, password)`` enables AUTH PLAIN/LOGIN without TLS and requires it before MAIL FROM (``530``);
    failed logins are listed in :attr:`failed_logins`. ``data_response`` replaces the reply to DATA, e.g.
    ``"554 5.0.0 rejected"`` to simulate a failing mail relay (the message is still recorded).
    """

    def __init__(self, *, auth: tuple[str, str] | None = None, data_response: str | None = None) -> None:
        super().__init__()
        self._aiosmtpd_controller: Any = _require_module("aiosmtpd.controller")
        self._aiosmtpd_smtp: Any = _require_module("aiosmtpd.smtp")
        self.host = LOOPBACK
        self.port = 0
        self.auth = auth
        self.data_response = data_response
        self.failed_logins: list[str] = []
        self._controller: Any = None

    @property
    def messages(self) -> list[SMTPMessage]:
        """Messages received so far (a copy)."""
        return self._snapshot()

    def start(self) -> Self:
        if self._controller is not None:
            return self
        logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's per-session chatter and deprecations
        kwargs: dict[str, Any] = {}
        if self.auth is not None:
            # AUTH without TLS; required by _SMTPHandler.handle_MAIL (aiosmtpd's auth_required would warn on every
            # connection about the missing TLS)
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        last: Exception | None = None
        for _ in range(5):
            self.port = free_port()
            controller = self._aiosmtpd_controller.Controller(
                _SMTPHandler(self), hostname=self.host, port=self.port, ready_timeout=10, **kwargs
            )
            try:
                controller.start()
            except Exception as exc:  # port taken between free_port() and bind: retry
                last = exc
                with contextlib.suppress(Exception):
                    controller.stop()
                continue
            self._controller = controller
            return self
        raise RuntimeError(f"SMTP sink could not start: {last}")

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        smtp = self._aiosmtpd_smtp
        login = auth_data.login.decode() if isinstance(auth_data.login, bytes) else str(auth_data.login)
        password = auth_data.password.decode() if isinstance(auth_data.password, bytes) else str(auth_data.password)
        assert self.auth is not None
        if (login, password) == self.auth:
            return smtp.AuthResult(success=True, auth_data=login)
        self.failed_logins.append(login)
        return smtp.AuthResult(success=False, handled=False)

    def close(self) -> None:
        """Stop the server thread; idempotent."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def wait_for(self, n: int = 1, timeout: float = 10.0) -> list[SMTPMessage]:
        """Wait until at least ``n`` messages arrived; return them all (TimeoutError otherwise)."""
        return self._wait_count(n, timeout, "SMTP messages")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _SMTPHandler:
    def __init__(self, sink: SMTPSink) -> None:
        self.sink = sink

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.sink.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        # parse with plain newlines so that bodies compare equal to what the sender passed in
        message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        auth = getattr(session, "auth_data", None)
        self.sink._record(
            SMTPMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                message=message,
                login=str(auth) if auth is not None else None,
            )
        )
        return self.sink.data_response or "250 Message accepted for delivery"


# --------------------------------------------------------------------------------------------------------------------
# HTTP sink
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HTTPRequest:
    """One request received by :class:`HTTPSink`."""

    method: str
    path: str
    headers: Message
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _SinkHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    sink: HTTPSink


class _SinkHandler(BaseHTTPRequestHandler):
    server: _SinkHTTPServer
    protocol_version = "HTTP/1.0"

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        sink = self.server.sink
        sink._record(HTTPRequest(self.command, self.path, self.headers, self._read_body()))
        if sink.hang_seconds > 0:
            sink._closing.wait(sink.hang_seconds)
        body = sink.response_body
        try:
            self.send_response(sink.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (e.g. timed out on a hanging sink)

    do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HTTPSink(_Waitable):
    """A threaded HTTP server on 127.0.0.1:<free port> recording every request (method, path, headers, body).

    ``status`` and ``hang_seconds`` may be changed at any time: e.g. ``status=500`` simulates a failing webhook,
    ``hang_seconds=30`` one that does not answer (the request is recorded first; closing the sink releases it).
    """

    def __init__(self, *, status: int = 200, hang_seconds: float = 0.0, response_body: bytes = b'{"ok": true}') -> None:
        super().__init__()
        self.host = LOOPBACK
        self.port = 0
        self.status = status
        self.hang_seconds = hang_seconds
        self.response_body = response_body
        self._closing = threading.Event()
        self._server: _SinkHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def requests(self) -> list[HTTPRequest]:
        """Requests received so far (a copy)."""
        return self._snapshot()

    @property
    def bodies(self) -> list[Any]:
        """JSON bodies received so far (None for non-JSON ones)."""
        return [r.json for r in self._snapshot()]

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._closing.clear()
        server = _SinkHTTPServer((self.host, 0), _SinkHandler)  # port 0: the kernel picks, no race
        server.sink = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"HTTPSink:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving (releases hanging requests); idempotent."""
        server, self._server = self._server, None
        self._closing.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def wait_for(self, n: int = 1, timeout: float = 10.0) -> list[HTTPRequest]:
        """Wait until at least ``n`` requests arrived; return them all (TimeoutError otherwise)."""
        return self._wait_count(n, timeout, "HTTP requests")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------------------------
# sd_notify socket
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Datagram:
    """One datagram received by :class:`NotifySocket`, with the sender's credentials (SCM_CREDENTIALS)."""

    data: bytes
    pid: int | None = None
    uid: int | None = None
    gid: int | None = None

    @property
    def lines(self) -> list[str]:
        return [line for line in self.data.decode("utf-8", "replace").split("\n") if line]


class NotifySocket(_Waitable):
    """A real AF_UNIX SOCK_DGRAM socket like systemd's ``$NOTIFY_SOCKET``, recording datagrams in a thread.

    Use ``env={**os.environ, **sock.env}`` for the process under test.
    """

    def __init__(self, base_dir: str | os.PathLike[str] | None = None, name: str = "notify.sock") -> None:
        super().__init__()
        self._dir, self._private = _private_dir(base_dir, "keyroll-notify-", reserve=len(name) + 1)
        self.path = self._dir / name
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path)}

    def start(self) -> Self:
        if self._sock is not None:
            return self
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o666)  # like systemd's: services that drop privileges can still notify
        sock.settimeout(0.05)
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"NotifySocket:{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        sock = self._sock
        assert sock is not None
        ancbufsize = socket.CMSG_SPACE(struct.calcsize("3i")) + socket.CMSG_SPACE(64 * 4)
        while not self._stop.is_set():
            try:
                data, ancdata, _flags, _addr = sock.recvmsg(65536, ancbufsize)
            except TimeoutError:
                continue
            except OSError:
                return
            pid = uid = gid = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= 12:
                    pid, uid, gid = struct.unpack("3i", payload[:12])
                elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:  # FDSTORE=1: don't leak the fds
                    for (fd,) in struct.iter_unpack("i", payload[: len(payload) - len(payload) % 4]):
                        with contextlib.suppress(OSError):
                            os.close(fd)
            self._record(Datagram(data, pid, uid, gid))

    def datagrams(self) -> list[Datagram]:
        """Datagrams received so far."""
        return self._snapshot()

    def messages(self) -> list[str]:
        """All ``KEY=VALUE`` lines received so far, in order (a datagram may hold several)."""
        return [line for d in self._snapshot() for line in d.lines]

    def wait_for(self, predicate: str | Callable[[str], bool] = "READY=1", timeout: float = 10.0) -> str:
        """Wait for a line equal to ``predicate`` (or for which ``predicate(line)`` is true); return that line."""
        match: Callable[[str], bool] = predicate.__eq__ if isinstance(predicate, str) else predicate
        with self._cond:
            line = self._cond.wait_for(lambda: next((x for x in _iter_lines(self._items) if match(x)), None), timeout)
            if line is None:
                got = list(_iter_lines(self._items))
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {predicate!r}; got {got!r}")
            return str(line)

    def close(self) -> None:
        """Stop listening and remove the socket; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(OSError):
            self.path.unlink()
        if self._private:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _iter_lines(datagrams: Sequence[Datagram]) -> Iterator[str]:
    for d in datagrams:
        yield from d.lines
