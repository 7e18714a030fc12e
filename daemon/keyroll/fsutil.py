"""Durable, symlink-safe file operations (the architecture's durability rules).

A file is replaced by writing a temp file in the same folder (`O_EXCL|O_NOFOLLOW`,
final mode set before any data), syncing it, renaming it over the old name and
syncing the folder.  Nothing is ever written through a symlink.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from keyroll import trust
from keyroll.errors import StoreError, UnsafePath
from keyroll.paths import TEMP_PREFIX

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from typing import Any

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
# Above this many files, one syncfs() of the filesystem is cheaper than an fsync each.
_SYNCFS_THRESHOLD = 8

_libc: Any = None


def describe_os_error(path: Path | str, exc: OSError) -> str:
    """One line saying what went wrong with `path`, in words a user acts on."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"{path}: no space left on the device (or file size limit reached)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{path}: permission denied"
    if exc.errno == errno.EROFS:
        return f"{path}: read-only file system"
    if exc.errno == errno.ELOOP:
        return f"{path}: is a symlink; keyroll never reads or writes through one"
    if exc.errno == errno.ENOTDIR:
        return f"{path}: a path component is not a folder"
    return f"{path}: {exc.strerror or exc}"


def ensure_dir(path: Path, mode: int = 0o700, enforce: bool = False, purpose: str = "folder") -> None:
    """Create `path` (and parents) with `mode`; refuse a symlink or a non-folder.
    With `enforce`, an existing folder with another mode is given `mode`.  A folder
    (or a parent) that anyone but root or the running user can change is refused
    before anything is created, and each missing one as it is made (UnsafePath, exit 2)."""
    trust.refuse(trust.check_folder(path, purpose))
    try:
        info = path.lstat()
    except FileNotFoundError:
        _make_dirs(path.absolute(), mode, purpose)  # (checks each folder it did not find, as it opens it)
        return
    except OSError as exc:
        raise StoreError(describe_os_error(path, exc)) from None
    if stat.S_ISLNK(info.st_mode):
        if not path.resolve().is_dir():
            raise StoreError(f"{path}: is a symlink to something that is not a folder")
    elif not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"{path}: exists and is not a folder")
    elif enforce and stat.S_IMODE(info.st_mode) != mode:
        try:
            os.chmod(path, mode)
        except OSError as exc:
            raise StoreError(describe_os_error(path, exc)) from None


def _make_dirs(path: Path, mode: int, purpose: str) -> None:
    """`mkdir -p` that never follows a symlink and never enters (or chmods) a folder
    someone else made in the part of `path` that was missing (under a shared sticky
    folder such as /tmp, another user may create it between the check and the mkdir):
    each missing folder is made and opened relative to its parent's descriptor."""
    missing: list[str] = []
    base = path
    while not os.path.lexists(base) and base != base.parent:
        missing.insert(0, base.name)
        base = base.parent
    fds: list[int] = []
    try:
        fds.append(os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))  # (checked: trusted)
        for index, name in enumerate(missing):
            made = base.joinpath(*missing[: index + 1])
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=fds[-1])
            try:
                fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=fds[-1]))
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                problem = f"{made} appeared while keyroll was creating it, as a symlink or a file"
                raise UnsafePath(
                    str(trust.Unsafe(made, purpose, problem, "remove it, or choose another place"))
                ) from None
            info = os.fstat(fds[-1])
            if trust.foreign(info, made):
                problem = f"{made} appeared while keyroll was creating it and is {trust.owner_text(info)}"
                raise UnsafePath(str(trust.Unsafe(made, purpose, problem, "remove it, or choose another place")))
        os.fchmod(fds[-1], mode)
    except OSError as exc:
        raise StoreError(describe_os_error(path, exc)) from None
    finally:
        for fd in fds:
            os.close(fd)


@contextmanager
def open_dir(path: Path) -> Iterator[int]:
    """A read-only descriptor for the folder `path`, closed on exit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StoreError(describe_os_error(path, exc)) from None
    try:
        yield fd
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make renames and creations inside `path` durable."""
    with open_dir(path) as fd:
        os.fsync(fd)


def read_at_most(fd: int, limit: int) -> bytes:
    """Bytes from `fd` until end of file or `limit` bytes, whichever comes first (a
    larger input is never read whole)."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        try:
            chunk = os.read(fd, min(left, 65536))
        except InterruptedError:  # (PEP 475 retries; kept for clarity)
            continue
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_bytes(directory: Path, name: str, dir_fd: int | None = None, limit: int | None = None) -> bytes | None:
    """The content of `directory/name`, None if absent; StoreError for a symlink or non-file,
    or (with `limit`) for a file larger than `limit` bytes, of which no more is read."""
    path = directory / name
    try:
        fd = os.open(name if dir_fd is not None else path, os.O_RDONLY | _NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(describe_os_error(path, exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{path}: is not a regular file")
        if limit is not None and info.st_size > limit:
            raise StoreError(f"{path}: {info.st_size} bytes, more than a value may hold (64 KiB)")
        data = read_at_most(fd, limit + 1 if limit is not None else sys.maxsize)
        if limit is not None and len(data) > limit:  # (it grew since the fstat)
            raise StoreError(f"{path}: more than a value may hold (64 KiB)")
        return data
    except OSError as exc:
        raise StoreError(describe_os_error(path, exc)) from None
    finally:
        os.close(fd)


def _libc_syncfs() -> Any:
    """libc's syncfs(2), or None where it is unavailable."""
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        return _libc.syncfs
    except (OSError, AttributeError):
        return None


