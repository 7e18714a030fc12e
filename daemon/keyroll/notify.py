"""Notices through Apprise: one message per cycle, never a secret value.

Apprise is imported only in the process that sends (it costs ~0.35 s and ~17 MB
on first use), and the daemon and `run` send from a short-lived child process
(`keyroll notify send`, the notice on stdin) with a hard time limit, so a
notifier that fails or hangs is a warning in the log and never changes the
cycle's own result.  URLs may carry tokens: they are never logged whole.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from keyroll.errors import ConfigError
from keyroll.records import asdict, field, record
from keyroll.schedule import parse_duration
from keyroll.text import redact

if TYPE_CHECKING:
    from keyroll.config.policy import Policy
    from keyroll.outcomes import CycleReport, Outcome, TxReport

log = logging.getLogger("keyroll.notify")

FAILURE, SUCCESS, REMINDER, RECOVERED, TEST = "failure", "success", "reminder", "recovered", "test"


@record
class Notice:
    """One message: the events it reports, a title and a plain-text body."""

    events: list[str]
    title: str
    body: str

    @property
    def kind(self) -> str:
        """Apprise's notify type: failure first, then success, else info."""
        if FAILURE in self.events:
            return "failure"
        if SUCCESS in self.events or RECOVERED in self.events:
            return "success"
        return "warning" if REMINDER in self.events else "info"


@record
class Delivery:
    """The result of sending to one URL (shown redacted)."""

    url: str
    ok: bool
    error: str = ""


class LogTail(logging.Handler):
    """Keeps the last lines keyroll logged, to attach to a failure notice."""

    def __init__(self, size: int = 20) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


# --- composing --------------------------------------------------------------------------


def _outcome_line(outcome: Outcome) -> str:
    parts = [f"- {outcome.name}: {outcome.status}"]
    if outcome.target:
        parts.append(f" ({outcome.target})")
    if outcome.restarted and outcome.ok:
        parts.append(f"; restarted {', '.join(outcome.restarted)}")
    if outcome.store_only and outcome.ok:
        parts.append(f"; in the store only: {', '.join(outcome.services) or 'its services'} need the new value")
    if outcome.message:
        parts.append(f"; {outcome.message}")
    return "".join(parts)


def cycle_notice(report: CycleReport, policy: Policy, log_tail: list[str] | None = None) -> Notice | None:
    """The message for one cycle, or None when none of its events is wanted."""
    events: list[str] = []
    sections: list[str] = []
    recovery: TxReport | None = report.recovery
    if recovery is not None and recovery.outcomes:
        events.append(RECOVERED)
        if any(not o.ok for o in recovery.outcomes):
            events.append(FAILURE)
        sections.append(
            "Interrupted rotations found at start:\n" + "\n".join(_outcome_line(o) for o in recovery.outcomes)
        )
    if report.rotation is not None and report.rotation.outcomes:
        outcomes = report.rotation.outcomes
        if any(o.ok for o in outcomes):
            events.append(SUCCESS)
        if any(not o.ok for o in outcomes):
            events.append(FAILURE)
        sections.append("Rotations:\n" + "\n".join(_outcome_line(o) for o in outcomes))
        if report.rotation.backup:
            sections.append(f"Backup taken first: {report.rotation.backup}")
    if report.not_initialized:
        events.append(FAILURE)
        sections.append("Not initialized, so not rotated (run `keyroll init`): " + ", ".join(report.not_initialized))
    if report.reminders:
        events.append(REMINDER)
        lines = [
            f"- {r.name}: {'OVERDUE since' if r.overdue else 'due'} {r.due}; used by {', '.join(r.services) or '-'}; "
            f"rotate it with `keyroll rotate {r.name}`"
            for r in report.reminders
        ]
        sections.append("Reminders (keyroll does not rotate these on its own):\n" + "\n".join(lines))
    if report.next_due:
        sections.append(f"Next scheduled rotation: {report.next_name} at {report.next_due}")
    wanted = sorted(set(events) & set(policy.notify.on), key=events.index)
    if not wanted:
        return None
    host = socket.gethostname()
    counts = []
    if report.rotation is not None:
        rotated, failed = len(report.rotated), sum(1 for o in report.rotation.outcomes if not o.ok)
        counts += [f"{rotated} rotated"] if rotated else []
        counts += [f"{failed} failed"] if failed else []
    if recovery is not None and recovery.outcomes:
        counts.append(f"{len(recovery.outcomes)} recovered")
    if report.not_initialized:
        counts.append(f"{len(report.not_initialized)} not initialized")
    if report.reminders:
        counts.append(f"{len(report.reminders)} reminder(s)")
    state = "FAILED" if FAILURE in events else "ok"
    title = f"keyroll on {host}: {state}: {', '.join(counts)}"
    body = "\n\n".join(sections)
    if FAILURE in events and log_tail:
        body += "\n\nLast log lines:\n" + "\n".join(log_tail)
    return Notice(list(wanted), title, body)


