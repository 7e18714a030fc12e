"""Text helpers: what output, logs, notices and the effective configuration may show of
a spec or URL that can carry a credential (never the credential itself), and lists of
names short enough for one line."""

from __future__ import annotations


def shown(spec: str) -> str:
    """A restart or health spec as output, logs and notices may show it: an http(s)
    URL without its user:password@ and its query (where tokens go)."""
    scheme, sep, rest = spec.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return spec
    rest, query, _ = rest.partition("?")
    rest = rest.split("#", 1)[0]
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{slash}{path}{'?***' if query else ''}"


# Schemes whose authority is a real host; for the others (tgram://TOKEN/..., pover://USER@TOKEN,
# pbul://TOKEN, ...) it is a credential and is never shown.
_HOST_SCHEMES = {
    "mailto",
    "mailtos",
    "json",
    "jsons",
    "xml",
    "xmls",
    "form",
    "forms",
    "ntfy",
    "ntfys",
    "matrix",
    "matrixs",
}


def shown_names(names: list[str], most: int = 5) -> str:
    """`a, b, c` for one line of output: the first `most` names, then how many more."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def redact(url: str, index: int) -> str:
    """A URL as logs and messages may show it: scheme://host for schemes whose
    authority is a host, else the scheme, its place in the list and a short hash."""
    from keyroll.digest import sha256

    scheme, _, rest = url.partition("://")
    if scheme.lower() in _HOST_SCHEMES and rest:
        authority = rest.split("?", 1)[0].split("#", 1)[0].split("/", 1)[0]
        return f"{scheme}://{authority.rsplit('@', 1)[-1]}"
    digest = sha256(url.encode()).hexdigest()[:6]
    return f"{scheme or '?'} URL #{index} ({digest})"
