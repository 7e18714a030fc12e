"""`keyroll daemon`: the long-running scheduler under systemd (Type=notify).

It is just another caller of the actions: at start it recovers whatever a killed
keyroll left in flight, then schedules one APScheduler job at the moment the next
secret falls due (or an old credential's grace ends); each job runs one cycle
(`actions.run.run_cycle`: backup, then rotate everything due, coalesced), sends
one notice, and schedules the next.  Missed rotations are caught up right after
start, once.  The writer lock is held only during a cycle, so a manual `keyroll
rotate` works while the daemon idles; the daemon lock keeps one daemon per state
folder.

systemd: READY=1 after recovery and scheduling; STATUS= says what is next and
how the last cycle went (ASCII); WATCHDOG=1 every half $WATCHDOG_USEC; SIGHUP
reloads the config (RELOADING=1 with MONOTONIC_USEC, then READY=1; an invalid
config keeps the old one); SIGTERM/SIGINT send STOPPING=1 and exit 0, at the next
safe point when a rotation is running.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from keyroll import records
from keyroll.actions.run import next_wakeup, run_cycle
from keyroll.config.policy import Policy, load_policy
from keyroll.errors import EXIT_FAILURE, EXIT_OK, EXIT_TEMPFAIL, KeyrollError, LockHeld
from keyroll.lock import FileLock
from keyroll.notify import LogTail, cycle_notice, deliver, failure_notice
from keyroll.outcomes import CycleReport
from keyroll.schedule import parse_duration, utcnow

log = logging.getLogger("keyroll.daemon")

LOCK_WAIT = 60.0  # a cycle waits this long for a manual keyroll to finish
HUNG_AFTER = 30 * 60.0  # a cycle running longer stops the watchdog pings: systemd restarts us
REMINDER_EVERY = timedelta(hours=24)  # wake at least this often, whatever the schedule
STOPPING_NOTICE_LIMIT = 5.0  # seconds a notice may take while the daemon stops


class SystemdNotifier:
    """sd_notify over $NOTIFY_SOCKET (a no-op without it).  Text is kept ASCII:
    the sdnotify library encodes Latin-1 and silently drops anything else."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._notifier: Any = None
        if env.get("NOTIFY_SOCKET"):
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()

    def send(self, *lines: str) -> None:
        if self._notifier is not None:
            text = "\n".join(lines).encode("ascii", "replace").decode("ascii")
            self._notifier.notify(text)


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of $WATCHDOG_USEC in seconds, when the watchdog is on for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2 / 1_000_000


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Daemon:
    """The scheduler process.  `run()` returns the exit code."""

    def __init__(self, config: str | None, env: Mapping[str, str] | None = None) -> None:
        self.config_arg = config
        self.env = os.environ if env is None else env
        self.policy: Policy = load_policy(config, self.env)
        self.systemd = SystemdNotifier(self.env)
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._reload = False
        self._scheduler: Any = None
        self._cycle_lock = threading.Lock()
        self._cycle_started: float | None = None
        self._last: CycleReport | None = None
        self._last_start: datetime | None = None  # when the last cycle began
        self._last_failed = False  # the whole last cycle failed (store, config, lock, ...)
        self._idle_retries = 0
        self._next: tuple[datetime | None, str | None] = (None, None)
        self._tail = LogTail()

    # --- signals ----------------------------------------------------------------------

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()
        self._wake.set()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True
        self._wake.set()

    # --- main loop ----------------------------------------------------------------------

    def run(self) -> int:
        from keyroll.rotation import refuse_unusable
        from keyroll.store import open_store

        refuse_unusable(self.policy, open_store(self.policy))  # exit 2 before creating anything
        lock = FileLock(self.policy.paths.daemon_lock, "daemon")
        try:
            lock.acquire()
        except LockHeld as exc:
            raise LockHeld(f"a keyroll daemon is already running for {self.policy.paths.state_dir}: {exc}") from None
        logging.getLogger("keyroll").addHandler(self._tail)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        try:
            log.info(
                "starting: pid %d, config %s, state %s",
                os.getpid(),
                self.policy.source or "embedded default",
                self.policy.paths.state_dir,
            )
            self._start_scheduler()
            self._recover_at_start()
            if not self.stopping.is_set():  # (asked to stop during recovery: no READY=1)
                self._schedule(after_cycle=self._last_failed)  # a failed recovery is retried, backing off
                self.systemd.send("READY=1", self._status())
                log.info("ready: %s", self._status().removeprefix("STATUS="))
                self._loop()
        finally:
            self.systemd.send("STOPPING=1", "STATUS=stopping")
            log.info("stopping")
            if self._scheduler is not None:
                self._scheduler.shutdown(wait=True)
            lock.release()
            logging.getLogger("keyroll").removeHandler(self._tail)
        log.info("stopped")
        return EXIT_OK

    def _loop(self) -> None:
        interval = watchdog_interval(self.env)
        while not self.stopping.is_set():
            self._wake.wait(interval if interval else 3600.0)
            self._wake.clear()
            if self.stopping.is_set():
                break
            if self._reload:
                self._reload = False
                self._reload_config()
            if interval:
                started = self._cycle_started
                if started is not None and time.monotonic() - started > HUNG_AFTER:
                    log.error("a cycle has run for over %d minutes: withholding the watchdog ping", HUNG_AFTER // 60)
                else:
                    self.systemd.send("WATCHDOG=1")

    def _start_scheduler(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            # One cycle at a time; a cycle whose time passed while we were busy or down
            # still runs (no misfire limit), and several missed ones run once (coalesce).
            # max_instances=2: a cycle schedules the next one before it returns; with one
            # worker the next waits for it, where max_instances=1 would drop it.
            job_defaults={"coalesce": True, "max_instances": 2, "misfire_grace_time": None},
        )
        self._scheduler.start()

    def _reload_config(self) -> None:
        monotonic_usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        self.systemd.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}", "STATUS=reloading the configuration")
        try:
            policy = load_policy(self.config_arg, self.env)
        except KeyrollError as exc:
            log.error("reload failed, keeping the previous configuration: %s", exc)
            self.systemd.send("READY=1", self._status("reload failed, previous config kept"))
            return
        if policy.paths != self.policy.paths:
            log.warning("reload: new paths take effect after a restart; keeping %s", self.policy.paths.state_dir)
            policy = records.replace(policy, paths=self.policy.paths)
        self.policy = policy
        log.info("configuration reloaded from %s", policy.source or "the embedded default")
        self._schedule(after_cycle=False)
        self.systemd.send("READY=1", self._status("configuration reloaded"))

    # --- cycles -----------------------------------------------------------------------

    def _recover_at_start(self) -> None:
        """Finish or undo what a killed keyroll left in flight, before READY=1.
        Rotations missed while the daemon was down follow as the first cycle."""
        from keyroll.actions.rotate import recover

        started = time.time()
        try:
            recovery = recover(self.policy, wait=LOCK_WAIT, should_stop=self.stopping.is_set)
        except KeyrollError as exc:
            log.error("recovery at start failed: %s", exc)
            self._last_failed = True
            self._metrics(started, exc.exit_code)
            self._notify_failure(f"recovery at start failed: {exc}")
            return
        report = CycleReport(started=utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), recovery=recovery)
        self._metrics(started, report.exit_code)
        self._log_cycle(report)
        if recovery.outcomes:
            self._notify(report)

    def _cycle(self) -> None:
        """Run one cycle (at start: recovery and catch-up), notify, schedule the next."""
        with self._cycle_lock:
            if self.stopping.is_set():
                return
            self._cycle_started = time.monotonic()
            self._last_start = utcnow()
            started = time.time()
            report: CycleReport | None = None
            problem = ""
            code = EXIT_FAILURE
            try:
                report = run_cycle(self.policy, wait=LOCK_WAIT, should_stop=self.stopping.is_set)
                code = report.exit_code
            except LockHeld as exc:
                log.warning("cycle postponed: %s", exc)
            except KeyrollError as exc:
                problem = f"the cycle failed: {exc}"
                code = exc.exit_code
                log.error("%s", problem)
            except Exception as exc:
                problem = f"the cycle failed unexpectedly ({type(exc).__name__})"
                log.exception("%s", problem)
            finally:
                self._cycle_started = None
            self._metrics(started, code)
            self._last_failed = report is None
            if report is not None:
                self._last = report
                self._log_cycle(report)
                self._notify(report)
            elif problem:
                self._notify_failure(problem)
            if not self.stopping.is_set():
                self._schedule(after_cycle=True)
                self.systemd.send(self._status())

    def _metrics(self, started: float, code: int) -> None:
        """Rewrite the metrics file after a cycle that took the writer lock (a warning
        when that fails)."""
        from keyroll import metrics

        problem = metrics.after_run("daemon", started, code)
        if problem:
            log.warning("%s", problem)

    def _log_cycle(self, report: CycleReport) -> None:
        for source in (report.recovery, report.rotation):
            for outcome in source.outcomes if source else []:
                stopped = self.stopping.is_set() and outcome.exit_code == EXIT_TEMPFAIL  # left for next time
                level = logging.INFO if outcome.ok else logging.WARNING if stopped else logging.ERROR
                detail = f" ({outcome.message})" if outcome.message else ""
                log.log(level, "%s: %s%s", outcome.name, outcome.status, detail)
        if report.not_initialized:
            log.warning("not initialized (run `keyroll init`): %s", ", ".join(report.not_initialized))
        for name in report.recovery.retired if report.recovery else []:
            log.info("%s: old credential retired", name)

    def _notify(self, report: CycleReport) -> None:
        """The cycle's notice; once the daemon is stopping, within a short limit (the
        stop must not wait on a slow notifier)."""
        notice = cycle_notice(report, self.policy, list(self._tail.lines))
        if notice is not None:
            deliver(notice, self.policy, stopping=self.stopping.is_set, stop_limit=STOPPING_NOTICE_LIMIT)

    def _notify_failure(self, problem: str) -> None:
        """A notice for a cycle that failed as a whole (no per-secret report)."""
        notice = failure_notice(problem, self.policy, list(self._tail.lines))
        if notice is not None:
            deliver(notice, self.policy, stopping=self.stopping.is_set, stop_limit=STOPPING_NOTICE_LIMIT)

    def _schedule(self, *, after_cycle: bool) -> None:
        """One job at the next moment there is work.  After a cycle that left work it
        should have done (the whole cycle failed, or something already due when it
        began is due still: a service down, the lock busy, a rotation unresolved), back
        off, doubling from retry_min to retry_max, instead of looping."""
        from apscheduler.triggers.date import DateTrigger

        now = utcnow()
        try:
            wakeup = next_wakeup(self.policy, now)
        except KeyrollError as exc:
            log.error("cannot compute the schedule: %s", exc)
            wakeup, self._last_failed = None, True
        when, why = (wakeup.at, wakeup.why) if wakeup else (None, None)
        stuck = self._last_failed or (
            wakeup is not None and self._last_start is not None and wakeup.due <= self._last_start
        )
        if after_cycle and stuck:
            first, cap = parse_duration(self.policy.daemon.retry_min), parse_duration(self.policy.daemon.retry_max)
            when = now + min(first * (2 ** min(self._idle_retries, 30)), cap)
            why = f"retry: {why or 'the last cycle failed'}"
            self._idle_retries += 1
        elif after_cycle:
            self._idle_retries = 0
        self._next = (max(when, now), why) if when else (None, None)
        daily = now + REMINDER_EVERY
        if when is None or when > daily:
            when = daily
        when = max(when, now)
        self._scheduler.add_job(
            self._cycle, DateTrigger(run_date=when, timezone=UTC), id="cycle", replace_existing=True
        )
        log.info("next cycle at %s (%s)", _stamp(when), why or "daily reminders")

    def _status(self, note: str = "") -> str:
        when, why = self._next
        parts = [f"next: {why} at {_stamp(when)}" if when else "nothing scheduled"]
        if self._last is not None:
            report = self._last
            failed = len(report.failed)
            parts.append(f"last cycle {report.started}: {len(report.rotated)} rotated, {failed} failed")
        if note:
            parts.append(note)
        return "STATUS=" + "; ".join(parts)


def run_daemon(config: str | None) -> int:
    """Entry point for `keyroll daemon`."""
    return Daemon(config).run()
