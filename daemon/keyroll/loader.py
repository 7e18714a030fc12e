"""Read keyroll-managed secrets from a service, and build connection URLs from them.

This module is for the *services* that use the secrets keyroll rotates. It imports
nothing from the rest of keyroll, never reads keyroll's configuration, and uses only
the standard library (``urllib.parse`` is imported lazily by the URL builders), so it
costs well under a millisecond to import.

Where :func:`load_secret` looks, first hit wins:

1. ``$CREDENTIALS_DIRECTORY/<name>`` (systemd ``LoadCredential=``/``LoadCredentialEncrypted=``);
2. ``<directory>/<name>`` when ``directory`` is given, else ``$KEYROLL_SECRETS_DIR/<name>``;
3. each folder of :data:`DEFAULT_DIRECTORIES` (``/run/secrets``, where sops-nix renders);
4. the environment variable ``fallback_env_var``, when given.

Only a place where the secret is *absent* falls through to the next one. A file that
exists but cannot be read, is not a regular file, is a dangling symlink, is not UTF-8
or holds an empty value is an error naming that path: falling through would quietly
hand the service a stale value from a later place.
"""

from __future__ import annotations

import os
import stat

__all__ = [
    "DEFAULT_DIRECTORIES",
    "InvalidSecretName",
    "SecretEmpty",
    "SecretError",
    "SecretNotFound",
    "SecretUnreadable",
    "build_postgres_url",
    "build_redis_url",
    "load_secret",
]

#: Folders searched after ``$CREDENTIALS_DIRECTORY`` and ``directory``/``$KEYROLL_SECRETS_DIR``.
#: Read at call time, so tests (and unusual hosts) may replace it.
DEFAULT_DIRECTORIES: tuple[str, ...] = ("/run/secrets",)

# Same rule as keyroll's configuration (contract): letters, digits, "_" and "-",
# not starting with "-", at most 128 characters. Checked without `re` to keep imports light.
_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_NAME_REST = _NAME_FIRST | {"-"}
_NAME_MAX = 128

_HOST_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+-.")


class SecretError(Exception):
    """Base of every error raised here; messages are one line and never hold a secret value."""


class InvalidSecretName(SecretError, ValueError):
    """The name could escape its folder or is not a keyroll secret name."""


class SecretNotFound(SecretError, LookupError):
    """No place had the secret; ``places`` lists every place that was looked at, in order."""

    def __init__(self, name: str, places: tuple[str, ...]) -> None:
        super().__init__(f"secret {name!r} not found; looked in: {', '.join(places)}")
        self.name = name
        self.places = places

    def __reduce__(self) -> tuple[type[SecretNotFound], tuple[str, tuple[str, ...]]]:
        return (type(self), (self.name, self.places))


class SecretUnreadable(SecretError):
    """The secret exists at ``path`` but cannot be used (permission, not a regular file, not UTF-8, ...)."""

    def __init__(self, name: str, path: str, reason: str) -> None:
        super().__init__(f"secret {name!r} at {path} cannot be read: {reason}")
        self.name = name
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[SecretUnreadable], tuple[str, str, str]]:
        return (type(self), (self.name, self.path, self.reason))


class SecretEmpty(SecretError):
    """The secret exists at ``path`` (a file, or ``$VAR`` for an environment variable) but is empty."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(f"secret {name!r} at {path} is empty")
        self.name = name
        self.path = path

    def __reduce__(self) -> tuple[type[SecretEmpty], tuple[str, str]]:
        return (type(self), (self.name, self.path))


def _check_name(name: str) -> None:
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= _NAME_MAX
        or name[0] not in _NAME_FIRST
        or not _NAME_REST.issuperset(name)
    ):
        raise InvalidSecretName(
            f"{name!r} is not a secret name: use letters, digits, '_' and '-' "
            f"(no '/', '..' or leading dot or dash; at most {_NAME_MAX})"
        )


def _strip_newline(value: str) -> str:
    if value.endswith("\r\n"):
        return value[:-2]
    if value.endswith("\n"):
        return value[:-1]
    return value


def _read_file(name: str, path: str) -> str | None:
    """Return the value at `path`, or None when nothing is there (absent, or its folder is)."""
    try:
        # O_NONBLOCK: a FIFO planted here must not hang the service; no effect on regular files.
        # Symlinks are followed on purpose: sops-nix's /run/secrets/<name> links into /run/secrets.d/<n>/.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            raise SecretUnreadable(name, path, f"dangling symlink to {os.readlink(path)}") from None
        return None
    except OSError as exc:
        raise SecretUnreadable(name, path, exc.strerror or type(exc).__name__) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SecretUnreadable(name, path, "not a regular file")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError as exc:
        raise SecretUnreadable(name, path, exc.strerror or type(exc).__name__) from exc
    finally:
        os.close(fd)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        # `from None`: the decode error carries the raw bytes, i.e. the secret.
        raise SecretUnreadable(name, path, "not valid UTF-8") from None
    value = _strip_newline(text)
    if not value:
        raise SecretEmpty(name, path)
    return value


def _folders(directory: str | os.PathLike[str] | None) -> list[tuple[str, str]]:
    """(label for the error message, folder) in lookup order; an unset variable gets folder ""."""
    folders = [("$CREDENTIALS_DIRECTORY", os.environ.get("CREDENTIALS_DIRECTORY", ""))]
    if directory is not None:
        folders.append(("", os.fspath(directory)))
    else:
        folders.append(("$KEYROLL_SECRETS_DIR", os.environ.get("KEYROLL_SECRETS_DIR", "")))
    folders.extend(("", folder) for folder in DEFAULT_DIRECTORIES)
    return folders


def load_secret(
    name: str,
    fallback_env_var: str | None = None,
    directory: str | os.PathLike[str] | None = None,
) -> str:
    """Return the value of secret `name`, without its one optional trailing newline.

    Looks in ``$CREDENTIALS_DIRECTORY``, then `directory` (or ``$KEYROLL_SECRETS_DIR``
    when `directory` is None), then :data:`DEFAULT_DIRECTORIES`, then the environment
    variable `fallback_env_var`; the first place that has the secret wins.

    Raises :class:`InvalidSecretName` for a name that is not a keyroll secret name,
    :class:`SecretNotFound` (listing every place) when no place has it,
    :class:`SecretUnreadable` when it exists but cannot be read, and
    :class:`SecretEmpty` when its value is empty. No message holds the value.
    """
    _check_name(name)
    if fallback_env_var is not None and (not fallback_env_var or "=" in fallback_env_var or "\0" in fallback_env_var):
        raise ValueError(f"{fallback_env_var!r} is not an environment variable name")

    places: list[str] = []
    seen: set[str] = set()
    for label, folder in _folders(directory):
        if not folder:
            places.append(f"{label} (unset)")
            continue
        path = os.path.join(folder, name)
        if path in seen:
            continue
        seen.add(path)
        places.append(path)
        value = _read_file(name, path)
        if value is not None:
            return value

    if fallback_env_var is not None:
        env_value = os.environ.get(fallback_env_var)
        if env_value is not None:
            env_value = _strip_newline(env_value)
            if not env_value:
                raise SecretEmpty(name, f"${fallback_env_var}")
            return env_value
        places.append(f"${fallback_env_var} (unset)")
    raise SecretNotFound(name, tuple(places))


# ---------------------------------------------------------------------------- URLs


def _quote(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


def _netloc_host(host: str) -> str:
    """`host` ready for a URL netloc: IPv6 in brackets (zone "%" escaped), names checked."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        address, _, zone = host.partition("%")
        if not _IPV6_CHARS.issuperset(address) or (zone and not _HOST_CHARS.issuperset(zone)):
            raise ValueError(f"{host!r} is not an IPv6 address")
        return f"[{address}%25{zone}]" if zone else f"[{address}]"
    if not host or not _HOST_CHARS.issuperset(host):
        raise ValueError(f"{host!r} is not a host name or address (letters, digits, '.', '-', '_')")
    return host


