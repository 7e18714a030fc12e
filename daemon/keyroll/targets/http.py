"""A service with an HTTP API: `apply`, `verify` and (optionally) `rollback` are one
request each, declared in the config (keyroll.config.httpspec).

Values travel only in a JSON or form body, `auth` and header values, never in a
URL; a JSON body is built as data.  Answers: a status in `expect` is success;
401/403 mean the credentials were refused (exit 1); a 5xx or no answer means
the service is unavailable (exit 75); anything else is a failure naming the
status.  Redirects are never followed (keyroll.httpclient).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from keyroll.config.httpspec import HttpRequest, auth_parts, fill, fill_data
from keyroll.errors import KeyrollError, ServiceUnavailable, TargetError
from keyroll.httpclient import HttpUnreachable, basic_authorization, request
from keyroll.schedule import parse_duration
from keyroll.targets.base import BaseTarget, Credentials, LoginRefused, read_credential_file
from keyroll.text import shown

if TYPE_CHECKING:
    from keyroll.config.schema import HttpTarget as HttpConfig


class HttpTarget(BaseTarget):
    """Sends the configured request for each phase; `accepts` is the `verify` request."""

    def __init__(
        self,
        name: str,
        config: HttpConfig,
        credentials: Credentials,
        secret: str,
        live_value: Callable[[str], str | None],
        env: Mapping[str, str],
        config_dir: Path | None,
    ) -> None:
        super().__init__(name, credentials, secret)
        assert config.apply is not None and config.verify is not None  # (required by the schema)
        self.config = config
        self.apply_request: HttpRequest = config.apply
        self.verify_request: HttpRequest = config.verify
        self.live_value = live_value
        self.env = env
        self.config_dir = config_dir
        self.timeout = parse_duration(config.timeout).total_seconds()  # (> 0: the schema refuses less)
        # The service wants the current value to change it (e.g. basic:admin:{old}).
        self.needs_old = self.apply_request.uses("old")
        self._sent = False  # whether the last request left keyroll
        self._last_status: int | None = None  # of the last request sent; None: no answer
        # A value whose apply changed nothing: ("unsent", value) when it failed before
        # any request left (a missing {secret:NAME}, a value no header can carry), or
        # ("turned down", value) when the service answered 3xx/4xx.
        self._not_applied: tuple[str, str] | None = None

    def describe(self) -> str:
        return f"HTTP API {shown(self.config.base_url)} (target {self.name})"

    def url(self, spec: HttpRequest) -> str:
        return self.config.base_url.rstrip("/") + spec.path

    def requests(self) -> list[str]:
        """The requests of each phase, method and URL only (for `rotate --dry-run`)."""
        phases = [("apply", self.apply_request), ("verify", self.verify_request)]
        rollback = self.config.rollback or self.apply_request
        phases.append(("rollback", rollback))
        return [f"{phase}: {spec.method} {shown(self.url(spec))}" for phase, spec in phases]

    # --- one request ----------------------------------------------------------------

    def _lookup(self, value: str, old: str | None) -> Callable[[str], str]:
        def lookup(name: str) -> str:
            if name == "value":
                return value
            if name == "old":
                if old is None:
                    raise TargetError(f"{self.describe()}: the request needs {{old}}, and there is no current value")
                return old
            secret = name.removeprefix("secret:")
            found = self.live_value(secret)
            if found is None:
                raise TargetError(
                    f"{self.describe()}: the secret {secret} is missing from the store; "
                    f"adopt its current value with `keyroll set {secret}`"
                )
            return found

        return lookup

    def _table(self, phase: str) -> str:
        """The config table a phase's request comes from (rollback: apply's by default)."""
        return "apply" if phase == "rollback" and self.config.rollback is None else phase

    def _read_file(self, option: str, table: str) -> str:
        return read_credential_file(option, self.config_dir, self.env, f"targets.{self.name}.{table}.auth")

    def _headers(self, table: str, spec: HttpRequest, lookup: Callable[[str], str]) -> dict[str, str]:
        headers = {name: fill(text, lookup) for name, text in spec.headers.items()}
        if spec.auth:
            form, first, second = auth_parts(spec.auth)
            if form == "basic":
                headers["Authorization"] = basic_authorization(fill(first, lookup), fill(second, lookup))
            elif form == "basic-file":
                headers["Authorization"] = basic_authorization(fill(first, lookup), self._read_file(second, table))
            elif form == "bearer":
                headers["Authorization"] = "Bearer " + fill(first, lookup)
            elif form == "bearer-file":
                headers["Authorization"] = "Bearer " + self._read_file(first, table)
            else:
                headers[first] = fill(second, lookup)
        for name, text in headers.items():
            if any(c in text for c in "\r\n\0"):
                raise TargetError(f"{self.describe()}: the {name} header would hold a line break; refused")
            if not all(ord(c) < 256 for c in text):
                raise TargetError(
                    f"{self.describe()}: the {name} header cannot carry this value (HTTP headers are Latin-1)"
                )
        return headers

    def _send(self, phase: str, spec: HttpRequest, value: str, old: str | None) -> int:
        """Send one phase's request; its status if it is an expected one, or 401/403
        (refused); ServiceUnavailable for a 5xx or no answer, TargetError otherwise."""
        from urllib.parse import urlencode

        lookup = self._lookup(value, old)
        headers = self._headers(self._table(phase), spec, lookup)
        body: bytes | None = None
        if spec.json is not None:
            body = json.dumps(fill_data(spec.json, lookup), ensure_ascii=False).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        elif spec.form:
            body = urlencode({key: fill(text, lookup) for key, text in spec.form.items()}).encode("ascii")
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        url = self.url(spec)
        where = f"{self.describe()}: {phase} {spec.method} {shown(url)}"
        self._last_status = None
        self._sent = True
        try:
            answer = request(
                spec.method, url, headers=headers, body=body, timeout=self.timeout, ca_file=self._ca_file()
            )
        except HttpUnreachable as exc:
            raise (TargetError if exc.lasting else ServiceUnavailable)(f"{where}: {exc}") from None
        self._last_status = answer.status
        if answer.status in spec.expect or answer.status in (401, 403):
            return answer.status
        if answer.status >= 500:
            raise ServiceUnavailable(f"{where}: HTTP {answer.status}")
        if 300 <= answer.status < 400:
            raise TargetError(
                f"{where}: HTTP {answer.status}, a redirect: keyroll follows none "
                "(set base_url to the address the service really answers on)"
            )
        raise TargetError(f"{where}: HTTP {answer.status} (expected {', '.join(map(str, spec.expect))})")

    def _unsent(self) -> bool:
        return self._not_applied is not None and self._not_applied[0] == "unsent"

    def _forget_last_request(self) -> None:
        self._sent, self._last_status = False, None

    def _ca_file(self) -> str | None:
        if not self.config.ca_file:
            return None
        from keyroll.paths import resolve_config_path

        key = f"targets.{self.name}.ca_file"
        return str(resolve_config_path(self.config.ca_file, self.config_dir, key=key, env=self.env))

    def _change(self, phase: str, spec: HttpRequest, value: str, old: str | None) -> None:
        if self._send(phase, spec, value, old) in (401, 403):
            raise TargetError(
                f"{self.describe()}: {phase} {spec.method} {shown(self.url(spec))}: HTTP 401/403: "
                f"the service does not accept the credentials of this request ({spec.auth.partition(':')[0] or 'none'})"
            )

    # --- the interface ----------------------------------------------------------------

    def check(self) -> None:
        """The credential files of every request can be read; the service answers, and
        takes the current value (when there is one)."""
        for table, spec in (
            ("apply", self.apply_request),
            ("verify", self.verify_request),
            ("rollback", self.config.rollback),
        ):
            if spec is not None and spec.auth.startswith(("basic-file:", "bearer-file:")):
                form, first, second = auth_parts(spec.auth)
                self._read_file(second if form == "basic-file" else first, table)
        try:
            current = self.live_value(self.secret)
        except TargetError:
            return
        if current is not None and not self.accepts(current):
            raise TargetError(f"{self.describe()}: the service does not accept the current value of {self.secret}")

    def accepts(self, value: str) -> bool:
        status = self._send("verify", self.verify_request, value, None)
        return status not in (401, 403)

    def verify(self, new: str) -> None:
        if not self.accepts(new):
            raise LoginRefused(f"{self.describe()}: the service does not accept the new value (verify refused it)")

    def apply(self, new: str, old: str | None) -> None:
        self._not_applied = None
        self._forget_last_request()
        try:
            self._change("apply", self.apply_request, new, old)
        except KeyrollError:
            if not self._sent:
                self._not_applied = ("unsent", new)
            elif self._last_status is not None and 300 <= self._last_status < 500:
                self._not_applied = ("turned down", new)  # (the request was not carried out)
            raise

    def rollback(self, old: str | None, new: str) -> None:
        # Nothing to undo when the apply never left keyroll, or when the service
        # turned it down and still takes the previous value (the rollback request
        # would be turned down the same way, and leave the rotation in flight).
        not_applied = self._not_applied is not None and self._not_applied[1] == new
        if not_applied and (self._unsent() or old is None or self.accepts(old)):
            return
        if old is None:
            raise TargetError(f"{self.describe()}: there is no previous value to go back to")
        self._change("rollback", self.config.rollback or self.apply_request, old, new)
