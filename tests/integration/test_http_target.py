"""The `http` target with Grafana's recipes (docs/recipes.md).

Grafana cannot be installed on these machines: a small stand-in server below
answers the two Grafana API calls the recipes use, with Grafana's documented
semantics (HTTP API reference: `PUT /api/admin/users/:id/password` with a JSON
`{"password": ...}`, allowed to a Grafana server admin by Basic auth only: the
Admin API refuses service account tokens; `PUT /api/user/password` with
`{"oldPassword", "newPassword"}` for a user's own password, 401 for a wrong old
one; `GET /api/user` answering 401 to a wrong password), and checks every
request it gets: method, path, content type, JSON body, Basic auth.  The
RabbitMQ tests (test_rabbitmq_target.py) run the same target against a real
broker."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

ADMIN_PASSWORD = "first-admin-password"
TOKEN = "glsa_stand1n_t0ken"


class Grafana:
    """The stand-in: users by id (1 is the Grafana admin), service account tokens."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.users: dict[int, list[str]] = {1: ["admin", ADMIN_PASSWORD], 2: ["app", "app-password"]}
        self.requests: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.status_override: int | None = None
        self.override_method = ""  # "": every request
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        scheme = "http"
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def password(self, user_id: int) -> str:
        return self.users[user_id][1]

    def _user(self, authorization: str) -> int | None:
        if not authorization.startswith("Basic "):
            return None
        login, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        return next((i for i, (name, pw) in self.users.items() if name == login and pw == password), None)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> tuple[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                authorization = self.headers.get("Authorization", "")
                grafana.requests.append({"method": self.command, "path": self.path, "auth": authorization, "body": raw})
                return authorization, raw

            def do_GET(self) -> None:
                authorization, _ = self._record()
                if grafana.status_override and grafana.override_method in ("", "GET"):
                    return self._answer(grafana.status_override, {"message": "overridden"})
                if self.path != "/api/user":
                    grafana.problems.append(f"GET {self.path}")
                    return self._answer(404, {"message": "Not found"})
                user = grafana._user(authorization)
                if user is None:
                    return self._answer(401, {"message": "Invalid username or password"})
                return self._answer(200, {"id": user, "login": grafana.users[user][0]})

            def do_PUT(self) -> None:
                authorization, raw = self._record()
                if grafana.status_override and grafana.override_method in ("", "PUT"):
                    return self._answer(grafana.status_override, {"message": "overridden"})
                if self.path == "/api/user/password":
                    return self._own_password(authorization, raw)
                parts = self.path.split("/")
                if len(parts) != 6 or parts[:4] != ["", "api", "admin", "users"] or parts[5] != "password":
                    grafana.problems.append(f"PUT {self.path}")
                    return self._answer(404, {"message": "Not found"})
                # Only a server admin by Basic auth: "You can't authenticate to the Admin HTTP API with
                # service account tokens" (Grafana's Admin API reference); a valid token is still refused.
                if grafana._user(authorization) != 1:
                    return self._answer(401 if authorization.startswith("Basic ") else 403, {"message": "denied"})
                body = self._json(raw)
                if body is None:
                    return None
                if set(body) != {"password"} or not isinstance(body["password"], str):
                    grafana.problems.append(f"body keys {sorted(body)}")
                    return self._answer(400, {"message": "bad request data"})
                user_id = int(parts[4])
                if user_id not in grafana.users:
                    return self._answer(404, {"message": "user not found"})
                grafana.users[user_id][1] = body["password"]
                return self._answer(200, {"message": "User password updated"})

            def _json(self, raw: bytes) -> Any:
                if self.headers.get("Content-Type") != "application/json":
                    grafana.problems.append(f"content type {self.headers.get('Content-Type')}")
                    return self._answer(400, {"message": "bad request data"})
                return json.loads(raw)

            def _own_password(self, authorization: str, raw: bytes) -> None:
                user = grafana._user(authorization)
                if user is None:
                    return self._answer(401, {"message": "Unauthorized"})
                body = self._json(raw)
                if body is None:
                    return None
                if set(body) != {"oldPassword", "newPassword"}:
                    grafana.problems.append(f"body keys {sorted(body)}")
                    return self._answer(400, {"message": "bad request data"})
                if body["oldPassword"] != grafana.users[user][1]:
                    return self._answer(401, {"message": "Invalid old password"})
                grafana.users[user][1] = body["newPassword"]
                return self._answer(200, {"message": "User password changed"})

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def grafana() -> Iterator[Grafana]:
    stand_in = Grafana()
    thread = threading.Thread(target=stand_in.server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()
    assert stand_in.problems == []


def admin_recipe(url: str) -> str:
    """docs/recipes.md, Grafana's admin password (the admin changes its own)."""
    return f"""
[targets.grafana]
type = "http"
base_url = "{url}"
timeout = "5s"
apply  = {{ method = "PUT", path = "/api/admin/users/1/password", json = {{ password = "{{value}}" }}, auth = "basic:admin:{{old}}", expect = [200] }}
verify = {{ method = "GET", path = "/api/user", auth = "basic:admin:{{value}}", expect = [200] }}

[secrets.grafana_admin_password]
kind = "password"
services = ["grafana"]
target = "grafana"
"""


def own_password_recipe(url: str) -> str:
    """docs/recipes.md, a Grafana user's own password (no admin: the user logs in with its current one)."""
    return f"""
[targets.grafana_app]
type = "http"
base_url = "{url}"
apply  = {{ method = "PUT", path = "/api/user/password", json = {{ oldPassword = "{{old}}", newPassword = "{{value}}" }}, auth = "basic:app:{{old}}", expect = [200] }}
verify = {{ method = "GET", path = "/api/user", auth = "basic:app:{{value}}", expect = [200] }}

[secrets.grafana_app_password]
kind = "password"
services = ["grafana"]
target = "grafana_app"
"""


def test_grafana_admin_password_rotates_through_its_api(kr, home, grafana: Grafana) -> None:  # type: ignore[no-untyped-def]
    cfg = ("--config", str(home.write_config(admin_recipe(grafana.url))))
    adopted = kr(*cfg, "set", "grafana_admin_password", "--allow-weak", stdin=ADMIN_PASSWORD + "\n")
    assert adopted.code == 0, adopted.both
    assert grafana.password(1) == ADMIN_PASSWORD  # already accepted: recorded, nothing changed
    grafana.requests.clear()
    result = kr(*cfg, "rotate", "grafana_admin_password")
    assert result.code == 0, result.both
    new = home.value("grafana_admin_password")
    assert new != ADMIN_PASSWORD and grafana.password(1) == new
    put = [r for r in grafana.requests if r["method"] == "PUT"]
    assert len(put) == 1 and put[0]["path"] == "/api/admin/users/1/password"
    assert json.loads(put[0]["body"]) == {"password": new}
    assert put[0]["auth"] == "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    # check (old value), then verify (new value): both as Basic auth on GET /api/user
    gets = [base64.b64decode(r["auth"][6:]).decode() for r in grafana.requests if r["method"] == "GET"]
    assert gets[0] == f"admin:{ADMIN_PASSWORD}" and gets[-1] == f"admin:{new}"
    assert new not in result.both and ADMIN_PASSWORD not in result.both
    # check before the next rotation: verify with the current value
    assert kr(*cfg, "rotate", "grafana_admin_password").code == 0
    assert grafana.password(1) == home.value("grafana_admin_password")


def test_a_grafana_user_changes_its_own_password(kr, home, grafana: Grafana) -> None:  # type: ignore[no-untyped-def]
    cfg = ("--config", str(home.write_config(own_password_recipe(grafana.url))))
    result = kr(*cfg, "init")  # {old} in apply: keyroll needs the current password to change it
    assert result.code == 1 and "keyroll set grafana_app_password" in result.both, result.both
    assert grafana.password(2) == "app-password"
    assert kr(*cfg, "set", "grafana_app_password", "--allow-weak", stdin="app-password\n").code == 0
    result = kr(*cfg, "rotate", "grafana_app_password")
    assert result.code == 0, result.both
    new = home.value("grafana_app_password")
    assert grafana.password(2) == new != "app-password"
    put = next(r for r in grafana.requests if r["method"] == "PUT")
    assert put["path"] == "/api/user/password"
    assert json.loads(put["body"]) == {"oldPassword": "app-password", "newPassword": new}
    assert put["auth"] == "Basic " + base64.b64encode(b"app:app-password").decode()


def test_the_admin_api_refuses_a_service_account_token(kr, home, grafana: Grafana) -> None:  # type: ignore[no-untyped-def]
    """bearer-file sends the token from a file (relative to the config's folder); Grafana's
    Admin API does not take service account tokens, so this is refused: exit 1."""
    (home.root / "grafana-token").write_text(TOKEN + "\n")
    text = own_password_recipe(grafana.url).replace(
        'path = "/api/user/password", json = { oldPassword = "{old}", newPassword = "{value}" }, auth = "basic:app:{old}"',
        'path = "/api/admin/users/2/password", json = { password = "{value}" }, auth = "bearer-file:grafana-token"',
    )
    cfg = ("--config", str(home.write_config(text)))
    assert kr(*cfg, "set", "grafana_app_password", "--allow-weak", stdin="app-password\n").code == 0
    refused = kr(*cfg, "rotate", "grafana_app_password")
    assert refused.code == 1, refused.both
    assert "the service does not accept the credentials of this request (bearer-file)" in refused.both
    put = next(r for r in grafana.requests if r["method"] == "PUT")
    assert put["auth"] == f"Bearer {TOKEN}" and TOKEN not in refused.both
    assert grafana.password(2) == "app-password" == home.value("grafana_app_password")


def test_a_value_full_of_json_special_characters_is_sent_exactly(kr, home, grafana: Grafana) -> None:  # type: ignore[no-untyped-def]
    cfg = ("--config", str(home.write_config(admin_recipe(grafana.url))))
    assert kr(*cfg, "set", "grafana_admin_password", "--allow-weak", stdin=ADMIN_PASSWORD + "\n").code == 0
    nasty = 'qu"ote\\back{value}}{{old}é\\u0041 </x> \' ,:[]{"a":1}-padding-padding'
    result = kr(*cfg, "set", "grafana_admin_password", "--allow-weak", stdin=nasty + "\n")
    assert result.code == 0, result.both
    assert grafana.password(1) == nasty == home.value("grafana_admin_password")
    put = [r for r in grafana.requests if r["method"] == "PUT"][-1]
    assert json.loads(put["body"]) == {"password": nasty}


def test_rollback_restores_the_previous_value(kr, home, grafana: Grafana) -> None:  # type: ignore[no-untyped-def]
    cfg = ("--config", str(home.write_config(admin_recipe(grafana.url))))
    assert kr(*cfg, "set", "grafana_admin_password", "--allow-weak", stdin=ADMIN_PASSWORD + "\n").code == 0
    assert kr(*cfg, "rotate", "grafana_admin_password").code == 0
    rotated = home.value("grafana_admin_password")
    result = kr(*cfg, "rollback", "grafana_admin_password")
    assert result.code == 0, result.both
    assert grafana.password(1) == ADMIN_PASSWORD == home.value("grafana_admin_password")
    put = [r for r in grafana.requests if r["method"] == "PUT"][-1]  # the apply request, {old} = the rotated value
    assert put["auth"] == "Basic " + base64.b64encode(f"admin:{rotated}".encode()).decode()


@pytest.mark.parametrize("method", ["GET", "PUT"])  # the check before the change (verify), or the change itself
@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (503, 75, "HTTP 503"),
        (500, 75, "HTTP 500"),
        (404, 1, "HTTP 404 (expected 200)"),
        (401, 1, "does not accept"),
        (302, 1, "HTTP 302, a redirect: keyroll follows none (set base_url to"),
    ],
)
def test_answers_map_to_exit_codes(kr, home, grafana: Grafana, method: str, status: int, code: int, words: str) -> None:  # type: ignore[no-untyped-def]
    cfg = ("--config", str(home.write_config(admin_recipe(grafana.url))))
    assert kr(*cfg, "set", "grafana_admin_password", "--allow-weak", stdin=ADMIN_PASSWORD + "\n").code == 0
    grafana.status_override, grafana.override_method = status, method
    result = kr(*cfg, "rotate", "grafana_admin_password")
    assert result.code == code, result.both
    assert words in result.both
    assert (status == 401 and method == "GET") or f"{method} {grafana.url}/api/" in result.both
    assert home.value("grafana_admin_password") == ADMIN_PASSWORD == grafana.password(1)
    if status < 500:  # a change turned down is no change: nothing to roll back, nothing left in flight
        assert "left in flight" not in result.both and "rolling back failed" not in result.both
        grafana.status_override = None
        assert "nothing was in flight" in kr(*cfg, "recover").out


