"""SIGTERM and SIGINT during a write.

While a writing command holds the state folder, the first SIGTERM or SIGINT (a
`systemctl stop`, Ctrl-C) does not kill it mid-transaction: it is noted, the
rotation stops at its next safe point (the secret in progress is finished or put
back, the next ones are not started), and the command then exits 128 + the
signal's number.  A second signal ends the process at once, as SIGKILL would
(the journal makes that safe too; the next writing command recovers).
The daemon, whose writes run in a worker thread, has its own handlers.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

_received: int | None = None


def received() -> int | None:
    """The signal a write deferred in this process, if any."""
    return _received


def requested(also: Callable[[], bool] | None = None) -> Callable[[], bool]:
    """A `should_stop` check: a deferred signal, or what `also` says."""
    return lambda: _received is not None or (also is not None and also())


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, defer SIGTERM and SIGINT as the module says (main thread
    only: elsewhere signals cannot be handled and the caller decides)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    watched = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in watched}

    def note(signum: int, frame: FrameType | None) -> None:
        global _received
        if _received is not None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        _received = signum
        sys.stderr.write(
            f"keyroll: {signal.Signals(signum).name} received: stopping at the next safe point"
            " (send it again to stop at once)\n"
        )

    for sig in watched:
        signal.signal(sig, note)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
