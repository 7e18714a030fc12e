"""Notices through Apprise to real receivers: an SMTP server (aiosmtpd) and an HTTP
endpoint (json://); a dead or hanging notifier never changes keyroll's result."""

from __future__ import annotations

import json
import time

import pytest

import peers


@pytest.fixture
def smtp():  # type: ignore[no-untyped-def]
    with peers.SMTPSink() as sink:
        yield sink


@pytest.fixture
def http():  # type: ignore[no-untyped-def]
    with peers.HTTPSink() as sink:
        yield sink


def mail_url(smtp) -> str:  # type: ignore[no-untyped-def]
    return f"mailto://127.0.0.1:{smtp.port}?from=keyroll@example.com&to=ops@example.com&mode=insecure"


def json_url(http, path: str = "/keyroll") -> str:  # type: ignore[no-untyped-def]
    return http.url(path).replace("http://", "json://")


def configure(home, tmp_path, urls: list[str], on: list[str], *, down: bool, timeout: str = "5s") -> tuple[str, str]:  # type: ignore[no-untyped-def]
    flag = tmp_path / "down"
    if down:
        flag.touch()
    script = tmp_path / "svc"
    script.write_text(f"#!/bin/sh\ncat >/dev/null\n[ -e {flag} ] && {{ echo 'db is down' >&2; exit 75; }}\nexit 0\n")
    script.chmod(0o755)
    home.write_config(
        f"""
[defaults]
schedule = "1s"
unattended = true

[notify]
urls = {json.dumps(urls)}
on = {json.dumps(on)}
timeout = "{timeout}"

[targets.svc]
type = "command"
argv = ["{script}"]

[secrets.db_password]
target = "svc"
services = ["app"]

[secrets.app_key]
kind = "api_key"
services = ["app"]
"""
    )
    return ("--config", str(home.config))


