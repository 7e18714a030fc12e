"""The requests of an `http` target (`apply`, `verify`, `rollback`): one inline
table each, validated here (errors name the key path), and the placeholders
`{value}`, `{old}` and `{secret:NAME}` they may hold.

Placeholders are allowed in JSON and form values, `auth` and header values only:
never in `base_url`, `path` or a query string (values never travel in URLs,
which servers and proxies log).  A JSON body is filled as data (each string of
the parsed table), never by substituting into text, so any value is sent exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from keyroll.errors import ConfigError
from keyroll.httpclient import UNSENDABLE, UNSENDABLE_URL
from keyroll.records import field, record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from typing import Any

PLACEHOLDER = re.compile(r"\{(value|old|secret:([A-Za-z0-9_][A-Za-z0-9_-]{0,127}))\}")
# Anything a user may have meant as a placeholder: `{word}` or `{word:...}`.
LOOKS_LIKE_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_-]*(:[^{}]*)?\}")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
AUTH_FORMS = ("basic", "basic-file", "bearer", "bearer-file", "header")
KEYS = ("method", "path", "json", "form", "auth", "headers", "expect")
DEFAULT_EXPECT = (200, 201, 204)
HEADER_NAME = re.compile(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")


@record(frozen=True)
class HttpRequest:
    """One request of an `http` target, as configured (placeholders unfilled)."""

    method: str
    path: str
    json: Any = None  # the body's data (tables, lists, strings, numbers); None: no JSON body
    form: dict[str, str] = field(default_factory=dict)  # a form body (application/x-www-form-urlencoded)
    auth: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    expect: tuple[int, ...] = DEFAULT_EXPECT

    def strings(self) -> list[str]:
        """Every string that may hold a placeholder."""
        found = [self.auth, *self.form.values(), *self.headers.values()]
        _collect(self.json, found)
        return found

    def uses(self, name: str) -> bool:
        """Whether a placeholder `{name}` appears (name: value, old, secret:NAME)."""
        return any(m.group(1) == name for text in self.strings() for m in PLACEHOLDER.finditer(text))

    def secret_refs(self) -> set[str]:
        """The secrets named by `{secret:NAME}` placeholders."""
        return {m.group(2) for text in self.strings() for m in PLACEHOLDER.finditer(text) if m.group(2)}


def _collect(data: Any, found: list[str]) -> None:
    if isinstance(data, str):
        found.append(data)
    elif isinstance(data, dict):
        for item in data.values():
            _collect(item, found)
    elif isinstance(data, list):
        for item in data:
            _collect(item, found)


def fill(text: str, lookup: Callable[[str], str]) -> str:
    """`text` with each placeholder replaced by `lookup(placeholder)` (value, old, secret:NAME)."""
    return PLACEHOLDER.sub(lambda m: lookup(m.group(1)), text)


def fill_data(data: Any, lookup: Callable[[str], str]) -> Any:
    """A copy of JSON data with every string filled (keys are left as written)."""
    if isinstance(data, str):
        return fill(data, lookup)
    if isinstance(data, dict):
        return {key: fill_data(item, lookup) for key, item in data.items()}
    if isinstance(data, list):
        return [fill_data(item, lookup) for item in data]
    return data


def url_problem(text: str) -> str | None:
    """Why `text` (a base URL, path or query) cannot be sent as written, if it cannot:
    a placeholder, a space or a control character."""
    if PLACEHOLDER.search(text) or LOOKS_LIKE_PLACEHOLDER.search(text):
        return (
            "placeholders ({value}, {old}, {secret:NAME}) are not allowed in a URL, path or query string: "
            "values never travel in URLs (put them in json, form, auth or headers)"
        )
    if UNSENDABLE.search(text):
        return UNSENDABLE_URL
    return None


def _placeholders_problem(text: str, phase: str) -> str | None:
    for match in LOOKS_LIKE_PLACEHOLDER.finditer(text):
        if not PLACEHOLDER.fullmatch(match.group(0)):
            return f"unknown placeholder {match.group(0)} (use {{value}}, {{old}} or {{secret:NAME}})"
    if phase == "verify" and "{old}" in text:
        return "{old} has no meaning in verify (it checks one value: {value})"
    return None


def auth_parts(auth: str) -> tuple[str, str, str]:
    """(form, first, second) of an `auth` string: basic USER PASSWORD, basic-file USER
    FILE, bearer TOKEN '', bearer-file FILE '', header NAME VALUE; ValueError if malformed."""
    form, sep, rest = auth.partition(":")
    if not sep or form not in AUTH_FORMS:
        raise ValueError(
            "use basic:USER:PASSWORD, basic-file:USER:FILE, bearer:TOKEN, bearer-file:FILE or header:NAME:VALUE"
        )
    if form in ("bearer", "bearer-file"):
        if not rest:
            raise ValueError(f"{form}: needs {'a token' if form == 'bearer' else 'a file'}")
        return form, rest, ""
    first, sep, second = rest.partition(":")
    if not sep or not first:
        what = {"basic": "USER:PASSWORD", "basic-file": "USER:FILE", "header": "NAME:VALUE"}[form]
        raise ValueError(f"{form}: needs {what}")
    if form == "basic-file" and not second:
        raise ValueError("basic-file: needs a FILE after the user")
    if form == "header" and not HEADER_NAME.match(first):
        # (not quoted: what stands there may be a token written without its header name)
        raise ValueError("header: what comes before the second ':' is not a header name (a token without spaces)")
    return form, first, second


def _check_auth(auth: str, keypath: str, phase: str) -> None:
    try:
        form, first, second = auth_parts(auth)
    except ValueError as exc:
        raise ConfigError(f"{keypath}: {exc}") from None
    fixed = {"basic-file": second, "bearer-file": first, "header": first}.get(form, "")
    if fixed and (PLACEHOLDER.search(fixed) or LOOKS_LIKE_PLACEHOLDER.search(fixed)):
        raise ConfigError(f"{keypath}: a placeholder is not allowed in a file name or header name")
    if problem := _placeholders_problem(auth, phase):
        raise ConfigError(f"{keypath}: {problem}")


def _check_json(data: Any, keypath: str, phase: str) -> None:
    if isinstance(data, str):
        if problem := _placeholders_problem(data, phase):
            raise ConfigError(f"{keypath}: {problem}")
    elif isinstance(data, dict):
        for key, item in data.items():
            _check_json(item, f"{keypath}.{key}", phase)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _check_json(item, f"{keypath}[{index}]", phase)
    elif not isinstance(data, (bool, int, float)):
        raise ConfigError(f"{keypath}: a {type(data).__name__} cannot be sent in JSON (quote it as a string)")


def _string_table(data: Any, keypath: str, phase: str, *, headers: bool = False) -> dict[str, str]:
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f'{keypath}: expected a table of strings, e.g. {{ name = "{{value}}" }}')
    for key, item in data.items():
        if headers and not HEADER_NAME.match(key):
            raise ConfigError(f"{keypath}.{key}: not a header name")
        if problem := _placeholders_problem(item, phase):
            raise ConfigError(f"{keypath}.{key}: {problem}")
    return dict(data)


def parse_request(data: Any, keypath: str) -> HttpRequest:
    """Validate one phase's table (`targets.NAME.apply` ...); ConfigError naming the key."""
    phase = keypath.rsplit(".", 1)[-1]
    if not isinstance(data, dict):
        raise ConfigError(
            f'{keypath}: expected a table, e.g. {{ method = "PUT", path = "/api/...", json = {{ password = "{{value}}" }} }}'
        )
    for key in data:
        if key not in KEYS:
            raise ConfigError(f"{keypath}.{key}: unknown key; use {', '.join(KEYS)}")
    method = data.get("method")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ConfigError(
            f"{keypath}.method: {'required' if method is None else 'must be'} one of {', '.join(METHODS)}"
        )
    path = data.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"{keypath}.path: required, a path starting with / (after base_url)")
    if problem := url_problem(path):
        raise ConfigError(f"{keypath}.path: {problem}")
    if "json" in data and "form" in data:
        raise ConfigError(f"{keypath}: set json or form, not both")
    body = data.get("json")
    if body is not None:
        _check_json(body, f"{keypath}.json", phase)
    form = _string_table(data["form"], f"{keypath}.form", phase) if "form" in data else {}
    headers = _string_table(data["headers"], f"{keypath}.headers", phase, headers=True) if "headers" in data else {}
    auth = data.get("auth", "")
    if not isinstance(auth, str):
        raise ConfigError(f"{keypath}.auth: expected a string such as basic:USER:PASSWORD")
    if auth:
        _check_auth(auth, f"{keypath}.auth", phase)
    expect = data.get("expect", list(DEFAULT_EXPECT))
    if (
        not isinstance(expect, list)
        or not expect
        or not all(isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in expect)
    ):
        raise ConfigError(f"{keypath}.expect: expected a list of HTTP status codes, e.g. [200, 204]")
    if any(c in (401, 403) for c in expect):
        raise ConfigError(f"{keypath}.expect: 401 and 403 always mean the credentials were refused")
    return HttpRequest(method.upper(), path, body, form, auth, headers, tuple(expect))


