"""One error hierarchy; every expected failure carries its exit code (contract).

Messages are one line, name the file, key or secret at fault, and never carry a
secret value.
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_TEMPFAIL = 75


class KeyrollError(Exception):
    """An expected failure: printed as one line, exits with `exit_code`."""

    exit_code = EXIT_FAILURE


class UsageError(KeyrollError):
    """Bad command-line input (unknown secret, bad name, ...)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """The configuration is malformed or inconsistent; names the file and key path."""


class EncryptionRequired(UsageError):
    """A plaintext store or backup was refused because encryption is required."""


class UnsafePath(UsageError):
    """A folder, file or program that someone other than root or the running user
    can change: keyroll refuses to use it (names the path, its owner and mode, the fix)."""


class UnknownSecret(UsageError):
    """A secret name that the policy does not declare."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        shown = ", ".join(known) if known else "(none)"
        super().__init__(f"unknown secret {name!r}; valid names: {shown}")
        self.name = name


class LockHeld(KeyrollError):
    """Another keyroll process holds the writer or daemon lock."""

    exit_code = EXIT_LOCKED


class TemporaryFailure(KeyrollError):
    """Worth retrying later: a service is down, a lock timed out, ..."""

    exit_code = EXIT_TEMPFAIL


class ServiceUnavailable(TemporaryFailure):
    """A live service (target, consumer, health check) cannot be reached."""


class FleetNotConverged(TemporaryFailure):
    """[gitops]: the fleet (or the cluster, through Flux) does not have the pushed values yet."""


class StoreError(KeyrollError):
    """The secret store cannot be read or written (symlink, full disk, corrupt file)."""


class NotAValue(StoreError):
    """A plain secret file whose bytes are no value (not UTF-8): a given value may replace it."""


class BackupError(KeyrollError):
    """A backup is missing, incomplete, tampered with, or cannot be written."""


class TargetError(KeyrollError):
    """A live service refused an operation (wrong admin credentials, no rights)."""


class JournalError(KeyrollError):
    """The state journal is unreadable or inconsistent."""


def combined_exit_code(codes: Iterable[int]) -> int:
    """Fold per-secret exit codes into one: any hard failure gives 1 (it wins over 75)."""
    failed = set(codes) - {EXIT_OK}
    if not failed:
        return EXIT_OK
    if len(failed) == 1:
        return failed.pop()
    return EXIT_FAILURE
