"""One scheduled cycle: recover, then back up and rotate every secret that is due
and may rotate unattended, and list reminders for the others.  `keyroll run`
(a systemd timer) runs one cycle; the daemon runs one whenever something is due.

A secret is due `schedule` after its last rotation (init counts as one), moved
into its window and delayed by its jitter; after failed rotations it is retried
with a doubling backoff (`[daemon] retry_min` .. `retry_max`), never in a loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from keyroll.config.policy import Policy, SecretPolicy
from keyroll.journal import Journal, SecretRecord
from keyroll.outcomes import CycleReport, Reminder
from keyroll.records import record
from keyroll.rotation import Change, WriterSession
from keyroll.schedule import from_iso, next_due, parse_duration, to_iso, utcnow

FAILED = "failed"


@record(frozen=True)
class DueTime:
    """When a secret is next due, and whether the daemon/run rotates it itself."""

    name: str
    due: datetime
    unattended: bool
    retrying: int = 0  # consecutive failed attempts behind this due time


def _consecutive_failures(journal: Journal, name: str) -> tuple[int, datetime | None]:
    count, last = 0, None
    for entry in journal.history(name, limit=32):
        if entry.op == "retire" or entry.outcome == "cancelled":
            continue
        if entry.outcome != FAILED:
            break
        count += 1
        last = last or from_iso(entry.at)
    return count, last


def due_time(policy: Policy, secret: SecretPolicy, record: SecretRecord, journal: Journal) -> DueTime:
    """The next due time of one recorded secret, backoff included."""
    due = next_due(secret.name, from_iso(record.rotated), secret.schedule, secret.window, secret.jitter)
    failures, last_failure = _consecutive_failures(journal, secret.name)
    if failures and last_failure is not None:
        first = parse_duration(policy.daemon.retry_min)
        cap = parse_duration(policy.daemon.retry_max)
        backoff = min(first * (2 ** min(failures - 1, 30)), cap)
        retry_at = last_failure + backoff
        if secret.window is not None:
            retry_at = secret.window.next_open(retry_at)
        due = max(due, retry_at)
    return DueTime(secret.name, due, secret.rotates_unattended, failures)


def due_times(policy: Policy) -> tuple[list[DueTime], list[str]]:
    """Due time of every recorded secret, and the names keyroll has not recorded yet."""
    journal = Journal.open_read(policy.paths)
    own = [s for s in policy.secrets.values() if not s.follows]  # (a login name changes with its password)
    if journal is None:
        return [], [s.name for s in own]
    try:
        records = journal.records()
        times = [due_time(policy, s, records[s.name], journal) for s in own if s.name in records]
        missing = [s.name for s in own if s.name not in records]
    finally:
        journal.close()
    return times, missing


def _in_window(secret: SecretPolicy, now: datetime) -> bool:
    return secret.window is None or secret.window.contains(now)


def effective_due(policy: Policy, due: DueTime, now: datetime) -> datetime:
    """When a due secret can actually rotate: now, or when its window next opens."""
    if due.due > now:
        return due.due
    window = policy.secrets[due.name].window
    return window.next_open(now) if window else now


REMIND_EVERY = timedelta(hours=24)


def reminder_time(journal: Journal, secret: SecretPolicy, due: datetime) -> datetime:
    """When a reminder about a secret rotated by hand is next wanted: `reminder`
    before it is due, then once a day (the last one is kept in the journal, so a
    restart or reload neither repeats nor postpones it)."""
    start = due - secret.reminder
    last = journal.get_meta(f"reminded:{secret.name}")
    return max(start, from_iso(last) + REMIND_EVERY) if last else start


def run_cycle(
    policy: Policy,
    *,
    now: datetime | None = None,
    wait: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
) -> CycleReport:
    """Recover, then rotate what is due (backup first), and collect reminders."""
    now = now or utcnow()
    report = CycleReport(started=to_iso(now))
    with WriterSession(policy, wait=wait, should_stop=should_stop) as session:
        report.recovery = session.recovery
        times, report.not_initialized = due_times(policy)
        due_now = [t.name for t in times if t.unattended and t.due <= now and _in_window(policy.secrets[t.name], now)]
        if due_now and session.stop_requested():
            report.not_started = due_now  # asked to stop before the rotation began
        elif due_now:
            changes = [Change(name, "rotate") for name in due_now]
            report.rotation = session.transact(changes, reason="before scheduled rotation")
            report.rotation.recovery = None  # already reported above
        times, _ = due_times(policy)
        reminded: dict[str, str] = {}
        for t in times:
            secret = policy.secrets[t.name]
            if not t.unattended and reminder_time(session.journal, secret, t.due) <= now:
                report.reminders.append(Reminder(t.name, to_iso(t.due), t.due <= now, secret.services))
                reminded[f"reminded:{t.name}"] = to_iso(now)
        if reminded:
            session.journal.set_meta(reminded)
    for unattended in (True, False):
        upcoming = sorted((t for t in times if t.unattended == unattended), key=lambda t: t.due)
        if upcoming and unattended:
            report.next_due, report.next_name = to_iso(upcoming[0].due), upcoming[0].name
        elif upcoming:
            report.next_manual_due, report.next_manual_name = to_iso(upcoming[0].due), upcoming[0].name
    return report


@record(frozen=True)
class Wakeup:
    """The next moment the daemon has work: `at` (when it can be done), `due` (since
    when it has been wanted: earlier than `at` for an overdue secret), and why."""

    at: datetime
    due: datetime
    why: str


def next_wakeup(policy: Policy, now: datetime | None = None) -> Wakeup | None:
    """When the daemon must next run a cycle: an unattended secret falls due, an old
    credential's grace ends, or a reminder is wanted; None when nothing ever is."""
    now = now or utcnow()
    times, _ = due_times(policy)
    candidates = [Wakeup(effective_due(policy, t, now), t.due, t.name) for t in times if t.unattended]
    journal = Journal.open_read(policy.paths)
    if journal is not None:
        try:
            for item in journal.retirements():
                moment = from_iso(item.not_before)
                candidates.append(Wakeup(moment, moment, f"retire the old {item.name}"))
            for t in times:
                if not t.unattended:
                    moment = reminder_time(journal, policy.secrets[t.name], t.due)
                    candidates.append(Wakeup(moment, moment, f"remind about {t.name}"))
        finally:
            journal.close()
    return min(candidates, key=lambda w: w.at) if candidates else None
