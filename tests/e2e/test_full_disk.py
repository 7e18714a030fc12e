"""A full disk under every folder keyroll writes (secrets, backups, the journal), at
several levels of free space: each command fails with a clear line or succeeds,
never with an unexpected error, and no value is lost (a real tmpfs, needs root)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests_helpers import fill_disk


@pytest.mark.parametrize("free_kib", [0, 4, 8, 16, 32, 64])
def test_a_full_disk_everywhere_fails_cleanly_and_loses_nothing(kr, home, tiny_fs: Path, monkeypatch, free_kib) -> None:  # type: ignore[no-untyped-def]
    root = tiny_fs / f"everything-{free_kib}"
    root.mkdir()
    folders = {
        "KEYROLL_SECRETS_DIR": root / "secrets",
        "KEYROLL_BACKUP_DIR": root / "backups",
        "KEYROLL_STATE_DIR": root / "state",
    }
    for variable, folder in folders.items():
        monkeypatch.setenv(variable, str(folder))
    filler = tiny_fs / "filler"
    try:
        assert kr("init").code == 0
        before = {p.name: p.read_text() for p in folders["KEYROLL_SECRETS_DIR"].iterdir()}
        fill_disk(filler)
        os.truncate(filler, max(filler.stat().st_size - free_kib * 1024, 0))
        for argv in (
            ("rotate", "all"),
            ("set", "aidb_api_key"),
            ("backup",),
            ("status",),
            ("validate",),
            ("list-backups",),
        ):
            result = kr(*argv, stdin="N" * 64 if argv[0] == "set" else None)
            assert "unexpected" not in result.both and "Traceback" not in result.both, (argv, result.both)
            assert result.code in (0, 1), (argv, result.both)
            assert result.code == 0 or len(result.err.strip().splitlines()) <= 1, (argv, result.err)
            assert result.code == 0 or "full" in result.both or "no space" in result.both, (argv, result.both)
        filler.unlink()
        recovered = kr("recover")
        assert recovered.code == 0, recovered.both
        checked = kr("validate")
        assert checked.code == 0, checked.both  # every file a valid value the journal knows
        after = {p.name: p.read_text() for p in folders["KEYROLL_SECRETS_DIR"].iterdir()}
        assert after.keys() == before.keys()
    finally:
        filler.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)
