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
    assert "got ***" in everything, "the service's echo of the value was masked"
    for value in seen:
        assert value not in everything, "a secret value was printed"
