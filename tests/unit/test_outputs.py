"""keyroll.outputs: what may be repeated of a program's output."""

from __future__ import annotations

import re

import pytest

from keyroll.outputs import WITHHELD, contains_part, safe_excerpt

VALUE = "Q7pLm2Xv9RtK4wZc8NbY3hJd6FsG1aE5"


def test_the_first_non_empty_line_only() -> None:
    assert safe_excerpt(b"\n  \n  connection refused  \nmore detail\n", [VALUE]) == "connection refused"
    assert safe_excerpt(b"", [VALUE]) == "" and safe_excerpt("\n\n", [VALUE]) == ""


def test_eight_characters_of_a_value_anywhere_in_the_line_withhold_it() -> None:
    for start in range(len(VALUE) - 8 + 1):
        assert safe_excerpt(f"error: ...{VALUE[start : start + 8]}... refused", [VALUE]) == WITHHELD
    assert safe_excerpt(f"bad value {VALUE[1:]}", [VALUE]) == WITHHELD  # 31 of 32
    assert safe_excerpt(f"bad value {VALUE[:7]}", [VALUE]) == f"bad value {VALUE[:7]}"  # 7 in a row: allowed
    assert safe_excerpt(f"ok\n{VALUE}", [VALUE]) == "ok"  # (only the line shown is checked)


def test_short_values_match_whole_and_tiny_ones_not_at_all() -> None:
    assert contains_part("the pin 4711x is wrong", ["4711x"])
    assert not contains_part("a b c", ["a"])


def test_long_lines_are_cut_and_control_characters_replaced() -> None:
    shown = safe_excerpt("x\x1b[31m" + "y" * 500, [VALUE])
    assert len(shown) == 200 and "\x1b" not in shown and shown.endswith("...")


def test_a_large_value_is_checked_quickly() -> None:
    import time

    large = "ab" * 32768
    started = time.monotonic()
    assert safe_excerpt("z" * 10_000, [large, VALUE]) != WITHHELD
    assert time.monotonic() - started < 1


def test_what_is_held_stays_bounded_and_recent_values_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyroll import outputs

    # The process-wide memory of values: this test's 16,000 fillers must not push out what other tests hold.
    monkeypatch.setattr(outputs, "_held", dict(outputs._held))
    monkeypatch.setattr(outputs, "_held_chars", outputs._held_chars)
    mine = "R3centValueR3centValueR3centValu"
    outputs.hold(mine)
    for n in range(outputs.MAX_HELD + 10):
        outputs.hold(f"filler{n:08d}xx")
    assert len(outputs.held()) == outputs.MAX_HELD and mine not in outputs.held()
    outputs.hold(mine)
    assert outputs.held()[-1] == mine
    assert safe_excerpt(f"echo {mine[3:20]}") == WITHHELD


def test_a_password_read_from_a_file_is_withheld_from_program_output(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An admin password (or an http target's auth) read from a file is held like a
    stored value: a program that echoes it does not get it shown."""
    from keyroll.errors import ConfigError
    from keyroll.targets.base import read_credential_file

    secret = "F1leAdminPassw0rdF1leAdminPassw0"
    (tmp_path / "admin.pw").write_text(secret + "\n")
    key = "targets.db.admin_password_file"
    assert read_credential_file("admin.pw", tmp_path, {}, key) == secret
    assert safe_excerpt(f"login failed for password {secret[5:15]}") == WITHHELD
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: "):
        read_credential_file("missing.pw", tmp_path, {}, key)
