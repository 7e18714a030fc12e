"""SIGTERM and SIGINT during a write.

While a writing command holds the state folder, the first SIGTERM or SIGINT (a
`systemctl stop`, Ctrl-C) does not kill it mid-transaction: it is noted, the
rotation stops at its next safe point (the secret in progress is finished or put
back, the next ones are not started and count as temporary failures, 75), and
the command then ends.  A second signal ends the process at once, as SIGKILL
would (the journal makes that safe too; the next writing command recovers).
Signals a program handles itself (the daemon) are left to it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

_received: int | None = None
_DEFAULTS = (signal.SIG_DFL, signal.default_int_handler, None)


def received() -> int | None:
    """The signal a write deferred in this process, if any."""
    return _received


def requested(also: Callable[[], bool] | None = None) -> Callable[[], bool]:
    """A `should_stop` check: a deferred signal, or what `also` says."""
    return lambda: _received is not None or (also is not None and also())


def _note(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is not None:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _received = signum
    # (os.write: a handler must not re-enter a buffered stream the code it interrupted was writing)
    os.write(
        2,
        f"keyroll: {signal.Signals(signum).name} received: stopping at the next safe point"
        " (send it again to stop at once)\n".encode(),
    )


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, defer SIGTERM and SIGINT as the module says: only where
    their handlers are the defaults, and only in the main thread (elsewhere signals
    cannot be handled, and the caller decides)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        sig: handler for sig in (signal.SIGTERM, signal.SIGINT) if (handler := signal.getsignal(sig)) in _DEFAULTS
    }
    for sig in previous:
        signal.signal(sig, _note)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
