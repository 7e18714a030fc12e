"""Redis: an ACL user gets the new password beside the old one (by its SHA-256,
`#hash`, so the plaintext never reaches the server), consumers keep working until
they are restarted and healthy, and the old one is removed (`!hash`) after the
grace period.  `ACL SAVE` persists the change when Redis runs with an ACL file.

The `requirepass` mode (a bare default user, no ACL file) uses CONFIG SET
requirepass: the old password stops working at once (not zero-downtime), and
the running server is changed only: keyroll never runs CONFIG REWRITE (it would
write the plaintext into redis.conf), so redis.conf must read the password from
the secret file for the change to survive a Redis restart.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from keyroll.digest import sha256
from keyroll.errors import ServiceUnavailable, TargetError
from keyroll.schedule import parse_duration
from keyroll.targets.base import BaseTarget, Connections, Credentials, LoginRefused, client_library

if TYPE_CHECKING:
    from keyroll.config.schema import RedisTarget as RedisConfig

_AUTH_WORDS = ("WRONGPASS", "NOAUTH", "invalid username-password", "HELLO must be called", "invalid password")


def _no_retry() -> Any:
    """redis-py's policy for no retries (its default retries, with back-off)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def password_hash(value: str) -> str:
    """The SHA-256 hex digest Redis ACLs store and accept as `#hash` / `!hash`."""
    return sha256(value.encode("utf-8")).hexdigest()


class RedisTarget(BaseTarget):
    """An ACL user's password (or the server's requirepass) on one Redis server.
    A Redis command is atomic: a killed client's change is done or not done, so
    there is no other session to wait for."""

    def __init__(
        self, name: str, config: RedisConfig, credentials: Credentials, secret: str, connections: Connections
    ) -> None:
        super().__init__(name, credentials, secret, connections)
        self.config = config
        self.acl = config.mode == "acl"
        self.keeps_old = self.acl
        self.grace = parse_duration(config.grace) if self.acl else timedelta(0)
        self._timeout = parse_duration(config.connect_timeout).total_seconds() or 5.0
        self._admin_key = ("redis", config.host, config.port, credentials.user if self.acl else "default")

    def describe(self) -> str:
        c = self.config
        if not self.acl:
            return f"Redis requirepass at {c.host}:{c.port}"
        return f"Redis ACL user {c.user!r} at {c.host}:{c.port}"

    # --- connections ------------------------------------------------------------------

    def _client(self, user: str | None, password: str | None) -> Any:
        redis = client_library("redis", "redis")
        client = redis.Redis(
            host=self.config.host,
            port=self.config.port,
            username=user if self.acl else None,
            password=password,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            client_name=None,
            retry=_no_retry(),  # one refused login is one attempt (not ~11 in 4 s, flooding the ACL log)
        )
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            client.close()
            raise LoginRefused(f"{self.describe()}: login refused ({exc})") from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            client.close()
            raise ServiceUnavailable(f"{self.describe()}: unreachable ({exc or type(exc).__name__})") from None
        except redis.ResponseError as exc:
            client.close()
            if any(word in str(exc) for word in _AUTH_WORDS):
                raise LoginRefused(f"{self.describe()}: login refused ({exc})") from None
            raise TargetError(f"{self.describe()}: {exc}") from None
        return client

    def _admin_client(self) -> Any:
        client = self._connections.get(self._admin_key)
        if client is None:
            try:
                client = self._client(self.credentials.user, self.credentials.password())
            except LoginRefused as exc:
                raise TargetError(f"{exc}: {self.credentials.refused()}") from None
            self._connections.put(self._admin_key, client, lambda c: c.close())
        return client

    def _command(self, *args: str) -> Any:
        redis = client_library("redis", "redis")
        for attempt in (1, 2):
            try:
                return self._admin_client().execute_command(*args)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # Redis may drop connections of a user whose ACL changed: log in again once.
                self.close()
                if attempt == 2:
                    raise ServiceUnavailable(f"{self.describe()}: connection lost ({exc})") from None
            except redis.ResponseError as exc:
                # Never echo the command: its arguments may carry a hash of a secret.
                raise TargetError(
                    f"{self.describe()}: {args[0]} {args[1] if len(args) > 1 else ''} failed: {exc}"
                ) from None
        raise AssertionError("unreachable")

    def _save_acl(self) -> None:
        """ACL SAVE when the server has an ACL file, so a restart keeps the change."""
        reply = self._command("CONFIG", "GET", "aclfile")
        # redis-py turns the reply into a dict; a raw client gives [name, value].
        path = next(iter(reply.values()), "") if isinstance(reply, dict) else reply[1] if len(reply or ()) > 1 else ""
        if path:
            self._command("ACL", "SAVE")

    # --- the interface ----------------------------------------------------------------

    def check(self) -> None:
        if self.acl and self._command("ACL", "GETUSER", self.config.user) is None:
            raise TargetError(f"{self.describe()}: the ACL user does not exist")

    def accepts(self, value: str) -> bool:
        try:
            self._client(self.config.user, value).close()
        except LoginRefused:
            return False
        return True

    def apply(self, new: str, old: str | None) -> None:
        if not self.acl:
            return super().apply(new, old)
        self._command("ACL", "SETUSER", self.config.user, "on", f"#{password_hash(new)}")
        self._save_acl()

    def set_password(self, value: str) -> None:
        """requirepass mode: the default user's only password (the old one stops working)."""
        self._command("CONFIG", "SET", "requirepass", value)
        if self.credentials.own:
            # The admin client is logged in as that user: it must use the new password from now on.
            self._connections.put(self._admin_key, self._client(None, value), lambda c: c.close())

    def rollback(self, old: str | None, new: str) -> None:
        if not self.acl:
            return super().rollback(old, new)
        rules = [f"!{password_hash(new)}"] if old != new else []
        if old is not None:
            rules.insert(0, f"#{password_hash(old)}")
        self._remove_tolerantly(rules)
        self._save_acl()

    def _remove_tolerantly(self, rules: list[str]) -> None:
        """Apply ACL rules one by one; removing a password that is already gone is fine."""
        for rule in rules:
            try:
                self._command("ACL", "SETUSER", self.config.user, rule)
            except TargetError as exc:
                if not rule.startswith("!") or "does not exist" not in str(exc):
                    raise

    def retirement_token(self, old: str) -> str | None:
        return password_hash(old) if self.acl else None

    def retire(self, token: str) -> None:
        self._remove_tolerantly([f"!{token}"])
        self._save_acl()

    def other_credentials(self, current: str) -> list[str]:
        if not self.acl:
            return []
        reply = self._command("ACL", "GETUSER", self.config.user)
        if isinstance(reply, list):  # a raw reply: [field, value, field, value, ...]
            reply = dict(zip(reply[::2], reply[1::2], strict=False))
        passwords = (reply or {}).get("passwords") or (reply or {}).get(b"passwords") or []
        keep = password_hash(current)
        hashes = (p.decode() if isinstance(p, bytes) else str(p) for p in passwords)
        return sorted(h for h in hashes if h != keep)

    def close(self) -> None:
        self._connections.discard(self._admin_key)
