"""The rotation transaction and its recovery (the heart of keyroll).

Modelled on AWS Secrets Manager's create / set / test / finish with a durable
write-ahead journal.  For every secret the order holds: the pending value is
durable in the journal before any service sees it; the service has accepted it
(tested with a fresh login) before the store says it is current; consumers are
restarted and healthy before the old credential is retired.  Any failure puts
the target and the store back to the old value.  A process killed at any point
leaves an in-flight entry that `recover` (run at the start of every writing
command) drives forward or back until store, journal and service agree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from keyroll import backup as backups
from keyroll import consumers, metrics, stopping
from keyroll.config.policy import Policy, SecretPolicy
from keyroll.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_TEMPFAIL,
    EncryptionRequired,
    KeyrollError,
    NotAValue,
    ServiceUnavailable,
    TargetError,
)
from keyroll.fsutil import ensure_dir
from keyroll.generate import generate
from keyroll.journal import APPLIED, STORED, VERIFIED, Completion, InFlight, Journal, new_txid
from keyroll.lock import FileLock
from keyroll.outcomes import Outcome, TxReport
from keyroll.permissions import refuse_untrusted
from keyroll.records import record, replace
from keyroll.schedule import to_iso, utcnow
from keyroll.store import open_store
from keyroll.targets import Connections, Target, open_target
from keyroll.text import shown

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from keyroll.gitops import FleetWait, Publisher
    from keyroll.kube.publish import KubeSession
    from keyroll.store import Store

FAILPOINT_ENV = "KEYROLL_FAILPOINT"
# Steps at which KEYROLL_FAILPOINT=<step> (or <step>:<n>, the n-th time) kills the
# process with SIGKILL.  Inactive unless the variable is set; for crash tests.
FAILPOINTS = (
    "backup",
    "create",
    "apply",
    "verify",
    "store-write",
    "store",
    "git-write",
    "git-commit",
    "git-push",
    "restart",
    "converge",
    "retire",
    "finish",
    "recover",
)
# keyroll.kube's steps (after the Secrets are applied, the restarts sent, the rollouts waited for).
KUBE_FAILPOINTS = ("kube-publish", "kube-restart", "kube-wait")
_failpoint_hits: dict[str, int] = {}


def failpoint(step: str) -> None:
    """Die here, without cleanup, if KEYROLL_FAILPOINT names this step."""
    wanted = os.environ.get(FAILPOINT_ENV)
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name != step:
        return
    _failpoint_hits[step] = _failpoint_hits.get(step, 0) + 1
    if _failpoint_hits[step] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


SUCCESS_WORDS = {"rotate": "rotated", "set": "set", "restore": "restored", "rollback": "rolled back", "init": "created"}


@record(frozen=True)
class Change:
    """One secret to change.  `value` None means: generate a fresh one."""

    name: str
    op: str  # rotate | set | restore | rollback | init
    value: str | None = None
    rotated: str | None = None  # the value's own rotation time, when it is not now (restore)


@record
class _Step:
    change: Change
    secret: SecretPolicy
    old: str | None
    new: str
    target: Target | None = None
    record_only: bool = False  # the service already accepts the value
    applied: bool = False
    outcome: Outcome | None = None

    @property
    def name(self) -> str:
        return self.change.name

    @property
    def changes_store(self) -> bool:
        return self.old != self.new


def _exit_code_of(exc: BaseException) -> int:
    return EXIT_TEMPFAIL if isinstance(exc, ServiceUnavailable) else EXIT_FAILURE


def secrets_folder_mode(policy: Policy) -> int:
    """0700, or 0711 when some secret may be read by other users (its group, a
    container): they must pass through the folder, but never list it."""
    return 0o711 if any(secret.mode & 0o077 for secret in policy.secrets.values()) else 0o700


def refuse_unusable(policy: Policy, store: Store) -> None:
    """The refusals every writer makes before it creates anything (exit 2): a
    plaintext store where encryption is required, an owner or group that does not
    exist on this machine, a folder, file or program others can change."""
    refuse_untrusted(policy)
    if policy.require_encrypted and store.is_plaintext():
        raise EncryptionRequired(
            f"encryption is required (REQUIRE_ENCRYPTED_SECRETS): the {store.kind} store "
            f'{store.location} keeps plaintext; use [store] kind = "sops"'
        )
    if store.kind == "directory":
        from keyroll.store.directory import ownership

        for secret in policy.secrets.values():
            ownership(secret)


# Operations that bring their own value (or a new one): they may replace a plain file
# whose bytes are not a value (not UTF-8), where a rotation refuses to guess.
_REPLACES_UNREADABLE = ("set", "restore", "init")
_HEALTHY_AGAIN = "; healthy again on the previous value, so the new one is refused"


def _interrupted(entry: InFlight) -> str:
    """What stopped a rotation recovery resolves: its phase, and the error it was left
    in flight with (a failure whose undo failed too), if any."""
    return f"{entry.op} interrupted after {entry.phase}" + (f" ({entry.error})" if entry.error else "")


def _with_exit_codes(completions: list[Completion], outcomes: list[Outcome]) -> list[Completion]:
    """The completions with their secret's final exit code, for the history (it tells a
    temporary failure, 75, from a hard one once this run's report is gone)."""
    codes = {o.name: o.exit_code for o in outcomes}
    return [replace(c, exit_code=codes[c.name]) if c.exit_code is None and c.name in codes else c for c in completions]


