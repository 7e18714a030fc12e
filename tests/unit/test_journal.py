"""The journal: durable, keyed fingerprints, pending values erased when a rotation ends."""

from __future__ import annotations

from pathlib import Path

from keyroll.journal import Completion, Journal
from keyroll.paths import Paths


def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "s", tmp_path / "b", tmp_path / "state")
    p.state_dir.mkdir(parents=True)
    return p


def test_sqlite_settings_are_the_durable_ones(tmp_path: Path) -> None:
    journal = Journal.open_write(paths(tmp_path))
    db = journal._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert (tmp_path / "state" / "journal.sqlite3").stat().st_mode & 0o077 == 0
    assert (tmp_path / "state" / "fingerprint.key").stat().st_mode & 0o077 == 0


def test_fingerprints_are_keyed_not_bare_hashes(tmp_path: Path) -> None:
    import hashlib

    one = Journal.open_write(paths(tmp_path / "one"))
    two = Journal.open_write(paths(tmp_path / "two"))
    value = "correct-horse-battery-staple-0000"
    assert one.fingerprint(value) == one.fingerprint(value)
    assert one.fingerprint(value) != two.fingerprint(value)
    assert one.fingerprint(value) != hashlib.sha256(value.encode()).hexdigest()


def test_pending_values_leave_no_trace_once_a_rotation_ends(tmp_path: Path) -> None:
    p = paths(tmp_path)
    journal = Journal.open_write(p)
    pending, old = "PendingValue" * 3, "OldValueOldValue" * 2
    journal.begin("tx1", [("a", "rotate", pending, old, None)])
    assert journal.inflight()["a"].pending == pending
    journal.complete("tx1", [Completion("a", "rotate", "rotated", kind="password", value=pending)])
    journal.close()
    for file in p.state_dir.iterdir():
        data = file.read_bytes()
        assert pending.encode() not in data, file
        assert old.encode() not in data, file
    reopened = Journal.open_read(p)
    assert reopened is not None
    assert reopened.inflight() == {}
    record = reopened.record("a")
    assert record is not None and record.version == 1 and record.fingerprint == reopened.fingerprint(pending)
    assert [h.outcome for h in reopened.history("a")] == ["rotated"]


def test_versions_and_previous_fingerprint(tmp_path: Path) -> None:
    journal = Journal.open_write(paths(tmp_path))
    journal.complete("t1", [Completion("a", "init", "created", kind="password", value="v1")])
    journal.complete("t2", [Completion("a", "rotate", "rotated", kind="password", value="v2")])
    record = journal.record("a")
    assert record is not None
    assert record.version == 2
    assert record.previous_fingerprint == journal.fingerprint("v1")
    journal.complete("t3", [Completion("a", "set", "adopted", kind="password", value="v2")])
    record = journal.record("a")
    assert record is not None and record.version == 2 and record.previous_fingerprint == journal.fingerprint("v1")


def test_read_only_journal_is_absent_before_first_write(tmp_path: Path) -> None:
    assert Journal.open_read(paths(tmp_path)) is None


def test_ending_one_transaction_never_ends_another_ones_rotation(tmp_path: Path) -> None:
    journal = Journal.open_write(paths(tmp_path))
    journal.begin("left-behind", [("a", "rotate", "P" * 32, "O" * 32, None)])
    journal.complete("other", [Completion("a", "set", "failed", "service down")])
    assert journal.inflight()["a"].pending == "P" * 32
    journal.begin("settling", [("a", "set", "S" * 32, "O" * 32, None)], replacing=["a"])
    assert journal.inflight()["a"].txid == "settling"
    assert [h.outcome for h in journal.history("a")][:2] == ["abandoned", "failed"]


def test_a_fingerprint_key_others_can_change_is_refused_once_checked_as_it_opens(tmp_path: Path) -> None:
    """The key is checked where it is opened (not twice): group/other-writable, the
    journal does not open, for writing or for reading; a running note of another
    program is no business of the journal."""
    import os

    import pytest

    from keyroll.errors import UnsafePath

    p = paths(tmp_path)
    Journal.open_write(p).close()
    (p.state_dir / "command-x.1.running").symlink_to("/etc/passwd")  # (checked by `validate` and rotations)
    assert Journal.open_read(p) is not None
    key = p.state_dir / "fingerprint.key"
    os.chmod(key, 0o666)
    for opening in (Journal.open_read, Journal.open_write):
        with pytest.raises(UnsafePath, match=r"fingerprint\.key"):
            opening(p)
