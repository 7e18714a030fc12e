"""Prometheus metrics in node_exporter's textfile format (`[metrics] textfile`).

Every writing session notes its transaction reports here (`note`); when the
command, `keyroll run` or the daemon cycle has its exit code, `after_run` rewrites
the file once: per secret its last rotation, next due time, age and the result of
its last attempt; for the run its start, duration, exit code and counts; the
version.  The file holds secret names, times, counts and exit codes only: never a
value, a hash or fingerprint of one, nor a URL.

prometheus_client builds the text (and parses the previous file, which carries
what this run did not see: the last scheduled run, and which failure was only
temporary); it is imported only when metrics are configured.  keyroll writes the
bytes itself, with its own atomic writer: temp file created O_EXCL|O_NOFOLLOW with
the configured mode set before the data, fsync, rename, fsync of the folder.
(`prometheus_client.write_to_textfile` creates its temp file with the process's
umask, 0600 under keyroll, follows a symlink planted at its predictable temp name,
and syncs nothing.)  A failure to write is a warning, never the command's result.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

from keyroll.records import record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from keyroll.config.policy import Policy
    from keyroll.journal import Journal
    from keyroll.outcomes import Outcome, TxReport

SUCCESS, FAILURE, TEMPORARY, NOT_INITIALIZED = "success", "failure", "temporary_failure", "not_initialized"
SECRET_RESULTS = (SUCCESS, FAILURE, TEMPORARY, NOT_INITIALIZED)
RUN_RESULTS = (SUCCESS, FAILURE, TEMPORARY)
SCHEDULED_COMMANDS = ("run", "daemon")  # what the timer or the daemon runs, on its own

_lock = threading.Lock()
_pending: list[tuple[Policy, TxReport]] = []


def textfile_path(policy: Policy) -> Path | None:
    """The configured .prom file (relative to the config file's folder), None when off."""
    text = policy.metrics.textfile
    if not text:
        return None
    from keyroll.paths import resolve_config_path

    return resolve_config_path(text, policy.config_dir, key="metrics.textfile")


def note(policy: Policy, report: TxReport | None = None) -> None:
    """Remember that a writing session began (and each report it makes, filled in as
    it goes on) for the next `after_run`; nothing when metrics are off."""
    if policy.metrics.textfile:
        from keyroll.outcomes import TxReport

        with _lock:
            _pending.append((policy, report or TxReport()))


def after_run(command: str, started: float, exit_code: int) -> str | None:
    """Rewrite the textfile for the run that just ended (`started`: its epoch start),
    when a writing session of it noted something; the problem, in one line, when the
    file could not be written (a warning: the run's own result stands)."""
    with _lock:
        pending = list(_pending)
        _pending.clear()
    if not pending:
        return None
    policy = pending[-1][0]
    path = textfile_path(policy)
    if path is None:
        return None
    outcomes = [outcome for _, report in pending for outcome in report.outcomes]
    run = RunFacts(command, started, max(time.time() - started, 0.0), exit_code, outcomes)
    try:
        write_textfile(policy, path, run)
    except Exception as exc:  # (metrics never change a command's result)
        from keyroll.errors import KeyrollError

        why = str(exc) if isinstance(exc, KeyrollError) else f"{type(exc).__name__}: {exc}"
        # (the atomic writer's words for the store: said after "app_key: rotated", they
        # would read as if the rotation had been undone; only the metrics file is unchanged)
        why = why.removesuffix("; nothing was changed")
        return f"metrics: {path} not written: {why}"
    return None


@record
class RunFacts:
    """One command or cycle, as the metrics show it."""

    command: str
    started: float  # epoch seconds
    duration: float
    exit_code: int
    outcomes: list[Outcome]


@record
class SecretFacts:
    """What the metrics say about one secret (times in epoch seconds)."""

    name: str
    result: str
    rotated: float | None = None
    due: float | None = None
    attempted: float | None = None


def result_of(exit_code: int) -> str:
    """An outcome's exit code (0, 1, 75) as a result label."""
    from keyroll.errors import EXIT_OK, EXIT_TEMPFAIL

    return SUCCESS if exit_code == EXIT_OK else TEMPORARY if exit_code == EXIT_TEMPFAIL else FAILURE


def _undone(op: str, status: str) -> bool:
    """A change that recovery rolled back (keyroll was interrupted, the service still had
    the old value): it did not happen, nothing is broken, the next run tries again."""
    return status == "rolled back" and op != "rollback"


def _outcome_result(outcome: Outcome) -> str:
    """This run's outcome for one secret as the result of its last attempt."""
    return TEMPORARY if _undone(outcome.op, outcome.status) else result_of(outcome.exit_code)


def _journal_result(op: str, outcome: str, exit_code: int | None = None) -> str:
    """A history entry as a result, as this run's outcome would have been: `cancelled`
    and an interrupted change undone are temporary, else its exit code says (75:
    temporary); an entry an older keyroll wrote has none: `failed` is then a failure."""
    if outcome == "cancelled" or _undone(op, outcome):
        return TEMPORARY
    if exit_code is not None:
        return result_of(exit_code)
    return FAILURE if outcome == "failed" else SUCCESS


def secret_facts(
    policy: Policy, journal: Journal | None, run: RunFacts, carried: dict[str, tuple[str, float]]
) -> list[SecretFacts]:
    """Per secret: this run's outcome first, else the previous file's result when it
    is about the same attempt (it knows temporary from hard failures: a journal an
    older keyroll wrote does not), else the journal's."""
    from keyroll.schedule import from_iso, next_due

    records = journal.records() if journal is not None else {}
    this_run = {outcome.name: _outcome_result(outcome) for outcome in run.outcomes}
    facts = []
    for secret in policy.secrets.values():
        record_ = records.get(secret.name)
        if record_ is None:
            facts.append(SecretFacts(secret.name, this_run.get(secret.name, NOT_INITIALIZED)))
            continue
        rotated = from_iso(record_.rotated)
        # A login name changes with its password, never due alone (as in `status`): no due time of its own.
        due = None if secret.follows else next_due(secret.name, rotated, secret.schedule, secret.window, secret.jitter)
        entry = next((e for e in journal.history(secret.name, limit=16) if e.op != "retire"), None) if journal else None
        attempted = from_iso(entry.at).timestamp() if entry else None
        result = this_run.get(secret.name)
        if result is None and entry is not None:
            result = _journal_result(entry.op, entry.outcome, entry.exit_code)
            before = carried.get(secret.name)
            same = before is not None and attempted is not None and abs(before[1] - attempted) < 1
            if same and result == FAILURE and before is not None and before[0] == TEMPORARY:
                result = TEMPORARY
        facts.append(
            SecretFacts(
                secret.name, result or SUCCESS, rotated.timestamp(), due.timestamp() if due else None, attempted
            )
        )
    return facts


def _previous(path: Path) -> tuple[dict[str, tuple[str, float]], dict[str, float]]:
    """From the file as last written: the secrets whose last attempt was a temporary
    failure, with that attempt's time, and the last scheduled run's start and exit
    code (empty when unreadable).  Only the lines that can matter are parsed (a file
    for 1,000 secrets has 8,000)."""
    from prometheus_client.parser import text_string_to_metric_families

    def parsed(lines: list[str]) -> list[Any]:
        return [s for family in text_string_to_metric_families("\n".join(lines) + "\n") for s in family.samples]

    try:
        lines = _read_no_follow(path).decode("utf-8").splitlines()
        temporary = [
            s.labels.get("secret", "")
            for s in parsed([x for x in lines if x.startswith("keyroll_secret_last_result{") and TEMPORARY in x])
            if s.labels.get("result") == TEMPORARY and s.value == 1
        ]
        prefix = "keyroll_secret_last_attempt_timestamp_seconds"
        wanted = {f'{prefix}{{secret="{name}"}}' for name in temporary}
        attempts = parsed([x for x in lines if x.startswith(prefix) and x.partition(" ")[0] in wanted])
        scheduled = {s.name: s.value for s in parsed([x for x in lines if x.startswith("keyroll_last_scheduled_run_")])}
    except (OSError, ValueError, UnicodeDecodeError):
        return {}, {}
    carried = {s.labels["secret"]: (TEMPORARY, s.value) for s in attempts if s.labels.get("secret") in temporary}
    return carried, scheduled


def _read_no_follow(path: Path, limit: int = 16 << 20) -> bytes:
    """The file's bytes (at most `limit`), never through a symlink, never waiting on a
    FIFO someone who can write the collector's folder put in its place (OSError)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def families(
    run: RunFacts, secrets: Iterable[SecretFacts], up: bool, scheduled: dict[str, float], now: float
) -> list[Any]:
    """The metric families of one textfile."""
    from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

    from keyroll import __version__

    def gauge(name: str, doc: str, value: float | None = None, labels: Iterable[str] = ()) -> Any:
        return GaugeMetricFamily(name, doc, value=value, labels=None if value is not None else list(labels))

    out = [
        InfoMetricFamily("keyroll_build", "keyroll's version.", value={"version": __version__}),
        gauge("keyroll_up", "1 when keyroll read its journal to write this file, else 0.", 1.0 if up else 0.0),
    ]
    rotated = gauge(
        "keyroll_secret_last_rotation_timestamp_seconds", "When the secret last changed.", labels=["secret"]
    )
    due = gauge(
        "keyroll_secret_next_due_timestamp_seconds",
        "When the secret is due by its schedule (window and jitter included; retries after failures not).",
        labels=["secret"],
    )
    age = gauge(
        "keyroll_secret_age_seconds", "Seconds since the secret last changed, as of this file.", labels=["secret"]
    )
    attempted = gauge(
        "keyroll_secret_last_attempt_timestamp_seconds",
        "When keyroll last tried to change the secret.",
        labels=["secret"],
    )
    result = gauge(
        "keyroll_secret_last_result",
        "The result of the last attempt on the secret: 1 for the one it was (success, failure, "
        "temporary_failure: retry later, not_initialized: run keyroll init).",
        labels=["secret", "result"],
    )
    for facts in secrets:
        if facts.rotated is not None:
            rotated.add_metric([facts.name], facts.rotated)
            age.add_metric([facts.name], max(now - facts.rotated, 0.0))
        if facts.due is not None:
            due.add_metric([facts.name], facts.due)
        if facts.attempted is not None:
            attempted.add_metric([facts.name], facts.attempted)
        for state in SECRET_RESULTS:
            result.add_metric([facts.name, state], 1.0 if state == facts.result else 0.0)
    out += [rotated, due, age, attempted, result]

    counts = {state: 0 for state in RUN_RESULTS}
    for outcome in run.outcomes:
        counts[result_of(outcome.exit_code)] += 1
    run_secrets = gauge(
        "keyroll_last_run_secrets", "Secrets the last writing run handled, by result.", labels=["result"]
    )
    for state, count in counts.items():
        run_secrets.add_metric([state], float(count))
    out += [
        InfoMetricFamily(
            "keyroll_last_run", "The last writing run (command or daemon cycle).", value={"command": run.command}
        ),
        gauge("keyroll_last_run_start_timestamp_seconds", "When the last writing run started.", run.started),
        gauge("keyroll_last_run_duration_seconds", "How long the last writing run took.", run.duration),
        gauge(
            "keyroll_last_run_exit_code",
            "The exit code of the last writing run (0 ok, 1 failed, 75 temporary).",
            float(run.exit_code),
        ),
        run_secrets,
    ]
    if run.command in SCHEDULED_COMMANDS:
        scheduled = {
            "keyroll_last_scheduled_run_start_timestamp_seconds": run.started,
            "keyroll_last_scheduled_run_exit_code": float(run.exit_code),
        }
    docs = {
        "keyroll_last_scheduled_run_start_timestamp_seconds": "When the last `keyroll run` or daemon cycle started.",
        "keyroll_last_scheduled_run_exit_code": "The exit code of the last `keyroll run` or daemon cycle.",
    }
    out += [gauge(name, doc, scheduled[name]) for name, doc in docs.items() if name in scheduled]
    return out


def render(found: Iterable[Any]) -> bytes:
    """The text exposition format of these families."""
    from prometheus_client import CollectorRegistry, generate_latest

    class _Fixed:
        def __init__(self, items: list[Any]) -> None:
            self.items = items

        def collect(self) -> Iterable[Any]:
            return self.items

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(found)))
    return generate_latest(registry)


def write_textfile(policy: Policy, path: Path, run: RunFacts) -> None:
    """Rewrite `path` atomically for `run` (under a lock of its own, so that two keyroll
    processes do not lose what each carries over from the previous file)."""
    from keyroll.config.schema import parse_mode
    from keyroll.errors import KeyrollError
    from keyroll.fsutil import write_files_atomically
    from keyroll.journal import Journal
    from keyroll.lock import FileLock

    with FileLock(policy.paths.metrics_lock, "metrics").acquire(wait=10.0):
        carried, scheduled = _previous(path)
        try:
            journal = Journal.open_read(policy.paths)
        except KeyrollError:
            journal = None
        up = journal is not None
        try:
            secrets = secret_facts(policy, journal, run, carried)
        finally:
            if journal is not None:
                journal.close()
        data = render(families(run, secrets, up, scheduled, time.time()))
        _remove_stale_temp_files(path)
        write_files_atomically(path.parent, {path.name: data}, mode=parse_mode(policy.metrics.mode))


def _remove_stale_temp_files(path: Path, older_than: float = 60.0) -> None:
    """Delete the temp files of `path` that a keyroll killed while writing it left in the
    collector's folder (its own names only, files only, a minute old: never another
    program's file, nor one a writer outside this lock is filling); problems are ignored."""
    from keyroll.paths import TEMP_PREFIX

    prefix = f"{TEMP_PREFIX}{path.name}."
    try:
        names = [name for name in os.listdir(path.parent) if name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        leftover = path.parent / name
        try:
            info = leftover.lstat()
            if not stat.S_ISDIR(info.st_mode) and time.time() - info.st_mtime > older_than:
                leftover.unlink()
        except OSError:
            continue
