"""What every target shares: the interface (`Target`), the usual implementation
(`BaseTarget`), login credentials and shared admin connections.  The target modules
import this, never the package, so that the package may import them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from keyroll.errors import ConfigError, TargetError
from keyroll.records import record

# Name of the application as services see it (PostgreSQL application_name, Redis
# CLIENT SETNAME): recovery waits until no other keyroll session is active.
APPLICATION_PREFIX = "keyroll-"


def read_credential_file(value: str, config_dir: Path | None, env: Mapping[str, str], key: str) -> str:
    """The credential in the file the option `key` names (`value`, resolved like any
    configured path; one final newline dropped); ConfigError naming `key` when it
    cannot be read.  The value is held (keyroll.outputs.hold): a program that
    echoes it does not get it shown."""
    from keyroll.outputs import hold
    from keyroll.paths import resolve_config_path

    path = resolve_config_path(value, config_dir, key=key, env=env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        from keyroll.fsutil import describe_os_error

        raise ConfigError(f"{key}: {describe_os_error(path, exc)}") from None
    text = text[:-1] if text.endswith("\n") else text
    hold(text)
    return text


class Connections:
    """Admin connections shared by the targets of one session: one per server and
    login, however many roles or users are rotated there (a server's connection
    limit is easily smaller than the number of secrets)."""

    def __init__(self) -> None:
        self._open: dict[tuple[object, ...], tuple[Any, Callable[[Any], None]]] = {}

    def get(self, key: tuple[object, ...]) -> Any:
        entry = self._open.get(key)
        return entry[0] if entry else None

    def put(self, key: tuple[object, ...], connection: Any, close: Callable[[Any], None]) -> Any:
        self.discard(key)
        self._open[key] = (connection, close)
        return connection

    def discard(self, key: tuple[object, ...]) -> None:
        entry = self._open.pop(key, None)
        if entry is not None:
            with contextlib.suppress(Exception):
                entry[1](entry[0])

    def close(self) -> None:
        for key in list(self._open):
            self.discard(key)


class LoginRefused(TargetError):
    """The service answered, and refused the login."""


def client_library(module: str, extra: str) -> Any:
    """Import a service's client library (only when a target first connects), or
    say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise TargetError(f"this target needs the Python package {module}: pip install 'keyroll[{extra}]'") from None


class BaseTarget:
    """What most targets share: one valid password per account, changed by
    `set_password` and checked by a fresh login (`accepts`); nothing to retire and
    nothing to wait for.  Targets override what their service does differently."""

    keeps_old = False
    grace = timedelta(0)

    def __init__(
        self, name: str, credentials: Credentials, secret: str, connections: Connections | None = None
    ) -> None:
        self.name = name
        self.credentials = credentials
        self.secret = secret
        # The account changes its own password: keyroll logs in with the current value.
        self.needs_old = credentials.own
        self._connections = connections or Connections()

    def describe(self) -> str:
        raise NotImplementedError

    def accepts(self, value: str) -> bool:
        raise NotImplementedError

    def set_password(self, value: str) -> None:
        raise NotImplementedError

    def apply(self, new: str, old: str | None) -> None:
        self.set_password(new)

    def verify(self, new: str) -> None:
        if not self.accepts(new):
            raise TargetError(f"{self.describe()}: a fresh login with the new value was refused")

    def rollback(self, old: str | None, new: str) -> None:
        if old is None:
            raise TargetError(f"{self.describe()}: there is no previous value to go back to")
        self.set_password(old)

    def retirement_token(self, old: str) -> str | None:
        return None

    def retire(self, token: str) -> None:
        return None

    def other_credentials(self, current: str) -> list[str]:
        return []

    def companion_values(self, value: str) -> dict[str, str]:
        return {}

    def wait_idle(self, timeout: float) -> None:
        return None

    def close(self) -> None:
        return None


class Target(Protocol):
    """One account on one live service."""

    name: str
    # Whether the old credential stays valid after `apply`, until `retire`.
    keeps_old: bool
    grace: timedelta

    # Whether `apply` must log in with the old value (the account changes its own password).
    needs_old: bool

    def describe(self) -> str:
        """One line for plans and messages (never a value)."""

    def check(self) -> None:
        """Reach the service and make sure the change is allowed.
        ServiceUnavailable if it is down, TargetError for wrong credentials or rights."""

    def accepts(self, value: str) -> bool:
        """Whether a fresh login with `value` succeeds now (ServiceUnavailable if down)."""

    def apply(self, new: str, old: str | None) -> None:
        """Make `new` valid (and `old` too, where the service allows it)."""

    def verify(self, new: str) -> None:
        """Log in with `new` as a consumer would; TargetError if refused."""

    def rollback(self, old: str | None, new: str) -> None:
        """Make `old` the valid credential again and `new` invalid."""

    def retirement_token(self, old: str) -> str | None:
        """What to remember (a hash, never the value) to retire `old` later; None if nothing to do."""

    def retire(self, token: str) -> None:
        """Remove the old credential identified by `token`."""

    def other_credentials(self, current: str) -> list[str]:
        """Retirement tokens of every credential the account holds besides `current`
        (one set before keyroll, or still in an earlier rotation's grace period)."""

    def companion_values(self, value: str) -> dict[str, str]:
        """Other secrets to store in the same write as `value` (secret name -> value):
        the login name an alternating target uses with that password.  Empty for most."""

    def wait_idle(self, timeout: float) -> None:
        """Wait until no other keyroll session is still active on the service."""

    def close(self) -> None:
        """Release connections."""


@record(frozen=True)
class Credentials:
    """How a target logs in to make a change: as `user` with `password()`, the
    value the service accepts for that login right now (None: no password).
    `own` is True when the account changes its own password (no admin)."""

    user: str
    password: Callable[[], str | None]
    source: str  # for messages: "secret pg_admin", "file /run/...", "its own current value"
    own: bool = False

    def refused(self) -> str:
        """Why a refused login matters, for the error message."""
        if self.own:
            return "the service does not accept the stored value"
        return f"wrong admin credentials ({self.source})"