def temp_name(final_name: str) -> str:
    """A fresh temp-file name for `final_name`; recovery recognises and removes it."""
    import secrets

    return f"{TEMP_PREFIX}{final_name}.{secrets.token_hex(6)}"


def _refuse_non_files(directory: Path, dir_fd: int, names: Iterable[str]) -> None:
    """StoreError if a name is taken by a symlink or anything but a regular file."""
    for name in names:
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(describe_os_error(directory / name, exc)) from None
        if stat.S_ISLNK(info.st_mode):
            raise StoreError(f"{directory / name}: is a symlink; keyroll never writes through one")
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{directory / name}: is not a regular file")


def _create_durably(
    directory: Path,
    dir_fd: int,
    files: Mapping[str, bytes],
    on_disk: Mapping[str, str],
    mode: Mapping[str, int] | int,
    owner: Mapping[str, tuple[int, int]] | None,
) -> None:
    """Create each file as `on_disk[name]` (O_EXCL, mode set before the data) and make
    the data durable: one syncfs for a large batch, else an fsync per file.  No file
    descriptor stays open beyond its own write.  On failure the created files are
    removed and StoreError says which file and why."""
    syncfs = _libc_syncfs() if len(files) > _SYNCFS_THRESHOLD else None
    created: list[str] = []
    current = next(iter(files))
    try:
        for name, data in files.items():
            current = name
            fd = os.open(on_disk[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=dir_fd)
            created.append(on_disk[name])
            try:
                uid, gid = owner.get(name, (-1, -1)) if owner else (-1, -1)
                if (uid, gid) != (-1, -1):
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, mode if isinstance(mode, int) else mode.get(name, 0o600))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if syncfs is None:
                    os.fsync(fd)
            finally:
                os.close(fd)
        if syncfs is not None and syncfs(dir_fd) != 0:
            raise OSError(ctypes_errno(), "syncfs failed")
    except OSError as exc:
        for leftover in created:
            with contextlib.suppress(OSError):
                os.unlink(leftover, dir_fd=dir_fd)
        raise StoreError(describe_os_error(directory / current, exc) + "; nothing was changed") from None


def ctypes_errno() -> int:
    import ctypes

    return ctypes.get_errno()


def write_files_atomically(
    directory: Path,
    files: Mapping[str, bytes],
    mode: Mapping[str, int] | int = 0o600,
    owner: Mapping[str, tuple[int, int]] | None = None,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Replace each `directory/name` with its bytes, all or (per file) nothing.

    Writes every temp file and makes them durable, then renames each over its
    final name and syncs the folder.  A failure before the renames removes the
    temp files and leaves every old file untouched.  A symlink in place of a
    final name is refused before anything is written.  `before_rename` runs
    between the sync and the first rename (a failpoint hook).
    """
    if not files:
        return
    with open_dir(directory) as dir_fd:
        _refuse_non_files(directory, dir_fd, files)
        temps = {name: temp_name(name) for name in files}
        _create_durably(directory, dir_fd, files, temps, mode, owner)
        if before_rename is not None:
            before_rename()
        try:
            for name, tmp in temps.items():
                os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
        except OSError as exc:
            raise StoreError(describe_os_error(directory, exc)) from None


def write_new_files(directory: Path, files: Mapping[str, bytes], mode: int = 0o600) -> None:
    """Create files in a new, private folder (nothing to replace, so no temp names),
    durably, folder entries included."""
    with open_dir(directory) as dir_fd:
        _create_durably(directory, dir_fd, files, {name: name for name in files}, mode, None)
        try:
            os.fsync(dir_fd)
        except OSError as exc:
            raise StoreError(describe_os_error(directory, exc)) from None


MEMORY_FILESYSTEMS = ("tmpfs", "ramfs")


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding `path` (or its nearest existing parent),
    from /proc/self/mounts; None where that cannot be told."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    place = path.absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    place = place.resolve()
    best, kind = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = str(place) == point or str(place).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def remove_temp_files(directory: Path, *, warn_only: bool = False) -> list[str]:
    """Delete the temp files and folders a killed keyroll left in `directory`; return
    their names.  One that cannot be deleted is a StoreError, or with `warn_only` a
    warning (it is tried again next time)."""
    import shutil

    removed: list[str] = []
    try:
        names = [n for n in os.listdir(directory) if n.startswith(TEMP_PREFIX)]
    except FileNotFoundError:
        return removed
    except OSError as exc:
        raise StoreError(describe_os_error(directory, exc)) from None
    for name in names:
        path = directory / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            if not warn_only:
                raise StoreError(describe_os_error(path, exc)) from None
            import logging

            logging.getLogger("keyroll").warning("could not remove the leftover %s", describe_os_error(path, exc))
            continue
        removed.append(name)
    if removed:
        fsync_dir(directory)
    return removed
