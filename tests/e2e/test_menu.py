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


def test_each_writing_choice_rewrites_the_metrics_file_when_it_ends(initialized, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The menu runs its choices as the commands do: `[metrics] textfile` says `rotate`
    as soon as the rotation ends, not `menu` once the menu is left."""
    from prometheus_client.parser import text_string_to_metric_families

    textfile = tmp_path / "keyroll.prom"
    initialized.write_config(f'[metrics]\ntextfile = "{textfile}"\n')
    monkeypatch.setenv("KEYROLL_CONFIG", str(initialized.config))

    def last_run() -> dict[str, float]:
        found = {}
        for family in text_string_to_metric_families(textfile.read_text()):
            for sample in family.samples:
                if sample.name == "keyroll_last_run_info":
                    found[sample.labels["command"]] = sample.value
                elif sample.name in ("keyroll_last_run_exit_code", "keyroll_last_run_secrets"):
                    found[sample.name + sample.labels.get("result", "")] = sample.value
        return found

    terminal = Terminal(keyroll_argv())

    def choose(keys: str, then: str) -> None:
        """Type `keys`, then wait for `then` and the next menu prompt (the choice has ended)."""
        mark = len(terminal.screen)
        terminal.type(keys)
        deadline = time.monotonic() + 20
        while not re.search(then + r"[\s\S]*Choose", re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", terminal.screen[mark:])):
            assert time.monotonic() < deadline, terminal.screen[mark:]
            terminal._read(0.1)

    terminal.expect(r"Choose")
    terminal.type("2\r")  # rotate one
    terminal.expect(r"Secret")
    terminal.type("redis_password\r")
    terminal.expect(r"Rotate redis_password now\?")
    choose("y\r", r"rotate: 1 done")
    assert last_run() == {
        "rotate": 1,
        "keyroll_last_run_exit_code": 0,
        "keyroll_last_run_secretssuccess": 1,
        "keyroll_last_run_secretsfailure": 0,
        "keyroll_last_run_secretstemporary_failure": 0,
    }
    choose("4\r", r"secrets_\d{8}_\d{6}")  # back up now
    assert last_run()["backup"] == 1
    written = textfile.stat().st_mtime_ns
    choose("6\r", r"postgres_password")  # status: a read, nothing written
    terminal.type("\x04")
    assert terminal.wait() == 0
    assert textfile.stat().st_mtime_ns == written and "menu" not in last_run()
