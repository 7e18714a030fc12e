"""MariaDB / MySQL: change an account's password with ALTER USER ... IDENTIFIED BY
PASSWORD, sending only the mysql_native_password hash computed client-side, so the
plaintext never reaches the server or its general log.  With the single strategy
the server keeps one password per account, so the change is not zero-downtime for
new logins.

`strategy = "dual"` (MariaDB 10.4+) gives the account a chain of authentication
alternatives, `IDENTIFIED VIA mysql_native_password USING '<new hash>' OR
mysql_native_password USING '<old hash>'`: both passwords log in until the grace has
passed, then the chain is cut back to the new one alone.  The chain is read back
with SHOW CREATE USER; alternatives other than mysql_native_password are not kept.
MySQL 8 (RETAIN CURRENT PASSWORD) is not supported: the check says so."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from keyroll.errors import ServiceUnavailable, TargetError
from keyroll.schedule import parse_duration
from keyroll.targets.base import BaseTarget, Connections, Credentials, LoginRefused, client_library

if TYPE_CHECKING:
    from keyroll.config.schema import MysqlTarget as MysqlConfig

_ACCESS_DENIED = 1045
# Server errors pymysql raises as OperationalError that are a refusal, not a lost connection: database,
# table, column access denied, and "you need the CREATE USER privilege" (1227).
_DENIED = frozenset({1044, 1142, 1143, 1227})
_NATIVE_HASH = re.compile(r"'(\*[0-9A-F]{40})'")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'")  # a single-quoted SQL string (a password hash, a host)


def _other_plugins(create_user: str) -> set[str]:
    """The authentication plugins of a SHOW CREATE USER statement besides mysql_native_password."""
    # (no word inside a quoted hash or a `name` counts)
    bare = re.sub(r"`(?:[^`]|``)*`", "``", _QUOTED.sub("''", create_user))
    return {p.lower() for p in re.findall(r"\b(?:VIA|OR)\s+(\w+)", bare)} - {"mysql_native_password"}


def native_password_hash(value: str) -> str:
    """mysql_native_password's stored form: '*' + upper hex of SHA1(SHA1(password))."""
    return "*" + hashlib.sha1(hashlib.sha1(value.encode("utf-8")).digest()).hexdigest().upper()