class WriterSession:
    """A writing command's hold on the state folder: the writer lock, the journal,
    the store, and a completed recovery.  Use as a context manager."""

    def __init__(
        self,
        policy: Policy,
        *,
        wait: float = 0.0,
        recover: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.policy = policy
        self.store: Store = open_store(policy)
        self._wait = wait
        self._run_recovery = recover
        self._lock = FileLock(policy.paths.writer_lock, "writer")
        self._journal: Journal | None = None
        self._live: dict[str, str | None] = {}
        self._targets: dict[str, Target] = {}
        self._connections = Connections()
        self._should_stop: Callable[[], bool] = stopping.requested(should_stop)
        self._signals = contextlib.ExitStack()
        self._timings: dict[str, float] = {}
        self.recovery = TxReport()
        self.backup_left_out: dict[str, str] = {}  # secret files the last backup could not hold, and why
        self._git: Publisher | None = None
        self._kube_waiting: dict[str, str] = {}  # [gitops]: secrets whose cluster Secrets lag the commit
        self._kube: KubeSession | None = None
        self._fleet: FleetWait | None = None  # [gitops]: one deadline for the whole command

    # --- session ----------------------------------------------------------------------

    def __enter__(self) -> WriterSession:
        refuse_unusable(self.policy, self.store)
        paths = self.policy.paths
        ensure_dir(paths.state_dir)
        self._lock.acquire(self._wait)
        metrics.note(self.policy)  # (a writing run: the command's end rewrites the metrics)
        self._signals.enter_context(stopping.deferred())  # from here, a stop waits for a safe point
        try:
            ensure_dir(paths.secrets_dir, secrets_folder_mode(self.policy), enforce=self.store.kind == "directory")
            ensure_dir(paths.backup_dir)
            self._journal = Journal.open_write(paths)
            self._prepare_journal(self._journal)
            if self._run_recovery:
                self.recovery = self.recover()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._connections.close()  # (closing must not hide the real result: it never raises)
        if self._kube is not None:
            self._kube.close()
        self._targets.clear()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self._lock.release()
        self._signals.close()

    def _prepare_journal(self, journal: Journal) -> None:
        """Hook for stores that encrypt the journal's pending values."""
        prepare = getattr(self.store, "prepare_journal", None)
        if callable(prepare):
            prepare(journal)

    @property
    def journal(self) -> Journal:
        assert self._journal is not None, "WriterSession used outside its with-block"
        return self._journal

    def stop_requested(self) -> bool:
        """Whether keyroll is asked to stop (a deferred signal, or the caller's check)."""
        return self._should_stop()

    @staticmethod
    def _cancel(step: _Step, completions: list[Completion]) -> None:
        """A step not started because keyroll is stopping: a temporary failure (75)."""
        assert step.outcome is not None
        step.outcome.status, step.outcome.exit_code = "cancelled", EXIT_TEMPFAIL
        step.outcome.message = "not started: keyroll was stopping; run it again"
        completions.append(Completion(step.name, step.change.op, "cancelled", "keyroll was stopping"))

    def _holds_no_value(self, name: str) -> bool:
        """The secret's file is a plain file whose bytes are no value (not UTF-8), as
        opposed to one that cannot be read at all (a symlink, no permission)."""
        try:
            self.store.read(name)
        except NotAValue:
            return True
        except KeyrollError:
            return False
        return False

    # --- live values and targets --------------------------------------------------------

    def live_value(self, name: str) -> str | None:
        """The value the services accept right now for `name` (the store's, unless a
        target has been changed in this session)."""
        if name not in self._live:
            self._live[name] = self.store.read(name)
        return self._live[name]

    def target_for(self, secret: SecretPolicy) -> Target | None:
        if secret.target is None:
            return None
        if secret.target not in self._targets:
            self._targets[secret.target] = open_target(
                self.policy, secret.target, secret.name, self.live_value, self._connections
            )
        return self._targets[secret.target]

    def gitops(self) -> Publisher | None:
        """The [gitops] side of this command (keyroll.gitops), when the policy has one."""
        if self._git is None and self.policy.gitops is not None:
            from keyroll.gitops import Publisher

            self._git = Publisher(self.policy, self.store, self._journal)
        return self._git

    def kube(self) -> KubeSession | None:
        """The Kubernetes side of this command (keyroll.kube), when the policy uses Kubernetes."""
        if self._kube is None and self.policy.uses_kubernetes():
            from keyroll.kube.publish import KubeSession

            self._kube = KubeSession(self.policy, self._journal, self._should_stop, failpoint)
        return self._kube

    def _admin_value(self, name: str) -> str | None:
        value = self.live_value(name)
        if value is None:
            raise TargetError(
                f"the admin secret {name} is missing from the store; adopt its current value with `keyroll set {name}`"
            )
        return value

    @contextlib.contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        """Add the time spent in the block to `step` (reported in TxReport.timings)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._timings[step] = self._timings.get(step, 0.0) + time.perf_counter() - started

    def _admin_last(self, names: Iterable[str]) -> set[str]:
        return self.policy.admin_secrets() & set(names)

    # --- backup -------------------------------------------------------------------------

    def backup(self, reason: str, protect: Iterable[str] = ()) -> Path | None:
        """A verified backup of the whole store; None when the store is empty.
        Retention never deletes it, nor the backups named in `protect`.  A plaintext
        store's files are age-encrypted to `[backup] encrypt_to` when it is set; a
        SOPS bundle is kept as it is (already encrypted).  Under
        REQUIRE_ENCRYPTED_SECRETS a backup that would hold plaintext is refused
        before anything is written."""
        plaintext = self.store.is_plaintext()
        encrypt_to = tuple(self.policy.backup.encrypt_to) if plaintext else ()
        if self.policy.require_encrypted and plaintext and not encrypt_to:
            raise EncryptionRequired(
                f"encryption is required (REQUIRE_ENCRYPTED_SECRETS): a backup of the {self.store.kind} store "
                f"{self.store.location} would hold plaintext; set [backup] encrypt_to"
            )
        files = self.store.snapshot(self.policy.secrets)  # (declared secrets only)
        if not files:
            return None
        names = [name for name in self.store.entries() if name in self.policy.secrets]
        secret_count = len(names)
        if self.store.kind == "directory":  # one file per secret: say which could not be read
            left_out = [n for n in names if n not in files]
            self.backup_left_out = {n: self.store.inspect(n).problem or "cannot be read" for n in left_out}
            secret_count = len(files)
        failpoint("backup")
        records = self.journal.records()
        metadata = {
            name: {
                "kind": r.kind,
                "version": r.version,
                "created": r.created,
                "rotated": r.rotated,
                "fingerprint": r.fingerprint,
            }
            for name, r in records.items()
        }
        return backups.create_backup(
            self.policy.paths.backup_dir,
            files,
            metadata,
            store_kind=self.store.kind,
            reason=reason,
            now=utcnow(),
            keep=self.policy.backup.keep,
            secret_count=secret_count,
            encrypted=not plaintext,
            encrypt_to=encrypt_to,
            require_encrypted=self.policy.require_encrypted,
            protect=set(protect),
        )

    # --- the transaction ----------------------------------------------------------------

    def transact(
        self,
        changes: list[Change],
        *,
        emergency: bool = False,
        take_backup: bool = True,
        reason: str = "before rotate",
    ) -> TxReport:
        """Carry each change through create, set, test and finish; report every outcome."""
        report = TxReport(recovery=self.recovery)
        metrics.note(self.policy, report)
        should_stop = self._should_stop
        self._timings = {}
        txid = new_txid()
        inflight = self.journal.inflight_names()
        completions: list[Completion] = []
        steps: list[_Step] = []
        settling: list[str] = []  # unresolved rotations a `set` replaces once it begins
        admin_names = self._admin_last(c.name for c in changes)
        ordered = sorted(changes, key=lambda c: c.name in admin_names)

        # 1. Read the current values; refuse what cannot be read (never rotate blindly).
        with self._timed("read"):
            values, errors = self.store.read_all([c.name for c in ordered])
        for change in ordered:
            secret = self.policy.secret(change.name)
            outcome = Outcome(change.name, change.op, "failed", services=secret.services, store_only=secret.store_only)
            report.outcomes.append(outcome)
            if change.name in inflight:
                if change.op == "set":
                    settling.append(change.name)
                else:
                    outcome.exit_code = EXIT_TEMPFAIL
                    outcome.message = "a rotation of it is still in flight; run `keyroll recover`"
                    continue
            if change.name in errors:
                replaceable = self.store.kind == "directory" and self._holds_no_value(change.name)
                if replaceable and change.op in _REPLACES_UNREADABLE:
                    # The value given replaces it; the backup taken first keeps its bytes.
                    values[change.name] = None
                    outcome.message = f"replaced an unreadable file ({errors[change.name]})"
                else:
                    hint = f"; `keyroll restore` or `keyroll set {change.name}` replaces it" if replaceable else ""
                    outcome.exit_code = EXIT_FAILURE
                    outcome.message = f"cannot be read, not rotating it blindly: {errors[change.name]}{hint}"
                    completions.append(Completion(change.name, change.op, "failed", outcome.message))
                    continue
            old = values[change.name]
            if old is None and change.op in ("rotate", "rollback"):
                outcome.exit_code = EXIT_FAILURE
                outcome.message = "missing from the store, not rotated: `keyroll restore` brings it back, `keyroll init` makes a new one"
                completions.append(Completion(change.name, change.op, "failed", outcome.message))
                continue
            new = change.value if change.value is not None else generate(secret.length, secret.alphabet)
            step = _Step(change, secret, old, new, outcome=outcome)
            self._live.setdefault(change.name, old)
            steps.append(step)

        # 2. Preflight: every target reachable and willing; consumers healthy; the
        #    [gitops] repository able to take a commit (else exit 2, nothing changed).
        if steps and (git := self.gitops()) is not None:
            git.check_ready()
        with self._timed("check"):
            steps = self._preflight(steps, completions)
        if steps and should_stop():  # nothing changed yet: not even a backup
            for step in steps:
                self._cancel(step, completions)
            steps = []

        # 3. Backup, before the first change.
        if steps and take_backup:
            try:
                with self._timed("backup"):
                    report.backup = self.backup(reason)
            except KeyrollError as exc:
                for step in steps:
                    self._fail_outcome(step, exc, "not rotated without a backup")
                    completions.append(Completion(step.name, step.change.op, "failed", str(exc)))
                self.journal.complete(txid, _with_exit_codes(completions, report.outcomes))
                return report

        # 4. Create: pending values durable before any service sees them.
        if steps:
            with self._timed("create"):
                entries = [(s.name, s.change.op, s.new, s.old, s.secret.target) for s in steps]
                started = {s.name for s in steps}
                settled = [n for n in settling if n in started]
                self.journal.begin(txid, entries, emergency=emergency, replacing=settled)
                for outcome in self.recovery.outcomes:
                    if outcome.name in settled:  # no longer a failure: this `set` takes it over
                        outcome.status, outcome.exit_code = "settled", EXIT_OK
                        outcome.message = "the interrupted rotation is settled by this `keyroll set`"
            failpoint("create")

        # 5. Set and test, target by target (admin credentials last).
        verified: list[_Step] = []
        for step in steps:
            if step.target is None or step.record_only:
                verified.append(step)
                continue
            if should_stop():
                self._cancel(step, completions)
                continue
            if self._apply_and_verify(step, completions):
                verified.append(step)

        # 6. Finish: store, consumers, retirement, journal.
        completions += self._finish(verified, emergency)
        failpoint("finish")
        with self._timed("finish"):
            self.journal.complete(txid, _with_exit_codes(completions, report.outcomes))
        report.timings = dict(self._timings)
        return report

    def _preflight(self, steps: list[_Step], completions: list[Completion]) -> list[_Step]:
        ready: list[_Step] = []
        checked: dict[str, BaseException | None] = {}
        for step in steps:
            if self._should_stop():  # not checked: transact cancels it
                ready.append(step)
                continue
            try:
                target = self.target_for(step.secret)
                step.target = target
                if target is not None:
                    assert step.secret.target is not None
                    # Adopting a value the service already takes needs no change and no admin login.
                    step.record_only = step.change.op != "rotate" and target.accepts(step.new)
                    if not step.record_only:
                        if step.old is None and target.needs_old:
                            # The account changes its own password: keyroll must log in with the current one.
                            raise TargetError(
                                f"{target.describe()}: the service does not accept this value, and keyroll cannot "
                                f"change it without the current password, which {step.name} does not have"
                                if step.change.op == "set"
                                else f"{target.describe()}: keyroll logs in with the current password to change "
                                f"it, and {step.name} has none in the store; adopt it first with "
                                f"`keyroll set {step.name}`"
                            )
                        if step.secret.target not in checked:
                            try:
                                target.check()
                                checked[step.secret.target] = None
                            except KeyrollError as exc:
                                checked[step.secret.target] = exc
                        if (problem := checked[step.secret.target]) is not None:
                            raise problem
                if step.changes_store and step.old is not None:
                    # (A secret being created has no consumers running on it yet.)
                    for spec in (*step.secret.restart, *step.secret.health):
                        if missing := consumers.missing_program(spec):
                            raise TargetError(f"{shown(spec)}: {missing}")
                    failures = consumers.check_health(step.secret.health, step.name, 0, self.policy.env)
                    if failures:
                        raise ServiceUnavailable(f"consumers already unhealthy before any change ({failures[0]})")
                if step.changes_store and (kube := self.kube()) is not None:
                    kube.gate(step.secret, self.live_value)
            except KeyrollError as exc:
                # (init has nothing to rotate: it created nothing, and running it again creates it)
                not_done = (
                    "not created: `keyroll init` creates it once that is fixed"
                    if step.change.op == "init"
                    else "not rotated"
                )
                self._fail_outcome(step, exc, not_done)
                completions.append(Completion(step.name, step.change.op, "failed", str(exc)))
                continue
            ready.append(step)
        return ready

    def _fail_outcome(self, step: _Step, exc: BaseException, consequence: str) -> None:
        assert step.outcome is not None
        step.outcome.status = "failed"
        step.outcome.exit_code = _exit_code_of(exc)
        step.outcome.message = f"{exc}; {consequence}"

    def _apply_and_verify(self, step: _Step, completions: list[Completion]) -> bool:
        assert step.target is not None and step.outcome is not None
        try:
            step.applied = True
            with self._timed("apply"):
                step.target.apply(step.new, step.old)
                self._live[step.name] = step.new
                self.journal.advance([step.name], APPLIED)
            failpoint("apply")
            with self._timed("verify"):
                step.target.verify(step.new)
                self.journal.advance([step.name], VERIFIED)
            failpoint("verify")
            return True
        except KeyrollError as exc:
            completions += self._undo(step, exc, restore_store=False)
            return False

    def _undo(self, step: _Step, exc: BaseException, *, restore_store: bool) -> list[Completion]:
        """Put the target (and, if asked, the store and consumers) back to the old value.

        Returns the completion to record, or none when the undo itself failed: the
        rotation then stays in flight for recovery, with its values kept."""
        assert step.outcome is not None
        self._fail_outcome(step, exc, "rolled back to the previous value")
        try:
            if step.target is not None and step.applied and not step.record_only:
                step.target.rollback(step.old, step.new)
            self._live[step.name] = step.old
            if restore_store and step.changes_store and step.old is not None:
                pair = {step.name: step.old, **self._companions(step.target, step.old)}
                self.store.write(pair, self.policy.secrets)
                self._live.update(pair)
                step.outcome.restarted = [s for s in step.secret.restart]
                consumers.restart(step.secret.restart, step.name, self.policy.env)
                if (kube := self.kube()) is not None:
                    for name in pair:  # (the login name too; sent once for all, at the end of _finish)
                        kube.queue_undo(name)
        except KeyrollError as undo_exc:
            step.outcome.exit_code = _exit_code_of(undo_exc)
            step.outcome.message = f"{exc}; rolling back failed too ({undo_exc}); left in flight for `keyroll recover`"
            self.journal.note_error(step.name, f"{exc}; rolling back failed too ({undo_exc})")  # (recovery tells it)
            return []
        return [Completion(step.name, step.change.op, "failed", f"{exc}; rolled back")]

    def _finish(self, steps: list[_Step], emergency: bool) -> list[Completion]:
        """Store the verified values, restart consumers, check health, retire old credentials."""
        completions: list[Completion] = []
        to_store = {s.name: s.new for s in steps if s.changes_store}
        companions: dict[str, dict[str, str]] = {}  # step -> login name stored with it (alternating)
        try:
            with self._timed("store"):
                for s in steps:
                    if s.changes_store and (extra := self._companions(s.target, s.new)):
                        companions[s.name] = extra
                        to_store.update(extra)
                self.store.write(to_store, self.policy.secrets, before_rename=lambda: failpoint("store-write"))
                if to_store:
                    self.journal.advance(to_store, STORED)
        except KeyrollError as exc:
            for step in steps:
                completions += self._undo(step, exc, restore_store=False)
            return completions
        known: set[str] = set()  # [gitops]: every value that must never reach git in the clear
        if to_store:
            failpoint("store")
            if self.policy.gitops is not None:
                try:
                    with self._timed("git"):
                        known = self._stored_values() | {s.old for s in steps if s.changes_store and s.old}
                        self._publish(steps, known)
                except KeyrollError as exc:
                    return completions + self._unpublish(steps, exc, known)
        fleet = self._fleet_wait()
        for step in steps:
            self._live[step.name] = step.new
        kube_failures = self._publish_to_kubernetes(steps, companions)
        for step in steps:
            with self._timed("consumers"):
                failures = kube_failures.get(step.name) or self._restart_consumers(step)
            if failures:
                completions += self._consumers_failed(step, failures)
                continue
            with self._timed("converge"):
                waiting = self._kube_waiting.pop(step.name, None) or (
                    fleet.wait(step.name, step.secret.converge)
                    if fleet and not emergency and step.changes_store and step.old is not None
                    else None
                )
            with self._timed("retire"):
                self._retire_or_queue(step, emergency, hold=waiting is not None)
            completions.append(self._success(step))
            for name, value in companions.get(step.name, {}).items():
                self._live[name] = value
                detail = f"login name in use for {step.name}"
                completions.append(Completion(name, step.change.op, "follows", detail, kind="username", value=value))
            if waiting is not None:
                self._hold_for_fleet(step, waiting)
            elif fleet is not None and step.name in self._held_for_fleet():
                from keyroll import gitops

                gitops.release(self.journal, [step.name])  # (a newer rotation's wait passed, or --emergency)
        if to_store and self.policy.gitops is not None:
            self._republish_undone(steps, completions, known)  # (before the cluster waits for the previous values)
        self._undo_in_kubernetes(steps)
        return completions

    @staticmethod
    def _companions(target: Target | None, value: str | None) -> dict[str, str]:
        """What is stored in the same write as `value` (an alternating target's login
        name for that password), so no store ever pairs a password with the wrong login."""
        return target.companion_values(value) if target is not None and value is not None else {}

    def _republish_undone(self, steps: list[_Step], completions: list[Completion], known: set[str]) -> None:
        """[gitops]: secrets rolled back after their commit was pushed (a restart or health
        check failed): the repository gets the previous values back in a new commit,
        pushed, so that the fleet does not deploy values their service no longer takes.
        `known`: the values never to commit in the clear (read once, at the publish)."""
        undone = {c.name for c in completions if c.outcome == "failed"}
        rolled = [s for s in steps if s.name in undone and s.changes_store]
        git = self.gitops()
        if not rolled or git is None:
            return
        known = known | {s.new for s in rolled}
        try:
            with self._timed("git"):
                git.republish([s.name for s in rolled], rolled[0].change.op, known)
        except KeyrollError as exc:
            for step in rolled:
                assert step.outcome is not None
                step.outcome.exit_code = EXIT_FAILURE
                step.outcome.message += (
                    f"; the fleet's repository still holds the new value ({exc}): "
                    f"`keyroll rotate {step.name}` publishes a value the service accepts"
                )

    def _fleet_wait(self) -> FleetWait | None:
        """[gitops]: the wait for the fleet before old credentials are retired, the same for
        the whole command (recovery and the transaction share one deadline)."""
        if self.policy.gitops is None:
            return None
        if self._fleet is not None:
            return self._fleet
        from keyroll.gitops import FleetWait
        from keyroll.schedule import parse_duration

        def check(specs: tuple[str, ...], name: str, timeout: float) -> list[consumers.ConsumerFailure]:
            git = self.gitops()
            env = {**self.policy.env, "KEYROLL_COMMIT": git.git.head() if git is not None else ""}
            return consumers.check_health(specs, name, timeout, env, self._should_stop)

        def sessions_left(name: str, spec: str) -> str | None:
            """sessions:previous: the sessions still open on the login in use before the rotation."""
            target = self.target_for(self.policy.secrets[name])
            value = self.live_value(name)
            counted = getattr(target, "sessions_of", None)
            if target is None or value is None or not callable(counted):
                return None
            for login in target.other_credentials(value):
                if (count := counted(login)) > 0:
                    return f"{count} session(s) of {login} still open"
            return None

        timeout = parse_duration(self.policy.gitops.converge_timeout).total_seconds()
        self._fleet = FleetWait(timeout, check, failpoint, sessions_left)
        return self._fleet

    def _publish(self, steps: list[_Step], known: set[str]) -> None:
        """[gitops]: the store's files into the repository, one commit, pushed (keyroll.gitops);
        refused when a file holds one of `known` in the clear."""
        git = self.gitops()
        assert git is not None
        changed = [s for s in steps if s.changes_store]
        txids = self.journal.inflight_txids()
        git.publish(txids[changed[0].name], changed[0].change.op, [s.name for s in changed], known, failpoint)

    def _unpublish(self, steps: list[_Step], exc: KeyrollError, known: set[str]) -> list[Completion]:
        """The publish failed (conflict, unreachable remote, plaintext): the store and the
        targets go back to the old values in one store write, then the repository (a
        new commit undoes keyroll's own, never a force-push).  A store that cannot be
        put back leaves everything in flight for recovery."""
        olds: dict[str, str] = {}
        for s in steps:
            if s.changes_store and s.old is not None:
                olds.update({s.name: s.old, **self._companions(s.target, s.old)})  # (with its login name)
        try:
            self.store.write(olds, self.policy.secrets)
        except KeyrollError as undo_exc:
            for step in steps:
                self._fail_outcome(
                    step, exc, f"rolling back failed too ({undo_exc}); left in flight for `keyroll recover`"
                )
                self.journal.note_error(step.name, str(undo_exc))
            return []
        completions: list[Completion] = []
        for step in steps:
            completions += self._undo(step, exc, restore_store=False)
        git = self.gitops()
        assert git is not None
        try:
            git.unpublish(f"Rolled back: {exc}", known | {s.new for s in steps if s.changes_store})
        except KeyrollError as git_exc:
            for step in steps:
                if step.outcome is not None:
                    step.outcome.message += f"; the repository still holds the new files ({git_exc})"
        return completions

    def _stored_values(self) -> set[str]:
        """Every value in the store that must never reach git in the clear (login names are no secret)."""
        values, _ = self.store.read_all(list(self.policy.secrets))
        return {v for n, v in values.items() if v and self.policy.secrets[n].kind != "username"}

    def _hold_for_fleet(self, step: _Step, waiting: str) -> None:
        """The fleet did not converge in time: the value stays, the old credential too (75)."""
        from keyroll import gitops

        gitops.hold(self.journal, [step.name], to_iso(utcnow()))
        assert step.outcome is not None
        step.outcome.exit_code = EXIT_TEMPFAIL
        step.outcome.message = "; ".join(
            filter(None, [step.outcome.message, f"{waiting}; the old credential is kept; the next run waits again"])
        )

    def _publish_to_kubernetes(
        self, steps: list[_Step], companions: dict[str, dict[str, str]]
    ) -> dict[str, list[consumers.ConsumerFailure]]:
        """Publish every changed value (and the login names stored with them) to its
        Kubernetes Secrets, restart each affected workload once and wait for the
        rollouts (keyroll.kube); the failures per secret (a login name's count as its
        password's)."""
        kube = self.kube()
        changed = {s.name: s.new for s in steps if s.changes_store}
        owner_of = {name: step for step, extra in companions.items() for name in extra}
        for extra in companions.values():
            changed.update(extra)
        if kube is None or not changed:
            return {}
        report = kube.publish(changed, self.live_value, self.journal.inflight_txids())
        for phase, seconds in report.timings.items():
            self._timings[f"kubernetes-{phase}"] = self._timings.get(f"kubernetes-{phase}", 0.0) + seconds
        for step in steps:
            if step.outcome is not None:
                step.outcome.restarted += report.restarted_by.get(step.name, [])
        # [gitops]: the cluster did not get the committed values in time: a wait, not a failure.
        self._kube_waiting = {
            owner_of.get(n, n): f"{f.subject}: {f.reason}" for n, f in report.failures.items() if f.step == "converge"
        }
        failures: dict[str, list[consumers.ConsumerFailure]] = {}
        for name, f in report.failures.items():
            if f.step == "converge":
                continue
            failure = consumers.ConsumerFailure(f.subject, f.reason, f.temporary, kind=f.kind)
            failures.setdefault(owner_of.get(name, name), []).append(failure)
        return failures

    def _undo_in_kubernetes(self, steps: list[_Step]) -> None:
        """Put the previous values of the secrets rolled back back into the cluster
        (one restart per workload); still failing on them: a temporary failure (75)."""
        if self._kube is None:
            return
        problems = self._kube.flush_undo(self.live_value)
        for step in steps:
            if step.name in problems and step.outcome is not None:
                step.outcome.exit_code = EXIT_TEMPFAIL
                # (the health checks passed before the cluster went back: not healthy again after all)
                step.outcome.message = step.outcome.message.replace(_HEALTHY_AGAIN, "")
                step.outcome.message += (
                    f"; the previous value did not come back in Kubernetes either ({problems[step.name]}): "
                    "retry once the cluster is healthy"
                )

    def _restart_consumers(self, step: _Step) -> list[consumers.ConsumerFailure]:
        """Restart what reads a changed secret, then wait for its health checks."""
        secret = step.secret
        if not step.changes_store or not (secret.restart or secret.health):
            return []
        assert step.outcome is not None
        failures = consumers.restart(secret.restart, step.name, self.policy.env)
        step.outcome.restarted = list(secret.restart)
        failpoint("restart")
        if not failures and secret.health:
            timeout = secret.health_timeout.total_seconds()
            failures = consumers.check_health(secret.health, step.name, timeout, self.policy.env, self._should_stop)
        return failures

    def _consumers_failed(self, step: _Step, failures: list[consumers.ConsumerFailure]) -> list[Completion]:
        """Roll a secret back after its consumers failed to restart or to become healthy."""
        assert step.outcome is not None
        kind = failures[0].kind or ("restart" if failures[0].spec in step.secret.restart else "health check")
        # An unhealthy service may recover (retry later, 75); a restart that cannot run will not (1).
        error = ServiceUnavailable if failures[0].temporary else TargetError
        problem = error(f"{kind} failed: {failures[0]}")
        if step.old is None:
            # Just created: there is nothing to go back to, so keep (and record) it.
            completion = self._success(step)
            step.outcome.exit_code = problem.exit_code  # a restart that cannot run: 1; an outage: 75
            step.outcome.message = f"{problem}; kept: there is no previous value to go back to"
            # The new value stays current: a credential the account had before (a dual
            # password, the other alternating login) goes after the grace, as on success;
            # never at once, as the consumers that did not restart may still use it.
            self._retire_or_queue(step, emergency=False, hold=True)
            return [completion]
        completions = self._undo(step, problem, restore_store=True)
        if completions and kind == "health check" and failures[0].temporary:
            # Healthy again on the previous value: the new one is the cause, not a passing outage (1, not 75).
            timeout = step.secret.health_timeout.total_seconds()
            again = consumers.check_health(step.secret.health, step.name, timeout, self.policy.env, self._should_stop)
            if again:
                step.outcome.message += "; still unhealthy on the previous value: retry once the service is back"
            else:
                step.outcome.exit_code = EXIT_FAILURE
                step.outcome.message += _HEALTHY_AGAIN
        return completions

    def _retire_or_queue(self, step: _Step, emergency: bool, hold: bool = False) -> None:
        """Every credential the account holds besides the value now current (the one
        left behind, one set before keyroll, one still in an earlier grace period) is
        removed now (--emergency, or no grace) or queued until the grace ends; the value
        now current is never retired, even if an earlier rotation had queued it (going
        back within the grace period)."""
        target = step.target
        if target is None or not target.keeps_old or step.old == step.new:
            return
        current = target.retirement_token(step.new)
        if current is not None:
            self.journal.retired(step.name, current)
        left_behind = target.retirement_token(step.old) if step.old is not None else None
        tokens = {left_behind} if left_behind else set()
        try:
            tokens.update(target.other_credentials(step.new))
        except KeyrollError as exc:
            assert step.outcome is not None
            step.outcome.message = f"could not list the account's other credentials ({exc})"
        tokens.discard(current)  # (other_credentials leaves it out; a rollback's "old" may equal it)
        now = (emergency or target.grace <= timedelta(0)) and not hold  # (held: until the fleet converges)
        for token in sorted(tokens):
            if now:
                failpoint("retire")
                try:
                    target.retire(token)
                    self.journal.retired(step.name, token)
                    continue
                except KeyrollError as exc:
                    assert step.outcome is not None
                    step.outcome.message = f"old credential not yet removed ({exc}); will retry"
            self.journal.queue_retirement(
                step.name, target.name, token, utcnow() + (timedelta(0) if now else target.grace)
            )

    def _success(self, step: _Step) -> Completion:
        assert step.outcome is not None
        outcome = step.outcome
        adopted = step.record_only and step.change.op == "set"
        outcome.status = "adopted" if adopted else SUCCESS_WORDS.get(step.change.op, "done")
        outcome.exit_code = EXIT_OK
        if step.target is not None:
            outcome.target = step.target.describe()
        return Completion(
            step.name,
            step.change.op,
            outcome.status,
            outcome.message,
            kind=step.secret.kind,
            value=step.new,
            rotated=step.change.rotated,
        )

    # --- recovery -----------------------------------------------------------------------

    def recover(self) -> TxReport:
        """Finish or undo every rotation left in flight; remove temp files; retire
        old credentials whose grace has passed.  Idempotent, and safe to interrupt."""
        report = TxReport()
        metrics.note(self.policy, report)
        report.removed_temp = self.store.remove_temp_files() + backups.remove_partial_backups(
            self.policy.paths.backup_dir
        )
        entries = self.journal.inflight()
        admins = self.policy.admin_secrets()
        if self.policy.gitops is not None and entries:
            entries = self._recover_gitops_before(entries, report)
        for entry in sorted(entries.values(), key=lambda e: e.name not in admins):
            if self._should_stop():  # the rest stay in flight, safely, for the next start
                report.outcomes.append(
                    Outcome(entry.name, entry.op, "unresolved", EXIT_TEMPFAIL, "left in flight: keyroll was stopping")
                )
                continue
            failpoint("recover")
            report.outcomes.append(self._recover_entry(entry))
        if self.policy.gitops is not None:
            self._recover_gitops_after(report)
        report.retired = [] if self._should_stop() else self.retire_due()  # (due ones wait for the next run)
        return report

    def _recover_entry(self, entry: InFlight) -> Outcome:
        secret = self.policy.secrets.get(entry.name)
        outcome = Outcome(entry.name, entry.op, "unresolved", EXIT_FAILURE)
        if secret is None:
            outcome.message = "interrupted rotation of a secret no longer in the policy; its values stay in the journal"
            return outcome
        outcome.services, outcome.store_only = secret.services, secret.store_only
        change = Change(entry.name, entry.op, entry.pending)
        try:
            if (kube := self.kube()) is not None:
                kube.require_reachable(secret)  # (the cluster out of reach: stays in flight, 75)
            current = self.store.read(entry.name)
            target = self.target_for(secret) if entry.target and secret.target == entry.target else None
            if target is None:
                if current not in (entry.old, entry.pending):
                    raise KeyrollError(
                        f"{entry.name} was changed by hand after the interrupted rotation; keyroll leaves it "
                        f"as it is: store the value its services use with `keyroll set {entry.name}`"
                    )
                # Store only: no service checks the value; drive forward (store it, restart
                # the consumers, which may or may not have been restarted before the kill).
                step = _Step(change, secret, entry.old, entry.pending, outcome=outcome)
                return self._recover_forward(entry, step)
            # Learn which value the service takes first: when the secret is its own (or
            # another target's) login, that is the password to log in with.
            if target.accepts(entry.pending):
                self._live[entry.name] = entry.pending
            elif entry.old is not None:
                self._live[entry.name] = entry.old
            target.wait_idle(30.0)  # a killed keyroll's change may still land: decide after it has
            if target.accepts(entry.pending):
                self._live[entry.name] = entry.pending
                step = _Step(change, secret, entry.old, entry.pending, target, applied=True, outcome=outcome)
                return self._recover_forward(entry, step)
            if entry.old is not None and target.accepts(entry.old):
                self._live[entry.name] = entry.old
                pair = {entry.name: entry.old, **self._companions(target, entry.old)}
                stored = {entry.name: current}  # (read above; only its login name is read now)
                if any((stored[n] if n in stored else self.store.read(n)) != value for n, value in pair.items()):
                    self.store.write(pair, self.policy.secrets)
                self._live.update(pair)
                if entry.phase == STORED and secret.restart:
                    consumers.restart(secret.restart, entry.name, self.policy.env)
                if entry.phase == STORED and (kube := self.kube()) is not None:
                    for name in pair:
                        kube.queue_undo(name, entry.txid)
                    if problem := kube.flush_undo(self.live_value).get(entry.name):
                        raise ServiceUnavailable(problem)
                detail = f"{_interrupted(entry)}; the service still had the old value, rolled back"
                self.journal.complete(entry.txid, [Completion(entry.name, entry.op, "rolled back", detail)])
                outcome.status, outcome.exit_code, outcome.message = "rolled back", EXIT_OK, detail
                return outcome
            if entry.old is None:
                detail = f"{_interrupted(entry)}; the service never took the new value: dropped, nothing to undo"
                # (as the recovery's outcome says: nothing broken, worth another try: 75)
                completion = Completion(entry.name, entry.op, "failed", detail, exit_code=EXIT_TEMPFAIL)
                self.journal.complete(entry.txid, [completion])
                outcome.status, outcome.exit_code, outcome.message = "rolled back", EXIT_OK, detail
                return outcome
            raise TargetError(
                f"{target.describe()} accepts neither the pending nor the previous value; "
                f"give it the value it accepts with `keyroll set {entry.name}`"
            )
        except KeyrollError as exc:
            self.journal.note_error(entry.name, str(exc))
            outcome.exit_code = _exit_code_of(exc)
            outcome.message = f"{exc}; still in flight"
            return outcome

    def _recover_forward(self, entry: InFlight, step: _Step) -> Outcome:
        """Finish an interrupted rotation whose new value the service (if any) accepts."""
        assert step.outcome is not None
        completions = self._finish([step], emergency=entry.emergency)
        self.journal.complete(entry.txid, _with_exit_codes(completions, [step.outcome]))
        if step.outcome.ok:
            step.outcome.status = "completed"
            step.outcome.message = f"interrupted after {entry.phase}; completed"
        return step.outcome

    def retire_due(self, force: bool = False) -> list[str]:
        """Remove old credentials whose grace period has passed (all of them if `force`)."""
        retired = []
        now = to_iso(utcnow())
        holding = self._held_for_fleet()
        for item in self.journal.retirements():
            if not force and (item.not_before > now or item.name in holding):
                continue
            if item.target not in self.policy.targets:  # (the service is no longer reachable through keyroll)
                self.journal.retired(item.name, item.credential)
                self.journal.add_history(
                    "retire", item.name, "retire", "failed",
                    f"old credential not removed: target {item.target!r} is no longer configured; remove it by hand",
                )  # fmt: skip
                continue
            # The secret that uses the target now (it may have been renamed); with none (the secret
            # moved to another target, or lost its target), the target as configured, for this name.
            users = [s for s in self.policy.secrets.values() if s.target == item.target]
            secret = next((s for s in users if s.name == item.name), users[0] if users else None)
            try:
                if secret is not None:
                    target = self.target_for(secret)
                    assert target is not None
                else:
                    target = open_target(self.policy, item.target, item.name, self.live_value, self._connections)
                name = secret.name if secret is not None else item.name
                stored = self.store.read(name) if name in self.policy.secrets else None
                if stored is not None and target.retirement_token(stored) == item.credential:
                    # The stored value came back (set, restore, rollback): never remove it.
                    self.journal.retired(item.name, item.credential)
                    continue
                target.retire(item.credential)
            except KeyrollError:
                continue  # stays queued; the next writing command or daemon cycle retries
            self.journal.retired(item.name, item.credential)
            self.journal.add_history("retire", item.name, "retire", "retired", "old credential removed")
            retired.append(item.name)
        return retired

    # --- [gitops] recovery (keyroll.gitops) -----------------------------------------------

    def _held_for_fleet(self) -> set[str]:
        """Secrets whose old credential waits until the fleet has converged."""
        if self.policy.gitops is None:
            return set()
        from keyroll import gitops

        return set(gitops.held(self.journal))

    def _recover_gitops_before(self, entries: dict[str, InFlight], report: TxReport) -> dict[str, InFlight]:
        """A transaction whose commit reached the remote goes forward (the normal
        recovery); one that did not goes back, here, and its commit is undone by a new
        one.  Returns the entries left for the normal recovery."""
        git = self.gitops()
        assert git is not None
        try:
            directions = git.direction({e.txid for e in entries.values()})
        except KeyrollError as exc:  # cannot tell whether it was pushed: it stays in flight
            state = git.state()
            stuck = {n for n, e in entries.items() if state is not None and e.txid == state.txid}
            for name in sorted(stuck):
                self.journal.note_error(name, str(exc))
                entry = entries[name]
                report.outcomes.append(
                    Outcome(name, entry.op, "unresolved", _exit_code_of(exc), f"{exc}; still in flight")
                )
            return {n: e for n, e in entries.items() if n not in stuck}
        back = [e for e in entries.values() if directions.get(e.txid) == "back" and e.old is not None]
        if back:
            outcomes = self._recover_back(back)
            report.outcomes += outcomes
            if all(o.ok for o in outcomes):
                try:
                    why = "Interrupted before the commit reached the remote; rolled back by keyroll recover."
                    git.unpublish(why, self._stored_values() | {e.pending for e in back})
                except KeyrollError as exc:
                    for outcome in outcomes:
                        outcome.message += f"; the repository still holds the new files ({exc})"
        gone = {e.name for e in back}
        return {n: e for n, e in entries.items() if n not in gone}

    def _recover_back(self, entries: list[InFlight]) -> list[Outcome]:
        """Undo interrupted rotations: each target back to the old value, then the store
        in one write, then the journal.  What cannot be undone stays in flight."""
        admins = self.policy.admin_secrets()
        outcomes: list[Outcome] = []
        undone: list[tuple[InFlight, Outcome, SecretPolicy]] = []
        olds: dict[str, str] = {}
        for entry in sorted(entries, key=lambda e: e.name not in admins):  # which login works, admins first
            secret = self.policy.secrets.get(entry.name)
            target = self.target_for(secret) if secret and entry.target and secret.target == entry.target else None
            with contextlib.suppress(KeyrollError):
                if target is not None and target.accepts(entry.pending):
                    self._live[entry.name] = entry.pending
        for entry in sorted(entries, key=lambda e: e.name in admins):  # admin credentials last
            secret = self.policy.secrets.get(entry.name)
            outcome = Outcome(entry.name, entry.op, "unresolved", EXIT_FAILURE)
            outcomes.append(outcome)
            if secret is None:
                outcome.message = (
                    "interrupted rotation of a secret no longer in the policy; its values stay in the journal"
                )
                continue
            assert entry.old is not None
            outcome.services, outcome.store_only = secret.services, secret.store_only
            try:
                target = self.target_for(secret) if entry.target and secret.target == entry.target else None
                if target is not None:
                    target.wait_idle(30.0)
                    if target.accepts(entry.pending):
                        target.rollback(entry.old, entry.pending)
                    if not target.accepts(entry.old):
                        raise TargetError(
                            f"{target.describe()} does not accept the previous value; give it the value it "
                            f"accepts with `keyroll set {entry.name}`"
                        )
                self._live[entry.name] = entry.old
                olds.update({entry.name: entry.old, **self._companions(target, entry.old)})
            except KeyrollError as exc:
                self.journal.note_error(entry.name, str(exc))
                outcome.exit_code, outcome.message = _exit_code_of(exc), f"{exc}; still in flight"
                continue
            undone.append((entry, outcome, secret))
        try:
            stored, _ = self.store.read_all(list(olds))
            self.store.write({n: v for n, v in olds.items() if stored.get(n) != v}, self.policy.secrets)
        except KeyrollError as exc:
            for entry, outcome, _ in undone:
                self.journal.note_error(entry.name, str(exc))
                outcome.exit_code, outcome.message = _exit_code_of(exc), f"{exc}; still in flight"
            return outcomes
        detail = "interrupted before its commit reached the fleet's repository; rolled back"
        by_txid: dict[str, list[Completion]] = {}
        for entry, outcome, secret in undone:
            if entry.phase == STORED and secret.restart:
                consumers.restart(secret.restart, entry.name, self.policy.env)
            by_txid.setdefault(entry.txid, []).append(Completion(entry.name, entry.op, "rolled back", detail))
            outcome.status, outcome.exit_code, outcome.message = "rolled back", EXIT_OK, detail
        for txid, completions in by_txid.items():
            self.journal.complete(txid, completions)
        return outcomes

    def _recover_gitops_after(self, report: TxReport) -> None:
        """Forget a publish whose transaction has ended; resume the wait for the fleet of
        secrets whose old credential is still held (retired once it has converged)."""
        from keyroll import gitops

        git = self.gitops()
        assert git is not None
        state = git.state()
        if state is not None and state.txid not in set(self.journal.inflight_txids().values()):
            git.done()
        holding = gitops.held(self.journal)
        fleet = self._fleet_wait()
        waited = {o.name for o in report.outcomes if o.exit_code == EXIT_TEMPFAIL}  # (driven forward just now)
        for name in sorted(holding):
            if fleet is None or self._should_stop():
                break
            if name in waited:
                continue
            secret = self.policy.secrets.get(name)
            problem = self._resume_in_kubernetes(name) if secret is not None else None
            problem = problem or (fleet.wait(name, secret.converge) if secret is not None else None)
            if problem is None:
                gitops.release(self.journal, [name])
                detail = "the fleet has the new value; its old credential may now be retired"
                report.outcomes.append(Outcome(name, "converge", "converged", EXIT_OK, detail))
            else:
                detail = f"{problem}; the old credential is kept; the next run waits again"
                report.outcomes.append(Outcome(name, "converge", "waiting", EXIT_TEMPFAIL, detail))

    def _resume_in_kubernetes(self, name: str) -> str | None:
        """[gitops] with Kubernetes: a held secret's Secrets once Flux applied them, its
        workloads restarted and rolled out; why not (yet), if so."""
        kube = self.kube()
        secret = self.policy.secrets[name]
        if kube is None or not secret.involves_kubernetes:
            return None
        value = self.live_value(name)
        if value is None:
            return None
        report = kube.publish({name: value}, self.live_value, {})
        failure = report.failures.get(name)
        return None if failure is None else f"{failure.subject}: {failure.reason}"