def failure_notice(problem: str, policy: Policy, log_tail: list[str] | None = None) -> Notice | None:
    """The message for a cycle that failed as a whole (the store or config unusable,
    say), when failures are wanted; `problem` is one line without values."""
    if FAILURE not in policy.notify.on:
        return None
    body = f"{problem}\n\nNo secret was rotated in this cycle; keyroll retries with a growing delay."
    if log_tail:
        body += "\n\nLast log lines:\n" + "\n".join(log_tail)
    return Notice([FAILURE], f"keyroll on {socket.gethostname()}: FAILED: {problem[:120]}", body)


def test_notice() -> Notice:
    host = socket.gethostname()
    return Notice([TEST], f"keyroll on {host}: test notice", "This is a test notice from `keyroll notify test`.")


# --- where to ----------------------------------------------------------------------------


def configured_urls(policy: Policy) -> list[str]:
    """`[notify] urls` plus the lines of `urls_file` (blank lines and # comments skipped)."""
    urls = list(policy.notify.urls)
    if policy.notify.urls_file:
        from keyroll.paths import resolve_config_path

        path = resolve_config_path(policy.notify.urls_file, policy.config_dir, key="notify.urls_file", env=policy.env)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            from keyroll.fsutil import describe_os_error

            raise ConfigError(f"notify.urls_file: {describe_os_error(path, exc)}") from None
        urls += [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return urls


# --- sending ----------------------------------------------------------------------------


def send_now(notice: Notice, urls: list[str], timeout: float) -> list[Delivery]:
    """Send to each URL from this process, each bounded by `timeout` seconds."""
    import apprise

    quiet = logging.getLogger("apprise")  # Apprise may log URLs (with tokens): keep it quiet
    quiet.setLevel(logging.CRITICAL)
    quiet.propagate = False
    results: list[Delivery] = []
    for index, url in enumerate(urls, 1):
        shown = redact(url, index)
        sender = apprise.Apprise()
        if not sender.add(url):
            results.append(Delivery(shown, False, "not a valid Apprise URL"))
            continue
        outcome: dict[str, bool] = {}

        def attempt(sender: apprise.Apprise = sender, outcome: dict[str, bool] = outcome) -> None:
            outcome["ok"] = bool(
                sender.notify(
                    title=notice.title,
                    body=notice.body,
                    notify_type=notice.kind,
                    body_format=apprise.NotifyFormat.TEXT,  # plain lines: e-mail keeps them apart
                )
            )

        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            results.append(Delivery(shown, False, f"no answer within {timeout:g}s"))
        elif not outcome.get("ok"):
            results.append(Delivery(shown, False, "the service refused or could not be reached"))
        else:
            results.append(Delivery(shown, True))
    return results


def deliver(
    notice: Notice,
    policy: Policy,
    *,
    stopping: Callable[[], bool] | None = None,
    stop_limit: float = 5.0,
) -> list[Delivery]:
    """Send from a child process (`keyroll notify send`: the notice, the URLs and the
    timeout on its stdin, so it reads no config) with a hard time limit, shortened to
    `stop_limit` seconds once `stopping()` turns true (a stop does not wait on a slow
    notifier).  Never raises: a notifier that fails, hangs or crashes is a warning in
    the log."""
    try:
        urls = configured_urls(policy)
    except ConfigError as exc:
        log.warning("notice not sent: %s", exc)
        return [Delivery("-", False, str(exc))]
    if not urls:
        return []
    per_url = parse_duration(policy.notify.timeout).total_seconds() or 10.0
    limit = per_url * len(urls) + 15.0  # start-up and Apprise's plugin loading included
    request = {"notice": asdict(notice), "urls": urls, "timeout": per_url}
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "keyroll", "notify", "send"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **policy.env},
        )
        payload: str | None = json.dumps(request)
        deadline = time.monotonic() + limit
        while True:
            try:
                out, err = child.communicate(payload, timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                payload = None  # (already being written: a retry continues it)
                if stopping is not None and stopping():
                    deadline = min(deadline, time.monotonic() + stop_limit)
                    stopping = None
                if time.monotonic() >= deadline:
                    child.kill()
                    child.communicate()
                    raise
        results = [Delivery(**item) for item in json.loads(out or "[]")]
        if not results:
            why = (err.strip().splitlines() or [f"exit status {child.returncode}"])[-1][:200]
            results = [Delivery("-", False, f"the notifier sent nothing: {why}")]
    except subprocess.TimeoutExpired:
        results = [Delivery("-", False, "the notifier did not finish in time; killed")]
    except (ValueError, TypeError, OSError) as exc:
        results = [Delivery("-", False, f"the notifier failed ({type(exc).__name__})")]
    for result in results:
        if not result.ok:
            log.warning("notice to %s failed: %s", result.url, result.error)
    return results


@record
class SendReport:
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.deliveries and all(d.ok for d in self.deliveries) else 1