def secret_refs(target: object) -> set[str]:
    """The secrets an (http) target's requests name with `{secret:NAME}`; empty for other targets."""
    names: set[str] = set()
    for phase in ("apply", "verify", "rollback"):
        request = getattr(target, phase, None)
        if isinstance(request, HttpRequest):
            names |= request.secret_refs()
    return names


def shown_target(document: Mapping[str, Any]) -> dict[str, Any]:
    """An http target's table as `config show` prints it: no empty requests, bodies or
    headers (TOML has no null; an empty `form` beside `json` would not load again),
    `auth` and header values masked unless they are placeholders."""
    out: dict[str, Any] = {}
    for key, item in document.items():
        if item is None:
            continue
        if key in ("apply", "verify", "rollback") and isinstance(item, dict):
            item = _shown_request({k: v for k, v in item.items() if v is not None})
        out[key] = item
    return out


def _shown_request(request: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in request.items() if not (k in ("form", "headers") and not v)}  # (empty: not set)
    if out.get("auth"):
        out["auth"] = _shown_auth(str(out["auth"]))
    if out.get("headers"):
        out["headers"] = {k: _masked(v) for k, v in out["headers"].items()}
    return out


def _masked(text: str) -> str:
    """A literal that may be a credential as `***`; placeholders as they are."""
    return text if PLACEHOLDER.fullmatch(text) else "***"


def _shown_auth(auth: str) -> str:
    """`auth` with its literal password, token or header value masked (users, file
    names and header names are no secret)."""
    try:
        form, first, second = auth_parts(auth)
    except ValueError:
        return "***"
    if form in ("basic", "header"):
        return f"{form}:{first}:{_masked(second)}"
    if form == "bearer":
        return f"bearer:{_masked(first)}"
    return auth  # basic-file, bearer-file: a user and a file name
