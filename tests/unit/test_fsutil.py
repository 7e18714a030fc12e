"""Durable writes: temp file, mode before data, fsync, rename; never through a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keyroll.errors import StoreError
from keyroll.fsutil import read_bytes, remove_temp_files, write_files_atomically
from keyroll.paths import TEMP_PREFIX
from tests_helpers import fill_disk


def test_writes_replace_files_atomically_with_their_mode(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("old")
    inode = (tmp_path / "a").stat().st_ino
    write_files_atomically(tmp_path, {"a": b"new-a", "b": b"new-b"}, mode={"a": 0o600, "b": 0o640})
    assert (tmp_path / "a").read_bytes() == b"new-a"
    assert (tmp_path / "a").stat().st_ino != inode  # a new file was renamed in, not rewritten in place
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_a_symlink_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("precious")
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "a").symlink_to(outside)
    with pytest.raises(StoreError, match="is a symlink"):
        write_files_atomically(folder, {"a": b"new", "b": b"new"})
    assert outside.read_text() == "precious"
    assert (folder / "a").is_symlink()
    assert os.listdir(folder) == ["a"]  # nothing else was written either
    with pytest.raises(StoreError, match="symlink"):
        read_bytes(folder, "a")


def test_a_full_disk_changes_nothing_and_leaves_no_temp_file(tiny_fs: Path) -> None:
    folder = tiny_fs / "full"
    folder.mkdir(exist_ok=True)
    (folder / "a").write_bytes(b"old value")
    filler = tiny_fs / "filler"
    fill_disk(filler)
    try:
        with pytest.raises(StoreError) as info:
            write_files_atomically(folder, {"a": b"n" * 8192, "b": b"n" * 8192})
        assert "no space left" in str(info.value) and "nothing was changed" in str(info.value)
        assert (folder / "a").read_bytes() == b"old value"
        assert os.listdir(folder) == ["a"]
    finally:
        filler.unlink()


def test_remove_temp_files(tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("x")
    (tmp_path / f"{TEMP_PREFIX}keep.abc").write_text("half")
    (tmp_path / f"{TEMP_PREFIX}backup.dir").mkdir()
    (tmp_path / f"{TEMP_PREFIX}backup.dir" / "f").write_text("x")
    assert sorted(remove_temp_files(tmp_path)) == [f"{TEMP_PREFIX}backup.dir", f"{TEMP_PREFIX}keep.abc"]
    assert os.listdir(tmp_path) == ["keep"]


def test_many_files_under_a_small_open_file_limit(tmp_path: Path) -> None:
    """2,000 secrets with RLIMIT_NOFILE at 128: no descriptor stays open beyond its write."""
    import subprocess
    import sys

    script = (
        "import resource, sys; from pathlib import Path\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))\n"
        "from keyroll.fsutil import write_files_atomically, write_new_files\n"
        "d = Path(sys.argv[1])\n"
        "write_files_atomically(d, {f's{i}': b'x' * 32 for i in range(2000)})\n"
        "(d / 'new').mkdir(); write_new_files(d / 'new', {f's{i}': b'y' for i in range(2000)})\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("s*"))) == 2000 and len(list((tmp_path / "new").iterdir())) == 2000
