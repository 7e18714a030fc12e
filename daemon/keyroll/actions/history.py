"""`keyroll history`: a secret's rotations with outcome and time, never values."""

from __future__ import annotations

from keyroll.config.policy import Policy
from keyroll.journal import HistoryEntry, Journal


def history(policy: Policy, name: str | None = None, limit: int | None = None) -> list[HistoryEntry]:
    """Newest first; empty when keyroll has never written here."""
    if name:
        policy.secret(name)
    journal = Journal.open_read(policy.paths)
    if journal is None:
        return []
    try:
        return journal.history(name, limit)
    finally:
        journal.close()


def shown_outcome(entry: HistoryEntry) -> str:
    """The outcome as `history` shows it: a failure that was only temporary (75) says so."""
    from keyroll.errors import EXIT_TEMPFAIL

    return (
        f"{entry.outcome} (temporary)"
        if entry.outcome == "failed" and entry.exit_code == EXIT_TEMPFAIL
        else entry.outcome
    )
