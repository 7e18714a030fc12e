"""A program that applies the value itself (Grafana's admin password, an API's key).

The program gets the phase in $KEYROLL_PHASE (apply, verify, rollback), the
secret's name in $KEYROLL_SECRET and the target's in $KEYROLL_TARGET; the value
comes on stdin, never in argv: line 1 is the value of this phase, line 2 (apply
and rollback) the value being replaced, when there is one.  Exit 0 is success,
75 a temporary failure (service down), anything else a refusal.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING

from keyroll.errors import EXIT_TEMPFAIL, ServiceUnavailable, TargetError
from keyroll.schedule import parse_duration
from keyroll.targets import BaseTarget, Credentials

if TYPE_CHECKING:
    from keyroll.config.schema import CommandTarget as CommandConfig


class CommandTarget(BaseTarget):
    """Runs the configured program for each phase of the rotation."""

    def __init__(
        self, name: str, config: CommandConfig, credentials: Credentials, secret: str, env: Mapping[str, str]
    ) -> None:
        super().__init__(name, credentials, secret)
        self.needs_old = False  # the program does not log in with the old value
        self.config = config
        self.env = env
        self.timeout = parse_duration(config.timeout).total_seconds() or 30.0

    def describe(self) -> str:
        return f"command {self.config.argv[0]} (target {self.name})"

    def _run(self, phase: str, value: str, other: str | None = None) -> int:
        stdin = value + "\n" + (other + "\n" if other is not None else "")
        env = {**self.env, "KEYROLL_PHASE": phase, "KEYROLL_SECRET": self.secret, "KEYROLL_TARGET": self.name}
        try:
            done = subprocess.run(
                list(self.config.argv),
                input=stdin.encode(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise TargetError(f"{self.describe()}: not found") from None
        except PermissionError:
            raise TargetError(f"{self.describe()}: not executable") from None
        except subprocess.TimeoutExpired:
            raise ServiceUnavailable(f"{self.describe()}: {phase} timed out after {self.timeout:g}s") from None
        if done.returncode == 0:
            return 0
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        for secret in (value, other):
            if secret:
                reason = reason.replace(secret, "***")
        reason = reason[:200]  # (cut after masking: a value cut in two would escape the mask)  # a careless program may echo what it read
        if done.returncode == EXIT_TEMPFAIL:
            raise ServiceUnavailable(f"{self.describe()}: {phase}: {reason}")
        if phase == "verify":
            return done.returncode
        raise TargetError(f"{self.describe()}: {phase} failed: {reason}")

    def check(self) -> None:
        """The program exists, and (when there is a current value) the service is up
        and takes it: a `verify` run answering 75 means the service is down."""
        program = self.config.argv[0]
        if not shutil.which(program):
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
