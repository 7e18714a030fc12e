"""`keyroll run`: rotate what is due now, remind about the rest, then exit (timer mode)."""

from __future__ import annotations

import json
import time

import pytest


def history(kr, cfg) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return json.loads(kr(*cfg, "history", "--json").out)["data"]["entries"]


CONFIG = """
[defaults]
schedule = "{schedule}"
reminder = "30d"

[secrets.auto_key]
kind = "api_key"
unattended = true

[secrets.manual_key]
kind = "api_key"
services = ["legacy-app"]
"""


def test_nothing_due_then_due(kr, home, values) -> None:  # type: ignore[no-untyped-def]
    cfg = ("--config", str(home.write_config(CONFIG.format(schedule="2s"))))
    assert kr(*cfg, "init").code == 0
    quiet = kr(*cfg, "run")
    assert quiet.code == 0 and "nothing is due" in quiet.out
    assert "next: auto_key at" in quiet.out and "next to rotate by hand: manual_key, due" in quiet.out
    # Due within its reminder period (30d): a reminder, once a day, kept in the journal.
    assert "reminder: manual_key due" in quiet.out and "`keyroll rotate manual_key`" in quiet.out
    before = values(home)
    time.sleep(2.1)
    result = kr(*cfg, "run")
    assert result.code == 0, result.both
    after = values(home)
    assert after["auto_key"] != before["auto_key"], "unattended and due: rotated"
    assert after["manual_key"] == before["manual_key"], "not unattended: only a reminder"
    assert "auto_key: rotated in the store only" in result.out
    assert "reminder: manual_key" not in result.out, "reminded already today"
    again = kr(*cfg, "run")
    assert again.code == 0 and "nothing is due" in again.out  # never twice


def test_run_reports_json(kr, home) -> None:  # type: ignore[no-untyped-def]
    cfg = ("--config", str(home.write_config(CONFIG.format(schedule="90d"))))
    assert kr(*cfg, "init").code == 0
    envelope = json.loads(kr(*cfg, "run", "--json").out)
    assert envelope["command"] == "run" and envelope["exit_code"] == 0
    assert envelope["data"]["cycle"]["next_name"] == "auto_key"
    assert envelope["data"]["cycle"]["rotation"] is None


def test_failures_exit_75_and_back_off(kr, home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    down = tmp_path / "service-down"
    script = tmp_path / "svc"
    script.write_text(f"#!/bin/sh\ncat >/dev/null\n[ -e {down} ] && exit 75\nexit 0\n")
    script.chmod(0o755)
    cfg = (
        "--config",
        str(
            home.write_config(
                f"""
[defaults]
schedule = "1s"
[daemon]
retry_min = "1h"
[targets.svc]
type = "command"
argv = ["{script}"]
[secrets.svc_password]
target = "svc"
"""
            )
        ),
    )
    assert kr(*cfg, "init").code == 0
    down.touch()
    time.sleep(1.1)
    failed = kr(*cfg, "run")
    assert failed.code == 75, failed.both
    attempts = len(history(kr, cfg))
    time.sleep(1.1)
    retried = kr(*cfg, "run")
    assert retried.code == 0 and "nothing is due" in retried.out  # backing off for retry_min
    assert len(history(kr, cfg)) == attempts


def test_windows_defer_scheduled_rotations(kr, home, values) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    closed = (datetime.now(UTC) + timedelta(hours=3)).strftime("%H:00")
    closes = (datetime.now(UTC) + timedelta(hours=4)).strftime("%H:00")
    text = (
        CONFIG.format(schedule="1s")
        + f'\n[secrets.windowed_key]\nkind = "api_key"\nunattended = true\nwindow = "{closed}-{closes}"\n'
    )
    cfg = ("--config", str(home.write_config(text)))
    assert kr(*cfg, "init").code == 0
    before = values(home)
    time.sleep(1.1)
    assert kr(*cfg, "run").code == 0
    after = values(home)
    assert after["windowed_key"] == before["windowed_key"] and after["auto_key"] != before["auto_key"]
    manual = kr(*cfg, "rotate", "windowed_key")
    assert manual.code == 75 and "outside its window" in manual.out and "--emergency" in manual.out
    assert kr(*cfg, "rotate", "windowed_key", "--emergency").code == 0


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("[secrets.x]", "schedule"),
        ("[secrets.x]", "reminder"),
        ("[secrets.x]", "jitter"),
        ("[daemon]", "retry_max"),
        ("[targets.r]\ntype = 'redis'", "grace"),
        ("[targets.r]\ntype = 'redis'", "connect_timeout"),
    ],
)
def test_an_absurdly_long_duration_is_a_config_error_naming_its_key(kr, home, section, key) -> None:  # type: ignore[no-untyped-def]
    home.write_config(f'{section}\n{key} = "9999999d"\n')
    cfg = ("--config", str(home.config))
    for argv in (("config", "validate"), ("status",), ("run",)):
        result = kr(*cfg, *argv)
        assert result.code == 2, (argv, result.both)
        assert f".{key}" in result.err and "longer than 100 years" in result.err and result.err.count("\n") == 1
