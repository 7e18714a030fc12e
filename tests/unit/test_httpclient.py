"""The one HTTP helper (health checks and the `http` target): real HTTP servers on
loopback addresses; a redirect is an answer, never followed, so credentials never
reach another address (issue: urllib kept `Authorization` across hosts)."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from keyroll import consumers, httpclient, text
from keyroll.targets import http as http_target


@pytest.fixture
def elsewhere() -> Iterator[tuple[int, list[bytes]]]:
    """A listener on a second loopback address that records whatever reaches it."""
    received: list[bytes] = []
    listener = socket.create_server(("127.0.0.2", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    received.append(conn.recv(65536))
                except OSError:
                    received.append(b"(connected)")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], received
    stop.set()
    thread.join()
    listener.close()


@pytest.fixture
def redirector(elsewhere: tuple[int, list[bytes]]) -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on 127.0.0.1 answering every GET with a redirect to the other address."""
    port2, _ = elsewhere
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            code = int(self.path.rsplit("/", 1)[1]) if self.path[-1].isdigit() else 302
            self.send_response(code)
            self.send_header("Location", f"http://127.0.0.2:{port2}/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_health_url_that_redirects_is_alive_and_its_credentials_go_nowhere_else(
    redirector: tuple[int, list[str]], elsewhere: tuple[int, list[bytes]], code: int
) -> None:
    port, seen = redirector
    _, received = elsewhere
    url = f"http://probe:s3cr%20et@127.0.0.1:{port}/health/{code}"
    assert consumers.check_once(url, "app", {}) is None  # a 3xx answers "alive"
    assert seen == ["Basic " + base64.b64encode(b"probe:s3cr et").decode()]
    assert received == []  # the other address got no connection at all


def test_the_helper_returns_a_redirect_as_the_answer(
    redirector: tuple[int, list[str]], elsewhere: tuple[int, list[bytes]]
) -> None:
    port, _ = redirector
    answer = httpclient.request(
        "GET", f"http://127.0.0.1:{port}/x/307", headers={"Authorization": "Bearer T0KEN"}, timeout=5
    )
    assert answer.status == 307
    assert elsewhere[1] == []


def test_a_proxy_never_carries_a_request_to_this_machine(
    redirector: tuple[int, list[str]], elsewhere: tuple[int, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With http_proxy set (a shell behind a corporate proxy), a request to a loopback
    address used to go to the proxy with its Authorization header and body: the
    current, new and admin values of a local service.  Loopback is never proxied."""
    port, seen = redirector
    proxy_port, received = elsewhere
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.2:{proxy_port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    for host in ("127.0.0.1", "localhost"):
        answer = httpclient.request(
            "GET", f"http://{host}:{port}/x/302", headers={"Authorization": "Bearer T0KEN"}, timeout=5
        )
        assert answer.status == 302
    assert consumers.check_once(f"http://probe:pw@127.0.0.1:{port}/health", "app", {}) is None
    assert received == []  # the proxy got no connection at all
    assert seen[-1] == "Basic " + base64.b64encode(b"probe:pw").decode()
    assert [httpclient.is_loopback(h) for h in ("::1", "[::1]", "127.3.4.5", "LocalHost.", "10.0.0.1", "example.org")] == [
        True, True, True, True, False, False
    ]  # fmt: skip


def test_unreachable_and_bad_urls_are_one_line_without_credentials() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(httpclient.HttpUnreachable) as refused:
        httpclient.request("GET", f"http://127.0.0.1:{port}/", timeout=2)
    assert "refused" in str(refused.value).lower()
    assert consumers.check_once(f"http://u:PASSWORD@127.0.0.1:{port}/", "app", {}) == str(refused.value)
    assert "PASSWORD" not in (consumers.check_once("http://u:PASSWORD@[::1/x", "app", {}) or "")
    for bad in ("http://127.0.0.1:1/a b", "http://127.0.0.1:1/a\n", "http://127.0.0.1:1/\x7f"):
        with pytest.raises(ValueError):  # (the config check: a health URL http.client could not send)
            httpclient.split_http_url(bad)


def test_a_silent_server_times_out() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as silent,
        pytest.raises(httpclient.HttpUnreachable, match="timed out"),
    ):
        httpclient.request("GET", f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=0.5)


@pytest.fixture
def trickler() -> Iterator[int]:
    """A server that answers one byte every 0.2 s, for ever (a status line, then
    header bytes): no single read waits long, so a per-read timeout never fires."""
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                if stop.is_set():
                    return
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_the_timeout_bounds_the_whole_request_not_each_read(trickler: int) -> None:
    """A server trickling its answer used to hold keyroll (and a rotation, and the
    daemon's cycle) for ever; the timeout now ends the whole request."""
    import time

    started = time.monotonic()
    with pytest.raises(httpclient.HttpUnreachable, match="timed out after 1s"):
        httpclient.request("GET", f"http://127.0.0.1:{trickler}/", timeout=1)
    assert time.monotonic() - started < 3


def test_an_unusable_ca_file_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(httpclient.HttpUnreachable, match="CA file"):
        httpclient.request("GET", "https://127.0.0.1:1/", ca_file=str(bad), timeout=1)


def test_shown_hides_credentials_and_queries() -> None:
    assert text.shown("https://u:p@h:1/a?token=x#f") == "https://***@h:1/a?***"
    assert text.shown("tcp:h:1") == "tcp:h:1"
    assert text.shown("HTTPS://u:p@h/a?t=x") == "HTTPS://***@h/a?***"  # schemes have no case
    assert consumers.shown is text.shown and http_target.shown is text.shown  # one redaction for both


@pytest.fixture
def tls_server(tmp_path) -> Iterator[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """An https server on 127.0.0.1 with a self-signed certificate (openssl): (port, its CA file)."""
    import shutil
    import ssl
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl is missing (Debian package openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.headers.get("Authorization") == "Bearer T0KEN" else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], str(cert)
    server.shutdown()
    server.server_close()


def test_tls_is_checked_against_the_system_cas_and_the_extra_ca_file(tls_server: tuple[int, str]) -> None:
    port, ca_file = tls_server
    url = f"https://127.0.0.1:{port}/api"
    with pytest.raises(httpclient.HttpUnreachable, match="TLS: self-signed certificate"):
        httpclient.request("GET", url, headers={"Authorization": "Bearer T0KEN"}, timeout=5)
    answer = httpclient.request("GET", url, headers={"Authorization": "Bearer T0KEN"}, timeout=5, ca_file=ca_file)
    assert answer.status == 200
