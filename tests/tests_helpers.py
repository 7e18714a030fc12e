"""Small helpers shared by several test modules."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def fill_disk(path: Path) -> None:
    """Write to `path` until its filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
