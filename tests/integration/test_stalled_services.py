"""A service that accepts the connection and then never answers (a frozen server, a
wrong port on something that waits for the client): the secret fails with 75 in
bounded time, the others rotate.  The peer is a real listening socket that never
speaks; a frozen Redis or MariaDB looks the same to the client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from conftest import keyroll


@pytest.fixture
def silent_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])  # held open, never read or written
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize("kind, extra", [("redis", 'user = "app"'), ("mysql", 'user = "app"')])
def test_a_stalled_service_fails_its_secret_with_75_and_the_others_go_on(home, silent_port, kind, extra) -> None:  # type: ignore[no-untyped-def]
    (home.root / "admin").write_text("admin-password")
    home.write_config(
        f"""
[targets.stalled]
type = "{kind}"
host = "127.0.0.1"
port = {silent_port}
{extra}
admin_user = "admin"
admin_password_file = "{home.root / "admin"}"
connect_timeout = "1s"

[secrets.stalled_password]
target = "stalled"

[secrets.plain_key]
kind = "api_key"
"""
    )
    (home.secrets).mkdir(mode=0o700)
    (home.secrets / "stalled_password").write_text("S" * 32)
    assert keyroll(home.config, "init").returncode in (1, 75)  # plain_key created; the stalled one cannot be checked
    before = home.value("plain_key")
    started = time.monotonic()
    done = keyroll(home.config, "rotate", "all")
    took = time.monotonic() - started
    assert done.returncode == 75, done.stdout + done.stderr
    assert took < 30, f"a stalled {kind} held keyroll for {took:.0f}s"
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("stalled_password:"))
    assert "failed" in line and ("unreachable" in line or "connection lost" in line), line
    assert "unexpected" not in done.stdout + done.stderr
    assert home.value("stalled_password") == "S" * 32
    assert home.value("plain_key") != before
