"""Smoke tests of tests/peers.py: every peer is real and behaves as the integration tests expect."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import smtplib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

import peers


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie awaiting its reaper counts as gone
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


# -- helpers ------------------------------------------------------------------------------------------------------


def test_free_port_is_bindable_unique_and_never_a_shared_default() -> None:
    ports = {peers.free_port() for _ in range(20)}
    assert len(ports) == 20
    assert not ports & {5432, 6379, 3306}
    with socket.socket() as s:
        s.bind((peers.LOOPBACK, ports.pop()))


def test_require_tool_finds_postgres_binaries_outside_path() -> None:
    initdb = peers.find_tool("initdb")
    if initdb is None:
        pytest.skip("PostgreSQL is not installed")
    assert peers.require_tool("initdb") == initdb
    assert os.access(initdb, os.X_OK)


def test_require_tool_skips_when_missing_but_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool"):
        peers.require_tool("no-such-tool-keyroll")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="install the Debian package mariadb-server"):
        monkeypatch.setenv("PATH", "/nonexistent")
        monkeypatch.setattr(peers, "find_tool", lambda name: None)
        peers.require_tool("mariadbd")


# -- PostgreSQL ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.PostgresServer]:
    """One cluster for the module (a session-scoped fixture works the same way)."""
    with peers.PostgresServer(tmp_path_factory.mktemp("pg")) as server:
        yield server


def test_postgres_role_logs_in_with_its_password_only(pg: peers.PostgresServer) -> None:
    role, password = _name("app"), secrets.token_urlsafe(16)
    pg.create_role(role, password)
    assert pg.login_ok(role, password)
    assert not pg.login_ok(role, password + "x")
    assert not pg.login_ok(_name("ghost"), password)
    assert pg.login_ok(pg.admin_user, pg.admin_password)
    assert str(pg.password_verifier(role)).startswith("SCRAM-SHA-256$4096:")


def test_postgres_is_private_loopback_and_scram(pg: peers.PostgresServer) -> None:
    assert pg.host == "127.0.0.1"
    assert pg.port != 5432
    assert (pg.socket_dir / f".s.PGSQL.{pg.port}").is_socket()
    settings = dict(
        pg.execute_admin(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('listen_addresses', 'password_encryption', 'log_statement', 'fsync')"
        )
    )
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "password_encryption": "scram-sha-256",
        "log_statement": "all",
        "fsync": "off",
    }


def test_postgres_log_has_statements_but_not_the_fixture_passwords(pg: peers.PostgresServer) -> None:
    marker = _name("marker")
    role, password = _name("logged"), secrets.token_urlsafe(16)
    pg.create_role(role, password, createrole=True)
    pg.execute_admin(f"SELECT '{marker}'")
    pg.set_password(role, password + "-2")
    text = _wait_for_text(pg.log_text, marker)
    assert f"statement: SELECT '{marker}'" in text
    assert password not in text
    assert pg.admin_password not in text


def _wait_for_text(read: object, needle: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = read()  # type: ignore[operator]
        if needle in text or time.monotonic() > deadline:
            return str(text)
        time.sleep(0.05)


def test_postgres_stop_start_kill_and_cleanup(tmp_path: Path) -> None:
    role, password = _name("svc"), secrets.token_urlsafe(16)
    with peers.PostgresServer(tmp_path) as server:
        server.create_role(role, password)
        port = server.port
        server.stop()
        assert not server.running
        assert not server.login_ok(role, password)
        server.start()
        assert server.port == port
        assert server.login_ok(role, password)
        pid = server.pid
        assert pid is not None
        server.kill()
        assert _gone(pid)
        assert not server.login_ok(role, password)
        server.start()
        assert server.login_ok(role, password)
        pid = server.pid
        assert pid is not None
        data_dir = server.data_dir
        if os.geteuid() == 0:
            assert data_dir.stat().st_uid == pwd.getpwnam("postgres").pw_uid
    assert _gone(pid)
    assert not data_dir.exists()
    if server._private:  # pytest's tmp_path is not traversable by the postgres user: the log was copied there
        assert (tmp_path / f"{server.root_dir.name}.log").exists()


# -- Redis --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.RedisServer]:
    with peers.RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


def test_redis_acl_user_with_two_passwords(rds: peers.RedisServer) -> None:
    user, old, new = _name("worker"), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    assert rds.port != 6379
    rds.create_user(user, old)
    assert rds.login_ok(user, old)
    assert not rds.login_ok(user, new)
    with rds.client() as admin:
        admin.execute_command("ACL", "SETUSER", user, f">{new}")
        assert rds.login_ok(user, old) and rds.login_ok(user, new)
        admin.execute_command("ACL", "SETUSER", user, f"<{old}")
    assert not rds.login_ok(user, old)
    assert rds.login_ok(user, new)
    assert rds.login_ok("default", rds.default_password)
    assert not rds.login_ok("default", "wrong")


def test_redis_login_ok_does_not_need_command_permissions(rds: peers.RedisServer) -> None:
    user, password = _name("limited"), secrets.token_urlsafe(16)
    rds.create_user(user, password, commands="+get")
    assert rds.login_ok(user, password)
    assert not rds.login_ok(user, "nope")


def test_redis_acl_save_and_config_rewrite_keep_plaintext_out(rds: peers.RedisServer) -> None:
    user, password = _name("saved"), secrets.token_urlsafe(16)
    rds.create_user(user, password)
    rds.acl_save()
    with rds.client() as admin:
        admin.config_rewrite()
    acl = rds.acl_file_text()
    assert f"user {user} on" in acl
    assert password not in acl and rds.default_password not in acl
    config = rds.config_file_text()
    assert f"aclfile {json.dumps(str(rds.acl_path))}" in config
    assert password not in config and rds.default_password not in config


def test_redis_stop_start_kill(tmp_path: Path) -> None:
    user, password = _name("persist"), secrets.token_urlsafe(16)
    with peers.RedisServer(tmp_path) as server:
        server.create_user(user, password)
        server.acl_save()
        server.stop()
        assert not server.login_ok(user, password)
        server.start()
        assert server.login_ok(user, password)  # reloaded from the saved ACL file
        pid = server.pid
        assert pid is not None
        server.kill()
        assert _gone(pid) and not server.login_ok(user, password)
        server.start()
        assert server.login_ok(user, password)
        pid = server.pid
        assert pid is not None
        root = server.root_dir
    assert _gone(pid)
    assert server._private or root.is_relative_to(tmp_path)


def test_a_port_taken_before_the_first_start_is_replaced(tmp_path: Path) -> None:
    server = peers.RedisServer(tmp_path)
    with socket.socket() as squatter:
        squatter.bind((peers.LOOPBACK, server.port))
        squatter.listen()
        taken = server.port
        with server:
            assert server.port != taken
            assert server.login_ok("default", server.default_password)


# -- MariaDB ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def maria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.MariaDBServer]:
    with peers.MariaDBServer(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


def test_mariadb_user_logs_in_with_its_password_only(maria: peers.MariaDBServer) -> None:
    user, password = _name("app"), secrets.token_urlsafe(16)
    assert maria.port != 3306
    maria.create_user(user, password)
    assert maria.login_ok(user, password)
    assert not maria.login_ok(user, password + "x")
    assert maria.login_ok("root", maria.admin_password)
    assert not maria.login_ok("root", "")


def test_mariadb_general_log_has_statements_but_not_fixture_passwords(maria: peers.MariaDBServer) -> None:
    marker = _name("marker")
    user, password = _name("logged"), secrets.token_urlsafe(16)
    maria.create_user(user, password, privileges="SELECT ON *.*")
    maria.set_password(user, password + "-2")
    maria.execute_admin("SELECT %s", (marker,))
    assert maria.login_ok(user, password + "-2")
    text = _wait_for_text(maria.general_log_text, marker)
    assert marker in text
    assert password not in text and maria.admin_password not in text


def test_mariadb_stop_start_kill(tmp_path: Path) -> None:
    user, password = _name("svc"), secrets.token_urlsafe(16)
    with peers.MariaDBServer(tmp_path) as server:
        server.create_user(user, password)
        server.stop()
        assert not server.login_ok(user, password)
        server.start()
        assert server.login_ok(user, password)
        pid = server.pid
        assert pid is not None
        server.kill()
        assert _gone(pid) and not server.login_ok(user, password)
        server.start()  # InnoDB crash recovery
        assert server.login_ok(user, password)
        pid = server.pid
        assert pid is not None
    assert _gone(pid)


# -- SMTP ---------------------------------------------------------------------------------------------------------


def _mail(subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "keyroll@example.test"
    msg["To"] = "ops@example.test"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def test_smtp_sink_receives_a_message() -> None:
    with peers.SMTPSink() as sink:
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
            client.send_message(_mail("rotated", "db password rotated\n"))
        (got,) = sink.wait_for(1, timeout=5)
    assert got.subject == "rotated"
    assert got.text == "db password rotated\n"
    assert got.rcpt_tos == ("ops@example.test",)
    assert got.mail_from == "keyroll@example.test"


def test_smtp_sink_auth_and_rejection() -> None:
    with peers.SMTPSink(auth=("bot", "pw")) as sink:
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client, pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("bot", "wrong")
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
            client.login("bot", "pw")
            client.send_message(_mail("authed", "hi\n"))
        assert sink.wait_for(1)[0].login == "bot"
        assert "bot" in sink.failed_logins
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client, pytest.raises(smtplib.SMTPSenderRefused):
            client.send_message(_mail("no auth", "refused\n"))
        assert len(sink.messages) == 1
    with peers.SMTPSink(data_response="554 5.0.0 rejected by test") as failing:
        with smtplib.SMTP(failing.host, failing.port, timeout=10) as client, pytest.raises(smtplib.SMTPDataError):
            client.send_message(_mail("x", "y\n"))
        assert len(failing.messages) == 1
        with pytest.raises(TimeoutError):
            failing.wait_for(2, timeout=0.2)


# -- HTTP ---------------------------------------------------------------------------------------------------------


def _post(url: str, payload: object, timeout: float = 5.0) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json", "X-Token": "t0k"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


def test_http_sink_records_posts() -> None:
    with peers.HTTPSink() as sink:
        assert _post(sink.url("/hooks/keyroll"), {"event": "rotated", "n": 1}) == 200
        (req,) = sink.wait_for(1)
    assert (req.method, req.path) == ("POST", "/hooks/keyroll")
    assert req.headers["x-token"] == "t0k"
    assert req.json == {"event": "rotated", "n": 1}
    assert sink.bodies == [{"event": "rotated", "n": 1}]


def test_http_sink_failing_and_hanging() -> None:
    with peers.HTTPSink(status=503) as sink:
        with pytest.raises(urllib.error.HTTPError) as info:
            _post(sink.url(), {"a": 1})
        assert info.value.code == 503
        sink.status = 200
        assert _post(sink.url(), {"a": 2}) == 200
        assert [r.json for r in sink.wait_for(2)] == [{"a": 1}, {"a": 2}]
    with peers.HTTPSink(hang_seconds=60) as hanging:
        started = time.monotonic()
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            _post(hanging.url("/slow"), {"b": 1}, timeout=0.5)
        assert time.monotonic() - started < 5
        assert hanging.wait_for(1)[0].path == "/slow"
        started = time.monotonic()
    assert time.monotonic() - started < 5  # closing releases the hanging handler


# -- sd_notify ----------------------------------------------------------------------------------------------------


def test_notify_socket_collects_datagrams(tmp_path: Path) -> None:
    with peers.NotifySocket(tmp_path) as notify:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.sendto(b"STATUS=starting\nMAINPID=1\n", str(notify.path))
            client.sendto(b"READY=1", str(notify.path))
        assert notify.wait_for("READY=1", timeout=5) == "READY=1"
        assert notify.wait_for(lambda line: line.startswith("STATUS=")) == "STATUS=starting"
        assert notify.messages() == ["STATUS=starting", "MAINPID=1", "READY=1"]
        assert {d.pid for d in notify.datagrams()} == {os.getpid()}
        with pytest.raises(TimeoutError):
            notify.wait_for("STOPPING=1", timeout=0.1)


def test_notify_socket_from_a_child_process_via_env(tmp_path: Path) -> None:
    code = "import os, socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])"
    with peers.NotifySocket(tmp_path) as notify:
        child = subprocess.run([sys.executable, "-c", code], env={**os.environ, **notify.env}, timeout=30, check=True)
        assert child.returncode == 0
        notify.wait_for("READY=1")
        assert notify.datagrams()[0].pid not in (None, os.getpid())
        path = notify.path
    assert not path.exists()
