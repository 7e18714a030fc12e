"""Programs keyroll starts in a process group of their own: a Ctrl-C meant for
keyroll does not reach them (keyroll finishes or puts back the step they are part
of), and a timeout ends the whole group, not only its leader."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def end_group(pid: int, grace: float = 2.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left after `grace` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)
