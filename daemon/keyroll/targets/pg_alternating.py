"""PostgreSQL `strategy = "alternating"`: two login roles take turns, so a rotation
never invalidates the password consumers are using.

`user` keeps owning its objects; the alternate login (`<user>_clone` by default) is a
member of `user` that inherits its privileges and whose sessions act as `user`
(`ALTER ROLE clone SET role = user`; PostgreSQL 16+ also needs the membership's SET
option), so whatever either login creates belongs to `user`.  Each rotation sets the
new password on the login that is *not* in use, checks a fresh login with it (and that
`current_user` is `user`), and the transaction stores the login name (the target's
`username_secret`) in the same write as the password (`companion_values`).  The
login left behind keeps its password for `grace`; then it is retired: its password
is replaced by a random value nobody knows.

Which login a password belongs to is asked of the server (a fresh login with each),
never guessed, so recovery after a kill at any step pairs the password with the
login that accepts it.  Retirement tokens are login names: the transaction never
retires the login whose password is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from keyroll.errors import TargetError
from keyroll.schedule import parse_duration
from keyroll.targets.base import APPLICATION_PREFIX, Connections, Credentials
from keyroll.targets.postgres import PostgresTarget

if TYPE_CHECKING:
    from keyroll.config.schema import PostgresTarget as PostgresConfig

RETIRED_LENGTH = 48  # the unknown password a retired login is left with


class AlternatingPostgresTarget(PostgresTarget):
    """A role reached through two logins that take turns (see the module docstring)."""

    keeps_old = True

    def __init__(
        self,
        name: str,
        config: PostgresConfig,
        credentials: Credentials,
        secret: str,
        connections: Connections,
        live_value: Callable[[str], str | None],
    ) -> None:
        super().__init__(name, config, credentials, secret, connections)
        self.alternate = config.alternate_user or f"{config.user}_clone"
        self.logins = (config.user, self.alternate)
        self.grace = parse_duration(config.grace)
        self._live_value = live_value
        self._login_of: dict[str, str] = {}  # password -> the login known to accept it (this session)
        self._ensured = False  # ensure_alternate() ran in this session

    def describe(self) -> str:
        c = self.config
        return f"PostgreSQL role {c.user!r} (logins {c.user!r} / {self.alternate!r}) at {c.host}:{c.port}"

    # --- which login -----------------------------------------------------------------

    def _other(self, login: str) -> str:
        return self.logins[1] if login == self.logins[0] else self.logins[0]

    def in_use(self) -> str:
        """The login consumers use now: the stored login name (the main role before the first rotation)."""
        stored = self._live_value(self.config.username_secret)
        return stored if stored in self.logins else self.config.user

    def login_of(self, value: str) -> str | None:
        """The login that accepts `value` (asked of the server unless this session set it), or None."""
        known = self._login_of.get(value)
        if known is not None:
            return known
        first = self.in_use()
        for login in (first, self._other(first)):
            if self.accepts_as(login, value):
                self._login_of[value] = login
                return login
        return None

    def _set_login_password(self, login: str, value: str) -> None:
        self.set_password(value, login)
        for known in [v for v, owner in self._login_of.items() if owner == login]:
            del self._login_of[known]
        self._login_of[value] = login

    # --- the alternate login -----------------------------------------------------------

    def _server_version(self) -> int:
        return int(self._execute("SHOW server_version_num")[0][0])

    def ensure_alternate(self) -> None:
        """Create the alternate login if needed and (re)state what makes it act as `user`:
        membership with INHERIT (and SET, on PostgreSQL 16+) and `SET role = user`.
        Every statement is idempotent."""
        from psycopg import sql

        user, alternate = sql.Identifier(self.config.user), sql.Identifier(self.alternate)
        if not self._role_exists(self.alternate):
            self._execute(sql.SQL("CREATE ROLE {} LOGIN INHERIT").format(alternate))
        if self._server_version() >= 160000:
            self._execute(sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET TRUE").format(user, alternate))
        else:
            self._execute(sql.SQL("GRANT {} TO {}").format(user, alternate))
        self._execute(sql.SQL("ALTER ROLE {} LOGIN INHERIT").format(alternate))
        self._execute(sql.SQL("ALTER ROLE {} SET role = {}").format(alternate, sql.Literal(self.config.user)))
        self._copy_settings()
        self._ensured = True

    def _role_settings(self, role: str) -> dict[tuple[str, str], str]:
        """The role's own settings, (database or "", name) -> value, `role` left out."""
        rows = self._execute(
            "SELECT coalesce(d.datname, ''), unnest(s.setconfig) FROM pg_db_role_setting s "
            "JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE r.rolname = %s",
            (role,),
        )
        settings = {}
        for database, entry in rows:
            name, _, value = str(entry).partition("=")
            if name.lower() != "role":
                settings[(str(database), name)] = value
        return settings

    def _copy_settings(self) -> None:
        """The alternate login gets the main role's settings (`ALTER ROLE user [IN DATABASE d]
        SET search_path ...`): PostgreSQL applies those of the login, not of the role its
        sessions switch to, so without them a consumer moved to the clone would run with
        another search_path, timeout or the like.  Restated on every rotation."""
        from psycopg import sql

        from keyroll.targets.base import client_library

        psycopg = client_library("psycopg", "postgres")
        wanted, have = self._role_settings(self.config.user), self._role_settings(self.alternate)
        for (database, name), value in sorted(wanted.items()):
            if have.get((database, name)) == value:
                continue
            where = sql.SQL(" IN DATABASE {}").format(sql.Identifier(database)) if database else sql.SQL("")
            alter = sql.SQL("ALTER ROLE {}{} SET {}").format(
                sql.Identifier(self.alternate), where, sql.Identifier(name)
            )
            connection = self._admin_connection()
            try:
                # The value as the catalog spells it (a list such as search_path included), through the session.
                with connection.transaction():
                    connection.execute("SELECT set_config(%s, %s, true)", (name, value))
                    connection.execute(alter + sql.SQL(" FROM CURRENT"))
            except psycopg.OperationalError:
                self._execute("SELECT 1")  # the connection was lost: ServiceUnavailable (or a new one works)
                raise TargetError(f"{self.describe()}: connection lost while copying {name}") from None
            except psycopg.Error:
                try:  # a setting a session cannot change: the value as one literal
                    self._execute(alter + sql.SQL(" TO {}").format(sql.Literal(value)))
                except TargetError as exc:
                    raise self._by_hand(
                        exc,
                        f"give {self.alternate!r} the setting {name} of {self.config.user!r}",
                        f"ALTER ROLE {self.alternate} SET {name} ...",
                    ) from None
        for database, name in sorted(set(have) - set(wanted)):
            where = sql.SQL(" IN DATABASE {}").format(sql.Identifier(database)) if database else sql.SQL("")
            try:
                self._execute(
                    sql.SQL("ALTER ROLE {}{} RESET {}").format(
                        sql.Identifier(self.alternate), where, sql.Identifier(name)
                    )
                )
            except TargetError as exc:
                raise self._by_hand(
                    exc,
                    f"remove the setting {name} from {self.alternate!r} (gone from {self.config.user!r})",
                    f"ALTER ROLE {self.alternate} RESET {name}",
                ) from None

    def _by_hand(self, exc: TargetError, what: str, statement: str) -> TargetError:
        reason = str(exc).removeprefix(f"{self.describe()}: ")
        return TargetError(f"{self.describe()}: could not {what} ({reason}); do it as a superuser: {statement}")

    # --- the interface ---------------------------------------------------------------

    def check(self) -> None:
        """The role exists, the admin may create the alternate login, grant it membership
        in `user` and change both passwords; names what the admin lacks."""
        super().check()
        if self.credentials.user in self.logins:
            raise TargetError(f"{self.describe()}: the admin login must be neither of the two logins")
        rows = self._execute(
            "SELECT rolsuper, rolcreaterole, current_setting('server_version_num')::int, "
            "(SELECT rolsuper FROM pg_roles WHERE rolname = %s) FROM pg_roles WHERE rolname = current_user",
            (self.config.user,),
        )
        superuser, createrole, version, user_is_super = rows[0]
        if user_is_super:
            raise TargetError(f"{self.describe()}: {self.config.user!r} is a superuser; alternate a non-superuser role")
        if superuser:
            return
        lacks = [] if createrole else ["CREATEROLE"]
        if version >= 160000:
            for role in (r for r in self.logins if r == self.config.user or self._role_exists(r)):
                if not self._execute("SELECT pg_has_role(%s, 'MEMBER WITH ADMIN OPTION')", (role,))[0][0]:
                    lacks.append(
                        f"ADMIN OPTION on {role!r} (GRANT {role} TO {self.credentials.user} WITH ADMIN OPTION)"
                    )
        if lacks:
            raise TargetError(f"{self.describe()}: admin {self.credentials.user!r} lacks {' and '.join(lacks)}")

    def _role_exists(self, role: str) -> bool:
        return bool(self._execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)))

    def accepts(self, value: str) -> bool:
        return self.login_of(value) is not None

    def apply(self, new: str, old: str | None) -> None:
        """The new password goes on the login not in use; the one in use is left alone."""
        self.ensure_alternate()
        # The login in use is the one that accepts the current password (asked of the
        # server, not taken from the stored name), so consumers' login is never touched.
        current = (self.login_of(old) if old is not None else None) or self.in_use()
        self._set_login_password(self._other(current), new)

    def verify(self, new: str) -> None:
        login = self.login_of(new)
        if login is None:
            raise TargetError(f"{self.describe()}: a fresh login with the new value was refused")
        connection = self._connect(login, new)
        try:
            acting = connection.execute("SELECT current_user").fetchone()
        finally:
            connection.close()
        if not acting or acting[0] != self.config.user:
            raise TargetError(
                f"{self.describe()}: sessions of {login!r} act as {acting[0] if acting else None!r}, "
                f"not {self.config.user!r} (ALTER ROLE {login} SET role = {self.config.user})"
            )

    def rollback(self, old: str | None, new: str) -> None:
        """The login that took `new` is retired (the one holding `old` was never touched)."""
        login = self.login_of(new)
        if login is not None and (old is None or self._login_of.get(old) != login):
            self.retire(login)

    def retirement_token(self, old: str) -> str | None:
        return self.login_of(old)

    def retire(self, token: str) -> None:
        """Replace the login's password by a random value nobody keeps."""
        if token not in self.logins:
            return
        if token == self.alternate and not self._role_exists(token):
            return
        from keyroll.generate import generate

        self._set_login_password(token, generate(RETIRED_LENGTH))
        self._login_of = {v: owner for v, owner in self._login_of.items() if owner != token}

    def sessions_of(self, login: str) -> int:
        """How many sessions of `login` are open, keyroll's own left out (a [gitops]
        converge check: the fleet has moved to the other login once this is 0)."""
        rows = self._execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND application_name NOT LIKE %s",
            (login, APPLICATION_PREFIX + "%"),
        )
        return int(rows[0][0])

    def other_credentials(self, current: str) -> list[str]:
        login = self.login_of(current)
        return [self._other(login)] if login is not None else []

    def companion_values(self, value: str) -> dict[str, str]:
        login = self.login_of(value)
        if login == self.alternate and not self._ensured:
            # Adopting a password of an alternate login that existed before keyroll (or was changed by
            # hand): it must act as `user` before consumers are given it.
            self.ensure_alternate()
        return {self.config.username_secret: login or self.in_use()}
