"""Small helpers shared by several test modules."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

#: Set by the `home` fixture (tests/conftest.py): the path that keyroll, run as root (as CI runs), takes for its
#: default config file instead of /etc/keyroll/config.toml, which belongs to the machine and may exist there.
ROOT_CONFIG_ENV = "KEYROLL_TESTS_ROOT_CONFIG"

#: Python statements applying ROOT_CONFIG_ENV in a fresh interpreter, before keyroll reads its config.
USE_TEST_ROOT_CONFIG = (
    "import os as _os\n"
    f"if _os.environ.get({ROOT_CONFIG_ENV!r}):\n"
    "    import keyroll.paths as _paths\n"
    f"    _paths.ROOT_CONFIG_FILE = _paths.Path(_os.environ[{ROOT_CONFIG_ENV!r}])\n"
)


def keyroll_argv() -> list[str]:
    """`python -m keyroll` (runpy runs keyroll/__main__.py, as -m does), with USE_TEST_ROOT_CONFIG applied first."""
    run = "import runpy\nrunpy.run_module('keyroll', run_name='__main__', alter_sys=True)\n"
    return [sys.executable, "-c", USE_TEST_ROOT_CONFIG + run]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


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