def test_a_service_that_is_down_is_temporary(kr, home) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ("--config", str(home.write_config(admin_recipe(f"http://127.0.0.1:{port}"))))
    result = kr(*cfg, "set", "grafana_admin_password", "--allow-weak", stdin=ADMIN_PASSWORD + "\n")
    assert result.code == 75, result.both
    assert "refused" in result.both.lower()


def test_dry_run_prints_method_and_url_only(kr, home, grafana: Grafana) -> None:  # type: ignore[no-untyped-def]
    cfg = ("--config", str(home.write_config(admin_recipe(grafana.url))))
    result = kr(*cfg, "rotate", "grafana_admin_password", "--dry-run")
    assert result.code == 0, result.both
    assert f"request: apply: PUT {grafana.url}/api/admin/users/1/password" in result.out
    assert f"request: verify: GET {grafana.url}/api/user" in result.out
    assert f"request: rollback: PUT {grafana.url}/api/admin/users/1/password" in result.out
    assert "{value}" not in result.out and "basic" not in result.out
    assert grafana.requests == []


def test_a_secret_placeholder_orders_the_admin_secret_last(kr, home, grafana: Grafana) -> None:  # type: ignore[no-untyped-def]
    """{secret:NAME}: the admin password keyroll also manages is rotated after the
    secrets it administers, and the user's change uses its live value."""
    text = (
        admin_recipe(grafana.url)
        + f"""
[targets.grafana_app]
type = "http"
base_url = "{grafana.url}"
apply  = {{ method = "PUT", path = "/api/admin/users/2/password", json = {{ password = "{{value}}" }}, auth = "basic:admin:{{secret:grafana_admin_password}}", expect = [200] }}
verify = {{ method = "GET", path = "/api/user", auth = "basic:app:{{value}}" }}

[secrets.grafana_app_password]
kind = "password"
target = "grafana_app"
"""
    )
    cfg = ("--config", str(home.write_config(text)))
    assert kr(*cfg, "set", "grafana_admin_password", "--allow-weak", stdin=ADMIN_PASSWORD + "\n").code == 0
    assert kr(*cfg, "set", "grafana_app_password", "--allow-weak", stdin="app-password\n").code == 0
    plan = kr(*cfg, "rotate", "all", "--dry-run").out
    assert plan.index("grafana_app_password") < plan.index("2. grafana_admin_password")
    result = kr(*cfg, "rotate", "all")
    assert result.code == 0, result.both
    assert grafana.password(1) == home.value("grafana_admin_password") != ADMIN_PASSWORD
    assert grafana.password(2) == home.value("grafana_app_password") != "app-password"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('base_url = "http://h/{value}"', "targets.t.base_url: placeholders"),
        ('apply = { method = "PUT", path = "/u/{value}" }', "targets.t.apply.path: placeholders"),
        ('apply = { method = "PUT", path = "/u?p={old}" }', "targets.t.apply.path: placeholders"),
        (
            'apply = { method = "PUT", path = "/u", json = { p = "{valeu}" } }',
            "targets.t.apply.json.p: unknown placeholder",
        ),
        (
            'apply = { method = "PUT", path = "/u", auth = "digest:a:b" }',
            "targets.t.apply.auth: use basic:USER:PASSWORD",
        ),
        ('apply = { method = "FETCH", path = "/u" }', "targets.t.apply.method: must be one of"),
        ('apply = { method = "PUT", path = "u" }', "targets.t.apply.path: required, a path starting with /"),
        ('apply = { method = "PUT", path = "/u", json = {}, form = {} }', "targets.t.apply: set json or form"),
        ('apply = { method = "PUT", path = "/u", expect = [401] }', "targets.t.apply.expect: 401 and 403"),
        ('apply = { method = "PUT", path = "/u", bogus = 1 }', "targets.t.apply.bogus: unknown key"),
        ('verify = { method = "GET", path = "/v", auth = "basic:u:{old}" }', "targets.t.verify.auth: {old} has no"),
        ('apply = { method = "PUT", path = "/u", auth = "basic:a:{secret:ghost}" }', "{secret:ghost} names no secret"),
        ('base_url = "http://u:pw@h"', "targets.t.base_url: no user:password@"),
        (  # (a token written where the header name goes is not quoted back)
            'apply = { method = "PUT", path = "/u", auth = "header:Token pw-tok:x" }',
            "targets.t.apply.auth: header: what comes before the second ':' is not a header name",
        ),
        # (a space or a line break used to pass, then fail every rotation as a temporary outage, exit 75)
        ('apply = { method = "PUT", path = "/u v" }', "targets.t.apply.path: no spaces or control characters"),
        ('verify = { method = "GET", path = "/v\\n" }', "targets.t.verify.path: no spaces or control characters"),
        ('base_url = "http://h/a b"', "targets.t.base_url: no spaces or control characters"),
        ('timeout = "0s"', "targets.t.timeout: must be more than 0s"),  # (it used to mean 10s, silently)
    ],
)
def test_config_errors_name_the_key(kr, home, table: str, message: str) -> None:  # type: ignore[no-untyped-def]
    defaults = {
        "base_url": 'base_url = "http://127.0.0.1:1"',
        "apply": 'apply = { method = "PUT", path = "/u", json = { p = "{value}" } }',
        "verify": 'verify = { method = "GET", path = "/v", auth = "basic:u:{value}" }',
    }
    defaults[table.split(" ", 1)[0]] = table
    home.write_config('[targets.t]\ntype = "http"\n' + "\n".join(defaults.values()) + '\n[secrets.s]\ntarget = "t"\n')
    result = kr("--config", str(home.config), "config", "validate")
    assert result.code == 2, result.both
    assert message in result.err and result.err.count("\n") == 1
    assert "pw" not in result.err


