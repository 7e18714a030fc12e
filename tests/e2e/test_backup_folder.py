"""What else may sit in the backup folder: entries under a backup's name that are not
keyroll backups (a symlink, a file, a folder without a manifest), and a backup that
retention was deleting when keyroll was killed.  None of them may stop a write."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyroll.paths import TEMP_PREFIX


def _real_backups(home) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(
        p.name
        for p in home.backups.iterdir()
        if p.name.startswith("secrets_") and p.is_dir() and not p.is_symlink() and (p / "manifest.json").exists()
    )


@pytest.fixture
def strays(kr, initialized, tmp_path):  # type: ignore[no-untyped-def]
    """Three old-named entries that are not keyroll's backups, and a real one elsewhere."""
    elsewhere = tmp_path / "elsewhere"
    made = Path(kr("backup").out.strip())
    shutil.copytree(made, elsewhere)
    (initialized.backups / "secrets_20000101_000000").symlink_to(elsewhere)
    (initialized.backups / "secrets_20000101_000001").write_text("a note someone left\n")
    (initialized.backups / "secrets_20000101_000002").mkdir()
    (initialized.backups / "secrets_20000101_000002" / "keep-me").write_text("not keyroll's\n")
    return elsewhere


def test_stray_entries_never_stop_a_write_and_are_left_alone(kr, initialized, strays, values) -> None:  # type: ignore[no-untyped-def]
    initialized.write_config("[backup]\nkeep = 2\n")
    cfg = ("--config", str(initialized.config))
    for _ in range(3):
        assert kr(*cfg, "backup").code == 0
        rotated = kr(*cfg, "rotate", "aidb_api_key")
        assert rotated.code == 0, rotated.both
    assert len(_real_backups(initialized)) == 2  # retention still applies to keyroll's own
    assert (initialized.backups / "secrets_20000101_000000").is_symlink()
    assert (strays / "manifest.json").exists()  # never deleted through the symlink
    assert (initialized.backups / "secrets_20000101_000001").read_text() == "a note someone left\n"
    assert (initialized.backups / "secrets_20000101_000002" / "keep-me").exists()


def test_a_symlinked_backup_is_listed_as_not_verified_and_not_restored(kr, initialized, strays, values) -> None:  # type: ignore[no-untyped-def]
    listing = kr("list-backups", "--json")
    assert listing.code == 1  # the folder holds something that is not a good backup
    by_name = {b["name"]: b for b in json.loads(listing.out)["data"]["backups"]}
    assert by_name["secrets_20000101_000000"]["verified"] is False
    assert "symlink" in by_name["secrets_20000101_000000"]["problem"]
    before = values(initialized)
    refused = kr("restore", "secrets_20000101_000000")
    assert refused.code == 1 and "symlink" in refused.err and refused.err.count("\n") == 1
    assert values(initialized) == before


def test_a_backup_that_cannot_be_deleted_is_a_warning_not_a_failure(kr, initialized, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    # Mock: as root (CI) no permission stops rmtree; a failing rmtree stands in for a
    # read-only or busy filesystem.
    initialized.write_config("[backup]\nkeep = 1\n")
    cfg = ("--config", str(initialized.config))
    assert kr(*cfg, "backup").code == 0

    def failing_rmtree(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", failing_rmtree)
    for _ in range(2):  # the second also meets the leftover it cannot remove
        result = kr(*cfg, "rotate", "aidb_api_key")
        assert result.code == 0, result.both
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("could not delete backup" in w for w in warnings)
    assert any("could not remove the leftover" in w for w in warnings)


def test_a_kill_during_retention_leaves_no_half_deleted_backup(kr, initialized, krp) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL a real `keyroll backup` as soon as retention starts deleting an old backup."""
    initialized.write_config("[backup]\nkeep = 1\n")
    cfg = ("--config", str(initialized.config))
    old = Path(kr(*cfg, "backup").out.strip())
    for index in range(20000):  # so that deleting it takes a while
        (old / f"extra_{index}").write_bytes(b"x")
    whole = len(os.listdir(old))

    def deleting() -> bool:
        try:
            return len(os.listdir(old)) < whole
        except FileNotFoundError:
            return True

    process = subprocess.Popen(
        [sys.executable, "-m", "keyroll", *cfg, "backup"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while not deleting():
        assert time.monotonic() < deadline and process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not old.exists(), "a backup is whole or gone, never half-deleted under its name"
    # The next writing command clears what the kill left; every backup then verifies.
    assert krp(*cfg, "backup").code == 0
    assert not [name for name in os.listdir(initialized.backups) if name.startswith(TEMP_PREFIX)]
    assert kr(*cfg, "list-backups").code == 0
