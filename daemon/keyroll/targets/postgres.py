"""PostgreSQL: change a role's password with ALTER ROLE, sending only the
SCRAM-SHA-256 verifier computed client-side, so the plaintext never reaches the
server or its log.  Open connections keep working; new logins need the new value."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from keyroll.errors import ServiceUnavailable, TargetError
from keyroll.schedule import parse_duration
from keyroll.targets.base import APPLICATION_PREFIX, BaseTarget, Connections, Credentials, LoginRefused, client_library

if TYPE_CHECKING:
    import psycopg

    from keyroll.config.schema import PostgresTarget as PostgresConfig

_AUTH_SQLSTATES = {"28P01", "28000"}  # invalid_password, invalid_authorization_specification
_AUTH_PHRASES = ("password authentication failed", "no password supplied", "authentication failed")


def _last_line(exc: BaseException) -> str:
    """The part of a libpq error that says why (after its last 'FATAL:' or 'ERROR:')."""
    text = " ".join(str(exc).split())
    for marker in ("FATAL:", "ERROR:"):
        if marker in text:
            return text.rsplit(marker, 1)[1].strip()
    return text.removeprefix("connection failed:").strip() or type(exc).__name__


class PostgresTarget(BaseTarget):
    """A role's password on one PostgreSQL server."""

    def __init__(
        self, name: str, config: PostgresConfig, credentials: Credentials, secret: str, connections: Connections
    ) -> None:
        super().__init__(name, credentials, secret, connections)
        self.config = config
        self._admin_key = ("postgres", config.host, config.port, config.database, credentials.user)
        self._timeout = max(1, int(parse_duration(config.connect_timeout).total_seconds()))

    def describe(self) -> str:
        c = self.config
        return f"PostgreSQL role {c.user!r} at {c.host}:{c.port}"

    # --- connections ------------------------------------------------------------------

    def _connect(self, user: str, password: str | None) -> psycopg.Connection[Any]:
        """A new connection; ServiceUnavailable if the server cannot be reached,
        TargetError (auth=True attribute) if it refuses the login."""
        psycopg = client_library("psycopg", "postgres")
        params: dict[str, Any] = {
            "host": self.config.host,
            "port": self.config.port,
            "dbname": self.config.database,
            "user": user,
            "connect_timeout": self._timeout,
            "application_name": f"{APPLICATION_PREFIX}{os.getpid()}",
            "autocommit": True,
        }
        if password is not None:
            params["password"] = password
        try:
            return psycopg.connect(**params)  # type: ignore[no-any-return]
        except psycopg.OperationalError as exc:
            reason = _last_line(exc)
            if getattr(exc, "sqlstate", None) in _AUTH_SQLSTATES or any(p in reason for p in _AUTH_PHRASES):
                raise LoginRefused(f"{self.describe()}: login as {user!r} refused ({reason})") from None
            raise ServiceUnavailable(f"{self.describe()}: unreachable ({reason})") from None

    def _admin_connection(self) -> psycopg.Connection[Any]:
        connection: psycopg.Connection[Any] | None = self._connections.get(self._admin_key)
        if connection is not None and not connection.closed and not connection.broken:
            return connection
        try:
            connection = self._connect(self.credentials.user, self.credentials.password())
        except LoginRefused as exc:
            raise TargetError(f"{exc}: {self.credentials.refused()}") from None
        return self._connections.put(self._admin_key, connection, lambda c: c.close())  # type: ignore[no-any-return]

    def _execute(self, query: Any, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        psycopg = client_library("psycopg", "postgres")
        connection = self._admin_connection()
        try:
            cursor = connection.execute(query, params)
            return cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError as exc:
            self._connections.discard(self._admin_key)
            raise ServiceUnavailable(f"{self.describe()}: connection lost ({_last_line(exc)})") from None
        except psycopg.Error as exc:
            raise TargetError(f"{self.describe()}: {_last_line(exc)}") from None

    # --- the interface ----------------------------------------------------------------

    def check(self) -> None:
        rows = self._execute(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = %s), rolsuper, rolcreaterole "
            "FROM pg_roles WHERE rolname = current_user",
            (self.config.user,),
        )
        exists, superuser, createrole = rows[0]
        if not exists:
            raise TargetError(f"{self.describe()}: the role does not exist")
        if not self.credentials.own and not (superuser or createrole):
            raise TargetError(
                f"{self.describe()}: {self.credentials.user!r} may not change passwords (needs CREATEROLE)"
            )

    def accepts(self, value: str) -> bool:
        return self.accepts_as(self.config.user, value)

    def accepts_as(self, login: str, value: str) -> bool:
        """Whether the server lets `login` log in with `value`."""
        try:
            self._connect(login, value).close()
        except LoginRefused:
            return False
        return True

    def set_password(self, value: str, login: str | None = None) -> None:
        """Set the password of `login` (the configured role by default) to `value`."""
        from psycopg import sql

        login = self.config.user if login is None else login
        connection = self._admin_connection()
        verifier = connection.pgconn.encrypt_password(value.encode(), login.encode(), b"scram-sha-256")
        statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(login), sql.Literal(verifier.decode()))
        self._execute(statement)

    def wait_idle(self, timeout: float) -> None:
        """Wait until no other keyroll session is active on the server: a killed
        client's ALTER ROLE can still commit after the kill."""
        deadline = time.monotonic() + timeout
        mine = f"{APPLICATION_PREFIX}{os.getpid()}"
        while True:
            rows = self._execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s AND application_name <> %s",
                (APPLICATION_PREFIX + "%", mine),
            )
            if rows[0][0] == 0:
                return
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"{self.describe()}: another keyroll session is still active after {timeout:g}s"
                )
            time.sleep(0.2)

    def close(self) -> None:
        self._connections.discard(self._admin_key)