def test_config_show_masks_literal_credentials(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config(
        '[targets.t]\ntype = "http"\nbase_url = "http://127.0.0.1:1"\n'
        'apply = { method = "PUT", path = "/u", json = { p = "{value}" }, auth = "basic:admin:LiteralPw", '
        'headers = { X-Key = "LiteralKey" } }\n'
        'verify = { method = "GET", path = "/v", auth = "basic:u:{value}" }\n[secrets.s]\ntarget = "t"\n'
    )
    result = kr("--config", str(home.config), "config", "show")
    assert result.code == 0, result.both
    assert "LiteralPw" not in result.out and "LiteralKey" not in result.out
    assert 'auth = "basic:admin:***"' in result.out and 'auth = "basic:u:{value}"' in result.out
    assert 'path = "/u"' in result.out
    shown = home.root / "shown.toml"  # what it prints is a config keyroll loads again
    shown.write_text(result.out)
    again = kr("--config", str(shown), "config", "validate", "--static")
    assert again.code == 0, again.both


def test_admin_secrets_that_administer_each_other_are_refused(kr, home) -> None:  # type: ignore[no-untyped-def]
    def target(name: str, admin: str) -> str:
        return (
            f'[targets.{name}]\ntype = "http"\nbase_url = "http://127.0.0.1:1"\n'
            f'apply = {{ method = "PUT", path = "/u", json = {{ p = "{{value}}" }}, auth = "basic:admin:{{secret:{admin}}}" }}\n'
            'verify = { method = "GET", path = "/v", auth = "basic:u:{value}" }\n'
            f'[secrets.{name}_password]\ntarget = "{name}"\n'
        )

    home.write_config(target("one", "two_password") + target("two", "one_password"))
    result = kr("--config", str(home.config), "config", "validate")
    assert result.code == 2, result.both
    assert "targets.one: admin credentials form a cycle (one_password -> two_password -> one_password)" in result.err


def test_https_with_an_extra_ca_file(kr, home) -> None:  # type: ignore[no-untyped-def]
    """A self-signed Grafana: refused without ca_file (exit 1: retrying will not help), and
    trusted with ca_file (relative to the config's folder)."""
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl is missing (Debian package openssl)")
    cert, key = home.root / "grafana.pem", home.root / "grafana.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    grafana = Grafana(tls=(str(cert), str(key)))
    threading.Thread(target=grafana.server.serve_forever, daemon=True).start()
    try:
        text = admin_recipe(grafana.url)
        cfg = ("--config", str(home.write_config(text)))
        untrusted = kr(*cfg, "set", "grafana_admin_password", "--allow-weak", stdin=ADMIN_PASSWORD + "\n")
        assert untrusted.code == 1, untrusted.both
        assert "TLS: self-signed certificate" in untrusted.both and grafana.requests == []
        home.write_config(text.replace('timeout = "5s"', 'timeout = "5s"\nca_file = "grafana.pem"'))
        assert kr(*cfg, "set", "grafana_admin_password", "--allow-weak", stdin=ADMIN_PASSWORD + "\n").code == 0
        result = kr(*cfg, "rotate", "grafana_admin_password")
        assert result.code == 0, result.both
        assert grafana.password(1) == home.value("grafana_admin_password") != ADMIN_PASSWORD
    finally:
        grafana.server.shutdown()
        grafana.server.server_close()


def test_a_missing_admin_file_is_found_before_any_change(kr, home, grafana: Grafana) -> None:  # type: ignore[no-untyped-def]
    text = admin_recipe(grafana.url).replace('auth = "basic:admin:{old}"', 'auth = "basic-file:admin:admin-password"')
    cfg = ("--config", str(home.write_config(text)))
    assert (
        kr(*cfg, "set", "grafana_admin_password", "--allow-weak", stdin=ADMIN_PASSWORD + "\n").code == 0
    )  # (accepted as it is)
    result = kr(*cfg, "rotate", "grafana_admin_password")
    assert result.code == 1, result.both  # (as for a missing admin_password_file: this secret not rotated)
    assert f"targets.grafana.apply.auth: {home.root / 'admin-password'}: No such file" in result.both
    assert [r["method"] for r in grafana.requests if r["method"] == "PUT"] == []
    assert kr(*cfg, "status").code == 0 and "in flight" not in kr(*cfg, "status").out


def test_a_value_a_header_cannot_carry_is_refused_before_sending(kr, home, grafana: Grafana) -> None:  # type: ignore[no-untyped-def]
    text = admin_recipe(grafana.url).replace('auth = "basic:admin:{value}"', 'auth = "bearer:{value}"')
    cfg = ("--config", str(home.write_config(text)))
    result = kr(*cfg, "set", "grafana_admin_password", "--allow-weak", stdin="price-in-€-is-not-latin-1\n")
    assert result.code == 1, result.both
    assert "the Authorization header cannot carry this value" in result.both and "€" not in result.both
    assert grafana.requests == []


def test_an_apply_that_never_left_is_not_rolled_back(kr, home, grafana: Grafana) -> None:  # type: ignore[no-untyped-def]
    """The admin secret a request names is missing from the store: the apply fails
    before anything is sent, so there is nothing to undo and nothing left in flight
    (it used to try a rollback, fail for want of a previous value, and leave the
    rotation for `keyroll recover`)."""
    text = (
        admin_recipe(grafana.url)
        + f"""
[targets.grafana_app]
type = "http"
base_url = "{grafana.url}"
apply  = {{ method = "PUT", path = "/api/admin/users/2/password", json = {{ password = "{{value}}" }}, auth = "basic:admin:{{secret:grafana_admin_password}}", expect = [200] }}
verify = {{ method = "GET", path = "/api/user", auth = "basic:app:{{value}}" }}

[secrets.grafana_app_password]
kind = "password"
target = "grafana_app"
"""
    )
    cfg = ("--config", str(home.write_config(text)))
    result = kr(*cfg, "init")
    assert result.code == 1, result.both
    assert "the secret grafana_admin_password is missing from the store" in result.both
    assert "keyroll set grafana_admin_password" in result.both
    assert "left in flight" not in result.both and "rolling back failed" not in result.both
    assert [r for r in grafana.requests if r["method"] == "PUT"] == []
    assert "nothing was in flight" in kr(*cfg, "recover").out
    assert grafana.password(2) == "app-password"


def test_status_with_an_http_target_loads_no_http_machinery(krp, home) -> None:  # type: ignore[no-untyped-def]
    """Start-up stays light with an http target and HTTP health checks in the config:
    `status` parses the requests but loads neither the target, nor TLS, nor urllib's
    client, nor json (they load when a request is sent)."""
    text = admin_recipe("https://127.0.0.1:1").replace(
        'target = "grafana"', 'target = "grafana"\nhealth = ["https://probe:pw@127.0.0.1:1/health"]'
    )
    cfg = ("--config", str(home.write_config(text)))
    result = krp(*cfg, "status", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.code == 0, result.both
    loaded = {line.split("|")[-1].strip() for line in result.err.splitlines() if line.startswith("import time:")}
    assert "keyroll.config.httpspec" in loaded  # the probe sees the requests being parsed
    heavy = {"ssl", "_ssl", "http", "urllib.request", "json", "email", "keyroll.targets", "keyroll.consumers"}
    assert not {m for m in loaded if m in heavy or m.split(".")[0] in {"ssl", "_ssl", "http", "email", "json"}}
