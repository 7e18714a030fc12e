"""No secret value in any output: every command, --json and -v, success and failure."""

from __future__ import annotations

import json
from pathlib import Path


def test_no_command_ever_prints_a_value(kr, home, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    down = tmp_path / "down"
    service = tmp_path / "service"
    # A careless service that echoes what it reads on stderr, and fails while "down".
    service.write_text(f'#!/bin/sh\nread value\necho "got $value" >&2\n[ -e {down} ] && exit 75\nexit 0\n')
    service.chmod(0o755)
    home.write_config(
        f"""
[targets.svc]
type = "command"
argv = ["{service}"]
[secrets.app_password]
target = "svc"
[secrets.plain_key]
kind = "api_key"
"""
    )
    cfg = ("--config", str(home.config))
    outputs: list[str] = []
    seen: set[str] = set()

    def run(*argv: str, stdin: str | None = None) -> None:
        result = kr(*cfg, *argv, stdin=stdin)
        outputs.append(result.out + result.err)
        seen.update(values(home).values())

    run("-v", "init", "--json")
    for _ in range(2):
        run("-v", "rotate", "all")
        run("rotate", "all", "--json")
    run("set", "plain_key", stdin="x" * 10)  # refused: the message must not echo it
    seen.add("x" * 10)
    run("-v", "set", "app_password", stdin="S" * 32)
    run("status", "--json")
    run("status")
    run("validate", "--json")
    run("history", "--json")
    run("list-backups", "--json")
    run("-v", "backup", "--json")
    run("config", "show", "--json")
    backup = sorted(p for p in home.backups.iterdir() if p.name.startswith("secrets_"))[0]
    run("-v", "restore", backup.name, "--json")
    run("-v", "rollback", "plain_key", "--json")
    down.touch()
    run("-v", "rotate", "all", "--json")  # the target fails, the error is reported
    run("-v", "run", "--json")
    (home.secrets / "plain_key").write_text("tampered" * 8)
    seen.add("tampered" * 8)
    run("-v", "validate")
    run("-v", "status", "--json")
    everything = "\n".join(outputs)
    assert json.loads(kr(*cfg, "history", "--json").out)["data"]["entries"], "the commands did run"
    assert "(output withheld: it contained part of a secret)" in everything, "the service's echo was withheld"
    for value in seen:
        assert value not in everything, "a secret value was printed"


def test_config_output_never_shows_notification_tokens(kr, home) -> None:  # type: ignore[no-untyped-def]
    tokens = ("SuperTokenPass123", "BotToken987", "QueryToken555", "HealthPass42", "HealthQuery77")
    home.write_config(
        f"""
[notify]
urls = ["json://hooks:{tokens[0]}@chat.example.com/in", "tgram://{tokens[1]}/12345", "ntfy://ntfy.example.com/t?token={tokens[2]}"]
[secrets.app_key]
kind = "api_key"
health = ["http://probe:{tokens[3]}@127.0.0.1:9/health?token={tokens[4]}"]
health_timeout = "1s"
"""
    )
    cfg = ("--config", str(home.config))
    shown = kr(*cfg, "config", "show")
    as_json = kr(*cfg, "--json", "config", "show")
    validated = kr(*cfg, "config", "validate")
    assert shown.code == 0 and as_json.code == 0
    assert kr(*cfg, "init").code != 0  # the health check fails (nothing listens on port 9)
    plan = kr(*cfg, "rotate", "--dry-run", "app_key")
    failed = kr(*cfg, "-v", "rotate", "app_key")
    assert failed.code == 75 and "http://***@127.0.0.1:9/health?***" in failed.out
    later = [kr(*cfg, *argv) for argv in (("history", "--json"), ("status", "--json"))]
    everything = "\n".join(r.out + r.err for r in (shown, as_json, validated, plan, failed, *later))
    for token in tokens:
        assert token not in everything
    urls = json.loads(as_json.out)["data"]["notify"]["urls"]
    assert urls[0] == "json://chat.example.com" and urls[1].startswith("tgram URL #2")
    assert "http://***@127.0.0.1:9/health?***" in shown.out and "http://***@127.0.0.1:9/health?***" in plan.out
