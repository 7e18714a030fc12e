"""flock-based locks: one writer at a time, one daemon per state folder."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from keyroll.errors import LockHeld, StoreError
from keyroll.fsutil import describe_os_error, ensure_dir
from keyroll.trust import open_state_file


class FileLock:
    """An exclusive flock on `path`, held from `acquire` to `release` (or process death)."""

    def __init__(self, path: Path, purpose: str) -> None:
        self.path = path
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> FileLock:
        """Take the lock, polling up to `wait` seconds; LockHeld (exit 3) if another has it."""
        ensure_dir(self.path.parent, purpose="state folder")
        try:  # (a lock file of another user is refused, exit 2: it could be held forever)
            fd = open_state_file(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(describe_os_error(self.path, exc)) from None
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder(fd)
                    os.close(fd)
                    hint = "" if wait or self.purpose == "daemon" else "; retry, or pass --wait SECONDS"
                    raise LockHeld(f"another keyroll{holder} holds the {self.purpose} lock {self.path}{hint}") from None
                time.sleep(min(0.1, max(deadline - time.monotonic(), 0.01)))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            pid = os.pread(fd, 32, 0).decode().strip()
        except (OSError, UnicodeDecodeError):
            return ""
        return f" (pid {pid})" if pid.isdigit() else ""

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