def _port(port: int | None) -> str:
    if port is None:
        return ""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port {port!r} is not between 1 and 65535")
    return f":{port}"


def _check_scheme(scheme: str) -> None:
    if not scheme or not scheme[0].isascii() or not scheme[0].isalpha() or not _SCHEME_CHARS.issuperset(scheme):
        raise ValueError(f"{scheme!r} is not a URL scheme")


def _userinfo(user: str | None, password: str | None) -> str:
    if user is None and password is None:
        return ""
    info = _quote(user or "")
    if password is not None:
        info += ":" + _quote(password)
    return info + "@"


def build_postgres_url(
    *,
    password: str,
    user: str,
    host: str = "localhost",
    port: int | None = 5432,
    database: str | None = None,
    scheme: str = "postgresql",
    **query: str | int | None,
) -> str:
    """Return a libpq connection URI in which every part survives special characters.

    `user`, `password` and `database` are percent-encoded (``@:/?#%+`` and spaces
    included); an IPv6 `host` is bracketed; a `host` starting with ``/`` is a unix-socket
    folder and goes into the ``host`` query parameter (libpq's convention, a path cannot
    sit in the netloc). `database` None leaves it to libpq (the user name). Other keyword
    arguments become query parameters (``sslmode="require"``); None values are left out.
    `scheme` may be e.g. ``"postgresql+psycopg"`` for SQLAlchemy.
    """
    from urllib.parse import quote, urlencode

    _check_scheme(scheme)
    params = {key: str(value) for key, value in query.items() if value is not None}
    if host.startswith("/"):
        netloc_host = ""
        params = {"host": host, **params}
    else:
        netloc_host = _netloc_host(host)
    url = f"{scheme}://{_userinfo(user, password)}{netloc_host}{_port(port)}/"
    if database is not None:
        url += _quote(database)
    if params:
        # quote (not quote_plus): libpq does not read "+" as a space. "/" stays readable in a socket path.
        url += "?" + urlencode(params, safe="/", quote_via=quote)
    return url


def build_redis_url(
    *,
    password: str | None,
    user: str | None = None,
    host: str = "localhost",
    port: int | None = 6379,
    db: int = 0,
    tls: bool = False,
) -> str:
    """Return a Redis URL (``redis://``, ``rediss://`` with `tls`) for redis-py and most clients.

    `user` (a Redis 6 ACL user; None means the default user) and `password` (None for no
    AUTH) are percent-encoded; an IPv6 `host` is bracketed. A `host` starting with ``/`` is
    a unix socket path and gives a ``unix://`` URL (no `port`, no `tls`, `db` as a query parameter).
    """
    if isinstance(db, bool) or not isinstance(db, int) or db < 0:
        raise ValueError(f"db {db!r} is not a database number (0 or more)")
    userinfo = _userinfo(user, password)
    if host.startswith("/"):
        if tls:
            raise ValueError("tls does not apply to a unix socket")
        from urllib.parse import quote

        return f"unix://{userinfo}{quote(host, safe='/')}?db={db}"
    scheme = "rediss" if tls else "redis"
    return f"{scheme}://{userinfo}{_netloc_host(host)}{_port(port)}/{db}"
