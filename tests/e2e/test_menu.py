"""The interactive menu on a real pseudo-terminal: a bare `keyroll` opens it."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import time

from tests_helpers import keyroll_argv


class Terminal:
    """keyroll on a pseudo-terminal, driven like a person would."""

    def __init__(self, argv: list[str], columns: int = 120) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.environ.update(TERM="xterm", COLUMNS=str(columns), LINES="40")
            os.execv(argv[0], argv)
        self.screen = ""

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if ready:
            with contextlib.suppress(OSError):  # the child closed the terminal
                self.screen += os.read(self.fd, 65536).decode(errors="replace")

    def expect(self, pattern: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", self.screen)):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{pattern!r} never appeared; screen:\n{self.screen[-2000:]}"
            self._read(remaining)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            self._read(0.05)
        raise AssertionError("keyroll did not exit")


def test_a_bare_keyroll_on_a_terminal_opens_the_menu(initialized, values) -> None:  # type: ignore[no-untyped-def]
    before = values(initialized)
    terminal = Terminal(keyroll_argv())
    terminal.expect(r"Rotate one secret")
    terminal.expect(r"Choose")
    terminal.type("6\r")  # status
    terminal.expect(r"postgres_password")
    terminal.expect(r"Choose")
    terminal.type("2\r")  # rotate one
    terminal.expect(r"Secret")
    terminal.type("redis_password\r")
    terminal.expect(r"Rotate redis_password now\?")
    terminal.type("y\r")
    terminal.expect(r"redis_password: rotated")
    terminal.expect(r"Choose")
    terminal.type("0\r")
    assert terminal.wait() == 0
    after = values(initialized)
    assert after["redis_password"] != before["redis_password"]
    assert {n for n in before if after[n] != before[n]} == {"redis_password"}
    assert after["redis_password"] not in terminal.screen


def test_ctrl_d_leaves_the_menu_cleanly(initialized, values) -> None:  # type: ignore[no-untyped-def]
    before = values(initialized)
    terminal = Terminal(keyroll_argv())
    terminal.expect(r"Choose")
    terminal.type("2\r")  # rotate one
    terminal.expect(r"Secret")
    terminal.type("redis_password\r")
    terminal.expect(r"Rotate redis_password now\?")
    terminal.type("\x04")  # Ctrl-D at the confirmation: nothing rotates
    assert terminal.wait() == 0
    assert "error" not in terminal.screen
    assert values(initialized) == before


def test_a_narrow_terminal_never_cuts_a_backup_name(initialized) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    subprocess.run([*keyroll_argv(), "backup"], check=True, capture_output=True)
    terminal = Terminal([*keyroll_argv(), "list-backups"], columns=60)
    assert terminal.wait() == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", terminal.screen)
    assert re.search(r"secrets_\d{8}_\d{6}", screen), screen
    assert "…" not in screen
