"""A program that applies the value itself (Grafana's admin password, an API's key).

The program gets the phase in $KEYROLL_PHASE (apply, verify, rollback), the
secret's name in $KEYROLL_SECRET and the target's in $KEYROLL_TARGET; the value
comes on stdin, never in argv: exactly the value of this phase and one newline.
Only a target with `old_value = true` also gets, on line 2 in apply and rollback,
the value being replaced (when there is one).  Its environment is minimal
(keyroll.hardening) and its output is never repeated as such (keyroll.outputs).
Exit 0 is success, 75 a temporary failure (service down), anything else a refusal.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from keyroll.errors import EXIT_TEMPFAIL, ServiceUnavailable, TargetError, UnsafePath
from keyroll.hardening import PROGRAM_CWD, parse_env_entries, program_env
from keyroll.outputs import hold, safe_excerpt
from keyroll.processes import end_group
from keyroll.schedule import parse_duration
from keyroll.targets.base import BaseTarget, Credentials
from keyroll.trust import open_state_file, runnable_program

if TYPE_CHECKING:
    from keyroll.config.schema import CommandTarget as CommandConfig
    from keyroll.paths import Paths


class CommandTarget(BaseTarget):
    """Runs the configured program for each phase of the rotation.

    The program runs in a process group of its own, recorded (pid and start time)
    in the state folder while it runs: if keyroll is killed meanwhile, the next
    recovery ends that group before asking the service which value it takes, so
    a straggling `apply` cannot land after recovery has decided."""

    def __init__(
        self,
        name: str,
        config: CommandConfig,
        credentials: Credentials,
        secret: str,
        env: Mapping[str, str],
        paths: Paths,
    ) -> None:
        super().__init__(name, credentials, secret)
        self.needs_old = False  # the program does not log in with the old value
        self.config = config
        self.env = env
        self.timeout = parse_duration(config.timeout).total_seconds() or 30.0
        self.paths = paths
        self.running_file = paths.running_command(name, os.getpid())

    def describe(self) -> str:
        return f"command {self.config.argv[0]} (target {self.name})"

    def _run(self, phase: str, value: str, other: str | None = None) -> int:
        hold(value, other)
        stdin = value + "\n" + (other + "\n" if other is not None and self.config.old_value else "")
        env = program_env(
            self.env,
            parse_env_entries(self.config.env),
            {"KEYROLL_PHASE": phase, "KEYROLL_SECRET": self.secret, "KEYROLL_TARGET": self.name},
        )
        self.wait_idle(5.0)  # a program a killed keyroll left running must not race this one
        try:
            process = subprocess.Popen(
                list(self.config.argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                cwd=PROGRAM_CWD,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise TargetError(f"{self.describe()}: not found") from None
        except PermissionError:
            raise TargetError(f"{self.describe()}: not executable") from None
        self._remember(process.pid)
        try:
            _, stderr = process.communicate(stdin.encode(), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            end_group(process.pid)
            process.wait()
            raise ServiceUnavailable(f"{self.describe()}: {phase} timed out after {self.timeout:g}s") from None
        finally:
            self.running_file.unlink(missing_ok=True)
        if process.returncode == 0:
            return 0
        excerpt = safe_excerpt(stderr, (value, other or ""))  # a careless program may echo what it read
        reason = f"exit status {process.returncode}" + (f": {excerpt}" if excerpt else "")
        if process.returncode == EXIT_TEMPFAIL:
            raise ServiceUnavailable(f"{self.describe()}: {phase}: {reason}")
        if phase == "verify":
            return process.returncode
        raise TargetError(f"{self.describe()}: {phase} failed: {reason}")

    def _remember(self, pid: int) -> None:
        """Write down the running program and this keyroll (pids and kernel start
        times, which tell a reused pid apart) for a later recovery."""
        me = os.getpid()
        with contextlib.suppress(OSError, UnsafePath):
            fd = open_state_file(self.running_file, os.O_WRONLY | os.O_CREAT)  # (its owner checked first)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{pid} {_start_time(pid)} {me} {_start_time(me)}\n".encode())
            finally:
                os.close(fd)

    def wait_idle(self, timeout: float) -> None:
        """End every program a killed keyroll left running for this target (its whole
        process group).  A program whose keyroll is still alive is left alone."""
        for note in self.paths.running_commands(self.name):
            try:  # (only keyroll's own notes: one another user wrote must never make it kill)
                fd = open_state_file(note, os.O_RDONLY)
            except (OSError, UnsafePath):
                continue
            try:
                pid, started, owner, owner_started = os.read(fd, 200).decode().split()
            except (OSError, ValueError, UnicodeDecodeError):
                note.unlink(missing_ok=True)
                continue
            finally:
                os.close(fd)
            if _start_time(int(owner)) == owner_started:
                continue  # its keyroll is alive and will see it through
            if _start_time(int(pid)) == started:
                end_group(int(pid), grace=min(timeout, 5.0))
            note.unlink(missing_ok=True)

    def check(self) -> None:
        """The program exists, and (when there is a current value) the service is up
        and takes it: a `verify` run answering 75 means the service is down."""
        if runnable_program(self.config.argv[0], program_env(self.env, parse_env_entries(self.config.env))) is None:
            raise TargetError(f"{self.describe()}: not found or not executable")
        try:
            current = self.credentials.password()
        except TargetError:
            return  # nothing stored yet (init): nothing to check against
        if current is not None and self._run("verify", current) != 0:
            raise TargetError(f"{self.describe()}: the service does not accept the current value")

    def accepts(self, value: str) -> bool:
        return self._run("verify", value) == 0

    def apply(self, new: str, old: str | None) -> None:
        self._run("apply", new, old)

    def rollback(self, old: str | None, new: str) -> None:
        if old is None:
            raise TargetError(f"{self.describe()}: there is no previous value to go back to")
        self._run("rollback", old, new)


def _start_time(pid: int) -> str:
    """The kernel's start time of a process ('' if it is gone): tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""
