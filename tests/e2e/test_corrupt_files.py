"""A secret file whose bytes are not a value (not UTF-8: a disk error, an editor
accident): rotate refuses to guess and says what repairs it; restore, set and
init --force replace it, and the backup they take first keeps its bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GARBAGE = b"\xff\xfe\x00garbage\x80"


def _corrupt(home) -> Path:  # type: ignore[no-untyped-def]
    path = home.secrets / "aidb_api_key"
    path.write_bytes(GARBAGE)
    return path


def test_rotate_refuses_a_corrupt_file_and_names_the_repair(kr, initialized) -> None:  # type: ignore[no-untyped-def]
    path = _corrupt(initialized)
    result = kr("rotate", "aidb_api_key")
    assert result.code == 1
    assert "not UTF-8" in result.out and "`keyroll restore` or `keyroll set aidb_api_key` replaces it" in result.out
    assert path.read_bytes() == GARBAGE


@pytest.mark.parametrize("how", ["restore", "set", "init --force"])
def test_restore_set_and_init_force_replace_a_corrupt_file(kr, initialized, values, how) -> None:  # type: ignore[no-untyped-def]
    good = kr("backup").out.strip()
    before = values(initialized)
    path = _corrupt(initialized)
    if how == "restore":
        result = kr("restore", good)
    elif how == "set":
        result = kr("set", "aidb_api_key", stdin="Q" * 64)
    else:
        result = kr("init", "--force")
    assert result.code == 0, result.both
    assert "replaced an unreadable file" in result.out
    value = path.read_text()
    if how == "restore":
        assert value == before["aidb_api_key"]
    elif how == "set":
        assert value == "Q" * 64
    assert len(value) == 64 and kr("validate").code == 0
    # The backup taken before the change holds the corrupt bytes, byte for byte.
    newest_first = json.loads(kr("list-backups", "--json").out)["data"]["backups"]
    taken_first = next(b for b in newest_first if b["path"] != good)
    assert (Path(taken_first["path"]) / "aidb_api_key").read_bytes() == GARBAGE


def test_a_symlink_in_place_of_a_secret_is_never_replaced(kr, initialized, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = kr("backup").out.strip()
    outside = tmp_path / "outside"
    outside.write_bytes(GARBAGE)
    link = initialized.secrets / "aidb_api_key"
    link.unlink()
    link.symlink_to(outside)
    for result in (kr("restore", good), kr("set", "aidb_api_key", stdin="Q" * 64)):
        assert result.code == 1 and "symlink" in result.out
    assert link.is_symlink() and outside.read_bytes() == GARBAGE


def test_a_secrets_folder_that_is_a_file_is_said_once(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.secrets.write_text("not a folder\n")
    status = kr("status")
    assert status.code == 1 and status.err.count("\n") == 1 and "exists and is not a folder" in status.err
    assert "`keyroll init` creates it" not in status.both  # init cannot, while this is so
    validated = kr("validate")
    assert validated.code == 1 and "the secrets folder exists and is not a folder" in validated.out
    assert kr("init").code == 1 and home.secrets.read_text() == "not a folder\n"


def test_a_damaged_journal_says_how_to_start_afresh_and_that_works(kr, initialized, values) -> None:  # type: ignore[no-untyped-def]
    before = values(initialized)
    journal = initialized.state / "journal.sqlite3"
    journal.write_bytes(b"this is not a database" * 100)
    for wal in initialized.state.glob("journal.sqlite3-*"):
        wal.unlink()
    for argv in (("status",), ("rotate", "all")):
        result = kr(*argv)
        assert result.code == 1 and result.err.count("\n") == 1
        assert "move journal.sqlite3 aside and run `keyroll init`" in result.err
    journal.rename(initialized.state / "journal.sqlite3.damaged")
    adopted = kr("init")
    assert adopted.code == 0, adopted.both
    assert values(initialized) == before  # adopted as they are
    assert kr("validate").code == 0 and kr("rotate", "all").code == 0