class MysqlTarget(BaseTarget):
    """An account's password on one MariaDB/MySQL server."""

    def __init__(
        self, name: str, config: MysqlConfig, credentials: Credentials, secret: str, connections: Connections
    ) -> None:
        super().__init__(name, credentials, secret, connections)
        self.config = config
        self._timeout = max(1, int(parse_duration(config.connect_timeout).total_seconds()))
        self._admin_key = ("mysql", config.host, config.port, credentials.user)
        self.keeps_old = config.strategy == "dual"  # (strategy dual: the old value stays valid for the grace)
        self.grace = parse_duration(config.grace) if self.keeps_old else timedelta(0)

    def describe(self) -> str:
        c = self.config
        return f"MariaDB/MySQL account '{c.user}'@'{c.user_host}' at {c.host}:{c.port}"

    def _connect(self, user: str, password: str | None) -> Any:
        pymysql = client_library("pymysql", "mysql")
        try:
            return pymysql.connect(
                host=self.config.host,
                port=self.config.port,
                user=user,
                password=password or "",
                connect_timeout=self._timeout,
                # pymysql's connect_timeout covers the TCP connect only: a server that
                # accepts and then stalls would hang the greeting and every query.
                read_timeout=max(self._timeout, 10),
                write_timeout=max(self._timeout, 10),
                autocommit=True,
                program_name="keyroll",
            )
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            if code == _ACCESS_DENIED:
                raise LoginRefused(f"{self.describe()}: login as {user!r} refused") from None
            raise ServiceUnavailable(f"{self.describe()}: unreachable ({exc.args[-1] if exc.args else exc})") from None

    def _execute(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        pymysql = client_library("pymysql", "mysql")
        connection = self._connections.get(self._admin_key)
        if connection is None:
            try:
                connection = self._connect(self.credentials.user, self.credentials.password())
            except LoginRefused as exc:
                raise TargetError(f"{exc}: {self.credentials.refused()}") from None
            self._connections.put(self._admin_key, connection, lambda c: c.close())
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
                return list(cursor.fetchall())
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in _DENIED:  # the server refused the statement: no outage, no retry
                raise TargetError(f"{self.describe()}: {exc.args[-1]}") from None
            self.close()
            raise ServiceUnavailable(
                f"{self.describe()}: connection lost ({exc.args[-1] if exc.args else exc})"
            ) from None
        except pymysql.err.MySQLError as exc:
            raise TargetError(f"{self.describe()}: {exc.args[-1] if exc.args else exc}") from None

    def check(self) -> None:
        if self.credentials.own:
            self._execute("SELECT 1")
            return
        rows = self._execute(
            "SELECT count(*) FROM mysql.user WHERE User = %s AND Host = %s", (self.config.user, self.config.user_host)
        )
        if not rows or not rows[0][0]:
            raise TargetError(f"{self.describe()}: the account does not exist")
        if not self._may_alter_users():
            raise TargetError(
                f"{self.describe()}: admin {self.credentials.user!r} lacks the CREATE USER privilege "
                f"(GRANT CREATE USER ON *.* TO '{self.credentials.user}'@...)"
            )
        if self.keeps_old:
            version = str(self._execute("SELECT VERSION()")[0][0])
            number = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
            if "mariadb" not in version.lower() or number < (10, 4):
                raise TargetError(
                    f"{self.describe()}: strategy dual needs MariaDB 10.4 or later (the server is {version}); "
                    "MySQL's RETAIN CURRENT PASSWORD is not supported"
                )
            others = sorted(_other_plugins(self._create_user()))
            if others:
                # The chain keyroll writes holds password hashes only: it would drop these silently.
                raise TargetError(
                    f"{self.describe()}: the account also authenticates via {', '.join(others)}, which "
                    "strategy dual would remove (it keeps mysql_native_password hashes only); "
                    'drop that alternative or use strategy = "single"'
                )

    def _may_alter_users(self) -> bool:
        """The admin's grants allow ALTER USER: global CREATE USER, UPDATE or ALL, or UPDATE on
        `mysql`.  A granted role is not looked into: then the answer is yes (no false alarm)."""
        for (line,) in self._execute("SHOW GRANTS"):
            bare = _QUOTED.sub("''", str(line)).upper()  # (the password hash is left out)
            head = bare.split(" TO ", 1)[0]
            if not head.startswith("GRANT "):
                continue
            privileges, _, on = head.removeprefix("GRANT ").partition(" ON ")
            if not on:
                return True  # GRANT `role` TO ...
            held = {p.strip() for p in privileges.split(",")}
            if on.strip() == "*.*" and held & {"ALL PRIVILEGES", "CREATE USER", "UPDATE"}:
                return True
            if on.strip() == "`MYSQL`.*" and held & {"ALL PRIVILEGES", "UPDATE"}:
                return True
        return False

    def accepts(self, value: str) -> bool:
        try:
            self._connect(self.config.user, value).close()
        except LoginRefused:
            return False
        return True

    def set_password(self, value: str) -> None:
        digest = native_password_hash(value)
        if self.credentials.own:
            self._execute("SET PASSWORD = %s", (digest,))
        else:
            self._execute(
                "ALTER USER %s@%s IDENTIFIED BY PASSWORD %s", (self.config.user, self.config.user_host, digest)
            )

    # --- strategy dual ------------------------------------------------------------------

    def _create_user(self) -> str:
        """The account's SHOW CREATE USER statement ('' when the server shows none)."""
        rows = self._execute("SHOW CREATE USER %s@%s", (self.config.user, self.config.user_host))
        return str(rows[0][0]) if rows else ""

    def _chain(self) -> list[str]:
        """The account's mysql_native_password hashes, in order (SHOW CREATE USER)."""
        return _NATIVE_HASH.findall(self._create_user())

    def _set_chain(self, hashes: list[str]) -> None:
        """Replace the account's authentication by these alternatives (the first is what SET PASSWORD changes)."""
        alternatives = " OR ".join(["mysql_native_password USING %s"] * len(hashes))
        self._execute(
            f"ALTER USER %s@%s IDENTIFIED VIA {alternatives}", (self.config.user, self.config.user_host, *hashes)
        )

    def apply(self, new: str, old: str | None) -> None:
        if not self.keeps_old:
            return super().apply(new, old)
        chain = [native_password_hash(new)]
        if old is not None and old != new:
            chain.append(native_password_hash(old))
        else:
            # No value known before (init, or `set` of a first value): the password the account has
            # today keeps working for the grace too, for consumers not yet restarted.
            chain += [h for h in self._chain()[:1] if h != chain[0]]
        self._set_chain(chain)

    def rollback(self, old: str | None, new: str) -> None:
        if old is not None and old != new and not self.accepts(new) and self.accepts(old):
            return  # the change never reached the account (e.g. the admin may not make it): nothing to undo
        if not self.keeps_old:
            return super().rollback(old, new)
        if old is None:
            raise TargetError(f"{self.describe()}: there is no previous value to go back to")
        self._set_chain([native_password_hash(old)])

    def retirement_token(self, old: str) -> str | None:
        return native_password_hash(old) if self.keeps_old else None

    def retire(self, token: str) -> None:
        chain = self._chain()
        if token in chain and len(chain) > 1:  # (never the last one: that is the current password)
            self._set_chain([h for h in chain if h != token])

    def other_credentials(self, current: str) -> list[str]:
        if not self.keeps_old:
            return []
        keep = native_password_hash(current)
        return [h for h in self._chain() if h != keep]

    def close(self) -> None:
        self._connections.discard(self._admin_key)
