"""What a transaction and a scheduled cycle report: records shared by rotation, the
actions, notices, metrics and the CLI, kept low so that none of them needs another's
machinery to name these types."""

from __future__ import annotations

from pathlib import Path

from keyroll.errors import EXIT_FAILURE, EXIT_OK, EXIT_TEMPFAIL, combined_exit_code
from keyroll.records import field, record


@record
class Outcome:
    """What happened to one secret; `message` is one line and never holds a value."""

    name: str
    op: str
    status: str
    exit_code: int = EXIT_OK
    message: str = ""
    target: str | None = None
    restarted: list[str] = field(default_factory=list)
    store_only: bool = False
    services: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK


@record
class TxReport:
    """The result of one transaction (or one recovery)."""

    outcomes: list[Outcome] = field(default_factory=list)
    backup: Path | None = None
    removed_temp: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    recovery: TxReport | None = None  # what the session's recovery did first
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent per step, all secrets

    @property
    def all_outcomes(self) -> list[Outcome]:
        return [*(self.recovery.outcomes if self.recovery else []), *self.outcomes]

    @property
    def exit_code(self) -> int:
        return combined_exit_code(o.exit_code for o in self.outcomes)


@record(frozen=True)
class Reminder:
    """A secret keyroll will not rotate on its own, due soon or overdue."""

    name: str
    due: str
    overdue: bool
    services: tuple[str, ...]


@record
class CycleReport:
    started: str
    recovery: TxReport | None = None
    rotation: TxReport | None = None
    reminders: list[Reminder] = field(default_factory=list)
    not_initialized: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)  # due, but keyroll was asked to stop first
    next_due: str | None = None  # the next secret keyroll rotates on its own
    next_name: str | None = None
    next_manual_due: str | None = None  # the next one a person rotates (after a reminder)
    next_manual_name: str | None = None

    @property
    def exit_code(self) -> int:
        """0, 1 or 75 as the contract says; a secret never created is a failure (1):
        the job cannot be done for it until `keyroll init` runs; one not started
        because keyroll was stopping is temporary (75)."""
        codes = [EXIT_FAILURE if self.not_initialized else EXIT_OK, EXIT_TEMPFAIL if self.not_started else EXIT_OK]
        for report in (self.recovery, self.rotation):
            if report is not None:
                codes.append(report.exit_code)
        return combined_exit_code(codes)

    @property
    def rotated(self) -> list[str]:
        return [o.name for o in self.rotation.outcomes if o.ok] if self.rotation else []

    @property
    def failed(self) -> list[str]:
        outcomes = [
            *(self.recovery.outcomes if self.recovery else []),
            *(self.rotation.outcomes if self.rotation else []),
        ]
        return [o.name for o in outcomes if not o.ok]