def test_a_failure_reaches_mail_and_webhook_without_any_value(kr, home, values, smtp, http, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = configure(home, tmp_path, [mail_url(smtp), json_url(http)], ["failure", "success"], down=False)
    assert kr(*cfg, "init").code == 0
    (tmp_path / "down").touch()
    time.sleep(1.1)
    result = kr(*cfg, "run")
    assert result.code == 75, result.both
    smtp.wait_for(1, timeout=20)
    http.wait_for(1, timeout=20)
    mail = smtp.messages[0]
    body = http.bodies[0]
    assert "FAILED" in mail.subject and "1 failed" in mail.subject and "1 rotated" in mail.subject
    assert "db_password: failed" in mail.text and "db is down" in mail.text
    assert "app_key: rotated" in mail.text and "Backup taken first" in mail.text
    assert "\n- db_password: failed" in mail.text, "one line per secret, as plain text (not run together)"
    assert body["type"] == "failure" and "db_password: failed" in body["message"]
    everything = mail.raw.decode(errors="replace") + json.dumps(http.bodies)
    for name, value in values(home).items():
        assert value not in everything, f"{name}'s value was sent in a notice"
    assert "notice to json://127.0.0.1" in result.out and "sent" in result.out


def test_success_notices_only_when_asked(kr, home, http, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = configure(home, tmp_path, [json_url(http)], ["failure"], down=False)
    assert kr(*cfg, "init").code == 0
    time.sleep(1.1)
    assert kr(*cfg, "run").code == 0
    time.sleep(0.5)
    assert http.bodies == []  # all went well and only failures were asked for
    configure(home, tmp_path, [json_url(http)], ["success"], down=False)
    time.sleep(1.1)
    assert kr(*cfg, "run").code == 0
    http.wait_for(1, timeout=20)
    assert http.bodies[0]["type"] == "success" and "2 rotated" in http.bodies[0]["title"]


@pytest.mark.parametrize("problem", ["refusing", "closed", "hanging"])
def test_a_dead_notifier_never_changes_the_exit_code(kr, home, http, tmp_path, problem: str) -> None:  # type: ignore[no-untyped-def]
    url = json_url(http)
    if problem == "refusing":
        http.status = 500
    elif problem == "closed":
        url = f"json://127.0.0.1:{peers.free_port()}/x"
    else:
        http.hang_seconds = 30
    cfg = configure(home, tmp_path, [url], ["failure", "success"], down=False, timeout="2s")
    assert kr(*cfg, "init").code == 0
    time.sleep(1.1)
    started = time.monotonic()
    result = kr(*cfg, "run")
    assert result.code == 0, result.both
    assert time.monotonic() - started < 25, "a hanging notifier is bounded in time"
    assert "FAILED" in result.out and "warning" not in result.out
    assert "notice to json://127.0.0.1" in result.err and "failed" in result.err  # a warning in the log


def test_notify_test_reports_each_url(kr, home, smtp, http, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dead = f"json://127.0.0.1:{peers.free_port()}/x"
    cfg = configure(home, tmp_path, [mail_url(smtp), json_url(http), dead, "nonsense://what"], ["failure"], down=False)
    result = kr(*cfg, "notify", "test")
    assert result.code == 1
    assert f"mailto://127.0.0.1:{smtp.port}: sent" in result.out
    assert f"json://127.0.0.1:{http.port}: sent" in result.out
    assert "FAILED: the service refused or could not be reached" in result.out
    assert "nonsense URL #4 (" in result.out and "): FAILED: not a valid Apprise URL" in result.out
    assert smtp.wait_for(1, timeout=20) and "test notice" in smtp.messages[0].subject


def test_urls_from_a_systemd_credential_stay_out_of_the_config(kr, home, http, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    credentials = tmp_path / "creds"
    credentials.mkdir()
    token_url = json_url(http, "/hook/SECRET-TOKEN-123")
    (credentials / "notify-urls").write_text(f"# ops channel\n{token_url}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    home.write_config('[notify]\nurls_file = "credential:notify-urls"\n')
    result = kr("--config", str(home.config), "notify", "test")
    assert result.code == 0, result.both
    assert http.wait_for(1, timeout=20)
    assert http.requests[0].path == "/hook/SECRET-TOKEN-123"
    assert "SECRET-TOKEN-123" not in result.both  # URLs are shown redacted


def test_token_urls_are_never_shown_whole() -> None:
    from keyroll.notify import redact

    assert redact("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/1234", 1).startswith("tgram URL #1 (")
    assert "AAHdq" not in redact("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/1234", 1)
    assert redact("pover://user@apptoken123", 2) == redact("pover://user@apptoken123", 2) != "pover://apptoken123"
    assert redact("mailto://user:pass@smtp.example.com:587?to=ops@example.com", 3) == "mailto://smtp.example.com:587"
    assert redact("json://hooks.example.com/secret-path", 4) == "json://hooks.example.com"


def test_a_failed_cycle_is_reported_even_without_a_per_secret_outcome(kr, home, http, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The store cannot be read at all: no secret was rotated, and the failure is sent."""
    home.write_config(
        f"""
[store]
kind = "sops"
[notify]
urls = ["{json_url(http)}"]
[secrets.a_key]
kind = "api_key"
"""
    )
    result = kr("--config", str(home.config), "run")
    assert result.code in (1, 2), result.both
    http.wait_for(1, timeout=20)
    assert http.bodies[0]["type"] == "failure" and "keyroll run failed" in http.bodies[0]["title"]


def test_a_secret_never_initialized_is_a_failure_notice(kr, home, http, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = configure(home, tmp_path, [json_url(http)], ["failure"], down=False)
    assert kr(*cfg, "init").code == 0
    with home.config.open("a") as config:
        config.write('\n[secrets.added_later]\nkind = "password"\n')
    time.sleep(1.1)
    result = kr(*cfg, "run")
    assert result.code == 1 and "added_later" in result.both
    http.wait_for(1, timeout=20)
    assert http.bodies[0]["type"] == "failure" and "1 not initialized" in http.bodies[0]["title"]
    assert "added_later" in http.bodies[0]["message"] and "keyroll init" in http.bodies[0]["message"]
