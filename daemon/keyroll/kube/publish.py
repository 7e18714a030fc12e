"""Publishing rotated values to Kubernetes Secrets and rolling out the workloads
that read them, as one step of the rotation transaction.

The transaction calls, in order: `gate` per secret before any change (the
cluster reachable, keyroll allowed to read and write the Secrets and to patch
the workloads, no rollout already failing); `publish` once with every secret
whose stored value changed (one server-side apply per Kubernetes Secret, one
rollout restart per workload however many of its secrets changed, then one wait
for all of them); `queue_undo` for each secret it rolls back and `flush_undo`
once at the end (the previous values applied again, the workloads restarted once
more and waited for).

Each restart is journaled (txid and the exact annotation value) before it is
sent: recovery of the same transaction sends the identical patch, which changes
nothing in the pod template, so no second rollout starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from keyroll.config.kubernetes import SecretKey, Workload, is_workload_spec, parse_secret_key, parse_workload
from keyroll.config.policy import Policy, SecretPolicy
from keyroll.errors import FleetNotConverged, KeyrollError, ServiceUnavailable, TargetError, combined_exit_code
from keyroll.journal import Journal
from keyroll.kube import syncreport as sr
from keyroll.kube.client import (
    Cluster,
    KubeError,
    KubeUnavailable,
    describe_secret,
    describe_workload,
    value_digest,
)
from keyroll.kube.rollout import FAILED, rollout_state, wait_rollouts
from keyroll.records import field, record

RESTART_META = "kube-restart:"

ValueOf = Callable[[str], "str | None"]


@record(frozen=True)
class KubeFailure:
    """Why one secret's Kubernetes step failed; `step` is publish, restart or rollout
    (a rollout that fails counts as a failed health check)."""

    step: str
    subject: str
    reason: str
    temporary: bool

    @property
    def kind(self) -> str:
        """How the transaction names the failed step."""
        return {"publish": "Kubernetes publish", "restart": "restart"}.get(self.step, "health check")


@record
class PublishReport:
    """What `publish` did: failures per secret, and the counts a benchmark reports."""

    failures: dict[str, KubeFailure] = field(default_factory=dict)
    secrets_applied: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    restarted_by: dict[str, list[str]] = field(default_factory=dict)  # secret -> workloads restarted for it
    timings: dict[str, float] = field(default_factory=dict)


def mappings(secret: SecretPolicy) -> list[SecretKey]:
    """The Secret keys `secret` is published to (its `kubernetes` entries, parsed)."""
    return [parse_secret_key(spec) for spec in secret.kubernetes]


def _workloads(secret: SecretPolicy) -> list[Workload]:
    return [parse_workload(spec) for spec in secret.restart if is_workload_spec(spec)]


def companions(policy: Policy, secret: SecretPolicy) -> list[SecretPolicy]:
    """The secret holding the login name stored (and published) with `secret`, if its
    target has one (an alternating PostgreSQL target's `username_secret`)."""
    target = policy.targets.get(secret.target) if secret.target else None
    name = getattr(target, "username_secret", "") if target is not None else ""
    return [policy.secrets[name]] if name in policy.secrets else []


def new_restart_value() -> str:
    """A restartedAt annotation value: RFC 3339 like kubectl's, to the microsecond so
    that a restart and its undo within one second still differ."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def holds_value(cluster: Cluster, key: SecretKey, value: str) -> bool | None:
    """Whether the cluster's Secret key holds `value` (compared by digest); None when
    the Secret or the key does not exist.  Raises KeyrollError when it cannot tell."""
    key = cluster.resolve_key(key)
    data = cluster.read_secret(key.namespace, key.secret)
    if data is None or key.key not in data:
        return None
    return value_digest(data[key.key]) == value_digest(value)


class KubeSession:
    """The Kubernetes side of one writing command."""

    def __init__(
        self,
        policy: Policy,
        journal: Journal | None,
        should_stop: Callable[[], bool] | None = None,
        failpoint: Callable[[str], None] = lambda step: None,
    ) -> None:
        from keyroll.schedule import parse_duration

        self.policy = policy
        self.journal = journal
        self.cluster = Cluster(policy.kubernetes, policy.env, policy.config_dir)
        self.rollout_timeout = parse_duration(policy.kubernetes.rollout_timeout).total_seconds()
        self._should_stop = should_stop
        self._failpoint = failpoint
        self._checked: dict[object, KeyrollError | None] = {}
        self._unreachable: KeyrollError | None = None
        self._restarted: set[Workload] = set()  # restarted in this command
        self._undo: dict[str, str | None] = {}  # secret -> txid, waiting for flush_undo
        # [gitops] publish = ["kubernetes"]: Flux applies the committed manifests; keyroll waits (up to this
        # many seconds, one deadline per command) until the cluster's Secrets hold the values, never applies them.
        self.gitops_timeout: float | None = None
        if policy.gitops is not None and "kubernetes" in policy.gitops.publish:
            self.gitops_timeout = parse_duration(policy.gitops.converge_timeout).total_seconds()
        self._gitops_deadline: float | None = None

    def close(self) -> None:
        self.cluster.close()

    # --- what a secret touches ------------------------------------------------------------

    def keys_of(self, secret: SecretPolicy) -> list[SecretKey]:
        return [self.cluster.resolve_key(k) for k in mappings(secret)]

    def workloads_of(self, secret: SecretPolicy) -> list[Workload]:
        return [self.cluster.resolve_workload(w) for w in _workloads(secret)]

    def _secret_values(self, namespace: str, name: str, value_of: ValueOf) -> dict[str, str]:
        """Every key keyroll maps into one Kubernetes Secret, with its value (secrets
        without a value are left out)."""
        values: dict[str, str] = {}
        for secret in self.policy.secrets.values():
            for key in self.keys_of(secret):
                if (key.namespace, key.secret) == (namespace, name):
                    value = value_of(secret.name)
                    if value is not None:
                        values[key.key] = value
        return values

    # --- the gate ---------------------------------------------------------------------------

    def _check(self, subject: object, check: Callable[[], None]) -> None:
        if subject not in self._checked:
            if self._unreachable is not None:
                self._checked[subject] = self._unreachable
            else:
                try:
                    check()
                    self._checked[subject] = None
                except ServiceUnavailable as exc:
                    self._checked[subject] = exc
                    self._unreachable = exc
                except KeyrollError as exc:
                    self._checked[subject] = exc
        if (problem := self._checked[subject]) is not None:
            raise problem

    def gate(self, secret: SecretPolicy, value_of: ValueOf) -> None:
        """Before any change: keyroll can read and write each mapped Secret and patch
        each workload, and no workload's rollout is already failing.  Raises a
        KeyrollError naming the object (75 when the API server cannot be reached).
        The Secrets of the login name stored with the secret (an alternating target's
        `username_secret`) are checked too: they are published in the same step."""
        keys = [key for s in (secret, *self._companions(secret)) for key in self.keys_of(s)]
        for key in keys:
            ns, name = key.namespace, key.secret

            def check_secret(ns: str = ns, name: str = name) -> None:
                self.cluster.read_secret(ns, name)
                if self.gitops_timeout is None:  # (with [gitops], Flux writes the Secret: reading it is enough)
                    self.cluster.apply_secret(ns, name, self._secret_values(ns, name, value_of), dry_run=True)

            self._check((ns, name), check_secret)
        for workload in self.workloads_of(secret):

            def check_workload(workload: Workload = workload) -> None:
                state = rollout_state(workload.kind, self.cluster.read_workload(workload))
                if state.state == FAILED:
                    raise TargetError(
                        f"{describe_workload(workload)}: its rollout is already failing ({state.message})"
                    )
                self.cluster.restart_workload(workload, new_restart_value(), dry_run=True)

            self._check(workload, check_workload)

    def _companions(self, secret: SecretPolicy) -> list[SecretPolicy]:
        return companions(self.policy, secret)

    def require_reachable(self, secret: SecretPolicy) -> None:
        """For recovery, before it drives an interrupted rotation forward or back: raise
        KubeUnavailable (75) when the API server cannot be reached, so the rotation
        stays in flight rather than being undone while the pods may already run the
        new value.  Any answer (even 403 or 404) will do; once out of reach in this
        command, the next secrets fail at once."""
        if not secret.involves_kubernetes:
            return
        with self.cluster.failing_fast(fresh=False):
            try:
                keys = self.keys_of(secret)
                if keys:
                    self.cluster.read_secret(keys[0].namespace, keys[0].secret)
                else:
                    self.cluster.read_workload(self.workloads_of(secret)[0])
            except KubeError:
                pass

    # --- publish, restart, wait ----------------------------------------------------------------

    def _inputs(self, workload: Workload, value_of: ValueOf) -> str:
        """A fingerprint of every value keyroll publishes for the secrets `workload`
        reads: a journaled restart is re-sent only while they are the same."""
        parts = []
        for secret in self.policy.secrets.values():
            if workload in self.workloads_of(secret) and secret.kubernetes:
                parts.append(f"{secret.name}={value_of(secret.name)}")
        joined = "\n".join(sorted(parts))
        if self.journal is not None and self.journal.can_fingerprint:
            return self.journal.fingerprint(joined)
        return value_digest(joined)

    def _holds(self, namespace: str, name: str, values: Mapping[str, str]) -> bool:
        """Whether the Secret already holds each of `values` (compared by digest)."""
        data = self.cluster.read_secret(namespace, name) or {}
        return all(k in data and value_digest(data[k]) == value_digest(v) for k, v in values.items())

    def _put(self, namespace: str, name: str, values: Mapping[str, str]) -> None:
        """The Secret holds `values` afterwards: applied by keyroll, or (with [gitops]) applied by
        Flux from the committed manifests, which keyroll waits for (FleetNotConverged after the
        deadline)."""
        if self.gitops_timeout is None:
            self.cluster.apply_secret(namespace, name, values)
            return
        import time

        if self._gitops_deadline is None:
            self._gitops_deadline = time.monotonic() + self.gitops_timeout
        while not self._holds(namespace, name, values):
            if time.monotonic() >= self._gitops_deadline or (self._should_stop is not None and self._should_stop()):
                raise FleetNotConverged(
                    f"{describe_secret(namespace, name)} does not hold the committed values after "
                    f"{self.gitops_timeout:g}s (has Flux applied the commit?)"
                )
            time.sleep(0.2)

    def _annotation(self, workload: Workload, txids: Iterable[str], inputs: str = "") -> str:
        """The restartedAt value for `workload`: the one journaled by the same
        transaction for the same published values if any (recovery re-sends it:
        no second rollout), else a new one, journaled before it is sent."""
        key = f"{RESTART_META}{workload.kind}/{workload.namespace}/{workload.name}"
        txids = set(txids)
        if self.journal is not None:
            saved = self.journal.get_meta(key)
            if saved:
                txid, saved_inputs, value = [*saved.split(" ", 2), "", ""][:3]
                if txid in txids and inputs and saved_inputs == inputs:
                    return value
        value = new_restart_value()
        if self.journal is not None:
            self.journal.set_meta({key: f"{min(txids) if txids else '-'} {inputs or '-'} {value}"})
        return value

    def publish(self, changed: Mapping[str, str], value_of: ValueOf, txids: Mapping[str, str]) -> PublishReport:
        """Apply the new values (`changed`: secret -> new value; `value_of` gives every
        other secret's value) to their Kubernetes Secrets, restart each workload of a
        changed secret once, and wait for the rollouts.  `txids`: each changed secret's
        transaction (for the journaled restart)."""
        import time

        report = PublishReport()
        involved = [self.policy.secrets[n] for n in changed if self.policy.secrets[n].involves_kubernetes]
        if not involved:
            return report

        def current(name: str) -> str | None:
            return changed[name] if name in changed else value_of(name)

        started = time.perf_counter()
        # The Secrets of the changed secrets, and every other Secret that a workload to
        # restart reads when it lacks the values it should hold (in recovery, an earlier
        # interrupted step may not have sent them), so that the new pods start on
        # exactly the values the journaled restart was made for.
        affected = {w for secret in involved for w in self.workloads_of(secret)}
        targets: dict[tuple[str, str], list[str]] = {}
        for secret in involved:
            for key in self.keys_of(secret):
                targets.setdefault((key.namespace, key.secret), []).append(secret.name)
        extra: set[tuple[str, str]] = set()
        for secret in self.policy.secrets.values():
            if secret.name not in changed and affected.intersection(self.workloads_of(secret)):
                readers = [s.name for s in involved if set(self.workloads_of(s)) & set(self.workloads_of(secret))]
                for key in self.keys_of(secret):
                    where = (key.namespace, key.secret)
                    if where not in targets:
                        extra.add(where)
                    targets.setdefault(where, []).extend(readers)
        with self.cluster.failing_fast():  # (the API server gone: the rest fail at once)
            for (ns, name), names in targets.items():
                try:
                    values = self._secret_values(ns, name, current)
                    if (ns, name) in extra and self._holds(ns, name, values):
                        continue
                    self._put(ns, name, values)
                    report.secrets_applied.append(f"{ns}/{name}")
                except KeyrollError as exc:
                    step = "converge" if isinstance(exc, FleetNotConverged) else "publish"
                    for n in names:
                        report.failures.setdefault(n, _failure(step, describe_secret(ns, name), exc))
        if targets:
            self._failpoint("kube-publish")
        report.timings["publish"] = time.perf_counter() - started

        started = time.perf_counter()
        users: dict[Workload, list[str]] = {}
        for secret in involved:
            if secret.name in report.failures:
                continue
            for workload in self.workloads_of(secret):
                users.setdefault(workload, []).append(secret.name)
        restarted: list[Workload] = []
        with self.cluster.failing_fast():  # (the API server gone: the rest fail at once)
            for workload, names in users.items():
                try:
                    value = self._annotation(
                        workload, (txids.get(n, "") for n in names), self._inputs(workload, current)
                    )
                    self.cluster.restart_workload(workload, value)
                    self._restarted.add(workload)
                    restarted.append(workload)
                    report.restarted.append(describe_workload(workload))
                    for n in names:
                        report.restarted_by.setdefault(n, []).append(f"kubernetes:{describe_workload(workload)}")
                except KeyrollError as exc:
                    for n in names:
                        report.failures.setdefault(n, _failure("restart", describe_workload(workload), exc))
        if restarted:
            self._failpoint("kube-restart")
        report.timings["restart"] = time.perf_counter() - started

        started = time.perf_counter()
        problems = wait_rollouts(self.cluster, restarted, self.rollout_timeout, self._should_stop)
        if restarted:
            self._failpoint("kube-wait")
        for workload, problem in problems.items():
            for n in users[workload]:
                report.failures.setdefault(
                    n,
                    KubeFailure(
                        "rollout", describe_workload(workload), _without(problem, describe_workload(workload)), True
                    ),
                )
        report.timings["wait"] = time.perf_counter() - started
        return report

    # --- undo -----------------------------------------------------------------------------

    def queue_undo(self, name: str, txid: str | None = None) -> None:
        """The secret went back to its previous value: put it back in the cluster too
        (at `flush_undo`).  `txid`: in recovery, the interrupted transaction (its
        journaled restarts are restarted again)."""
        if self.policy.secrets[name].involves_kubernetes:
            self._undo[name] = txid

    def _restarted_by(self, workload: Workload, txid: str | None) -> bool:
        if workload in self._restarted:
            return True
        if txid is None or self.journal is None:
            return False
        saved = self.journal.get_meta(f"{RESTART_META}{workload.kind}/{workload.namespace}/{workload.name}")
        return saved is not None and saved.partition(" ")[0] == txid

    def flush_undo(self, value_of: ValueOf) -> dict[str, str]:
        """Apply the previous values of the queued secrets, restart (once each) the
        workloads restarted for them, and wait; return what failed, per secret."""
        queued, self._undo = self._undo, {}
        problems: dict[str, str] = {}
        if not queued:
            return problems
        targets: dict[tuple[str, str], list[str]] = {}
        for name in queued:
            for key in self.keys_of(self.policy.secrets[name]):
                targets.setdefault((key.namespace, key.secret), []).append(name)
        with self.cluster.failing_fast():  # (the API server gone: the rest fail at once)
            for (ns, name), names in targets.items():
                try:
                    self._put(ns, name, self._secret_values(ns, name, value_of))
                except KeyrollError as exc:
                    for n in names:
                        problems.setdefault(
                            n, f"{exc}; it still holds the new value: run `keyroll kubernetes sync --restart`"
                        )
        users: dict[Workload, list[str]] = {}
        for name, txid in queued.items():
            for workload in self.workloads_of(self.policy.secrets[name]):
                if self._restarted_by(workload, txid):
                    users.setdefault(workload, []).append(name)
        restarted = []
        with self.cluster.failing_fast(fresh=False):  # (gone while applying: no restart is sent either)
            for workload, names in users.items():
                try:
                    self.cluster.restart_workload(workload, self._annotation(workload, ()))
                    restarted.append(workload)
                except KeyrollError as exc:
                    for n in names:
                        problems.setdefault(n, str(exc))
        for workload, problem in wait_rollouts(
            self.cluster, restarted, self.rollout_timeout, self._should_stop
        ).items():
            for n in users[workload]:
                problems.setdefault(n, problem)
        return problems

    # --- sync and drift ---------------------------------------------------------------------

    def drift(self, values: Mapping[str, str | None]) -> list[str]:
        """Keys of the cluster's Secrets that differ from the store (compared by
        digest), one line each, naming the key and never a value."""
        lines = []
        cache: dict[tuple[str, str], dict[str, bytes] | None] = {}
        for secret in self.policy.secrets.values():
            value = values.get(secret.name)
            for key in self.keys_of(secret):
                where = (key.namespace, key.secret)
                if where not in cache:
                    cache[where] = self.cluster.read_secret(*where)
                data = cache[where]
                if value is None:
                    continue
                if data is None:
                    lines.append(f"{secret.name}: {describe_secret(*where)} does not exist")
                elif key.key not in data:
                    lines.append(f"{secret.name}: {describe_secret(*where)} has no key {key.key}")
                elif value_digest(data[key.key]) != value_digest(value):
                    lines.append(f"{secret.name}: {describe_secret(*where)} key {key.key} differs from the store")
        return lines

    def sync(
        self,
        values: Mapping[str, str | None],
        *,
        dry_run: bool = False,
        restart: bool = False,
        unreadable: Mapping[str, str] | None = None,
    ) -> sr.SyncResult:
        """Apply every mapped value from the store now (and, with `restart`, restart
        every workload that reads a Secret that changed); one line per action, the same
        per Secret and workload as records, and the exit code.  A Secret or workload
        that fails does not stop the others (its line says why); the API server out of
        reach stops at once (75).  `unreadable` (secret -> the store's one-line error):
        each is reported (exit 1), and no Secret holding one of its keys is applied."""
        result = sr.SyncResult(dry_run=dry_run)
        lines = result.lines
        codes = [0]
        unreadable = unreadable or {}
        lines.extend(unreadable.values())
        codes.extend(1 for _ in unreadable)
        blocked: dict[tuple[str, str], str] = {}
        for name in unreadable:
            if name in self.policy.secrets:
                for key in self.keys_of(self.policy.secrets[name]):
                    blocked.setdefault((key.namespace, key.secret), name)
        changed_secrets: set[tuple[str, str]] = set()
        targets: dict[tuple[str, str], None] = {}
        for secret in self.policy.secrets.values():
            for key in self.keys_of(secret):
                targets.setdefault((key.namespace, key.secret), None)
        with self.cluster.failing_fast():
            for ns, name in targets:
                differs: list[str] = []
                if (ns, name) in blocked:
                    reason = f"{blocked[(ns, name)]} cannot be read from the store"
                    lines.append(f"{describe_secret(ns, name)}: {reason}; not updated")
                    codes.append(1)
                    result.secrets.append(sr.SecretSync(ns, name, sr.FAILED, (), reason))
                    continue
                try:
                    wanted = self._secret_values(ns, name, values.get)
                    existing = self.cluster.read_secret(ns, name)
                    data = existing or {}
                    differs = sorted(
                        k for k, v in wanted.items() if k not in data or value_digest(data[k]) != value_digest(v)
                    )
                    if not differs:
                        lines.append(f"{describe_secret(ns, name)}: up to date")
                        result.secrets.append(sr.SecretSync(ns, name, sr.UNCHANGED))
                        continue
                    if not dry_run:
                        self.cluster.apply_secret(ns, name, wanted)
                    changed_secrets.add((ns, name))
                except (KubeError, KubeUnavailable) as exc:  # (a kubeconfig keyroll cannot use: raised)
                    lines.append(f"{exc}; not updated")
                    codes.append(exc.exit_code)
                    reason = _one_line(str(exc), describe_secret(ns, name))
                    result.secrets.append(sr.SecretSync(ns, name, sr.FAILED, tuple(differs), reason))
                    continue
                verb = (
                    ("would create" if dry_run else "created")
                    if existing is None
                    else ("would update" if dry_run else "updated")
                )
                lines.append(f"{describe_secret(ns, name)}: {verb} {', '.join(differs)}")
                status = sr.WOULD_APPLY if dry_run else sr.APPLIED
                result.secrets.append(sr.SecretSync(ns, name, status, tuple(differs)))
        if restart:
            to_restart: dict[Workload, None] = {}
            for secret in self.policy.secrets.values():
                if any((k.namespace, k.secret) in changed_secrets for k in self.keys_of(secret)):
                    for workload in self.workloads_of(secret):
                        to_restart.setdefault(workload, None)
            restarted = []
            outcome: dict[Workload, tuple[str, str]] = {}
            with self.cluster.failing_fast():
                for workload in to_restart:
                    try:
                        if not dry_run:
                            self.cluster.restart_workload(workload, self._annotation(workload, ()))
                            restarted.append(workload)
                    except (KubeError, KubeUnavailable) as exc:
                        lines.append(f"{exc}; not restarted")
                        codes.append(exc.exit_code)
                        outcome[workload] = (sr.FAILED, _one_line(str(exc), describe_workload(workload)))
                        continue
                    lines.append(f"{describe_workload(workload)}: {'would restart' if dry_run else 'restarted'}")
                    outcome[workload] = (sr.WOULD_RESTART if dry_run else sr.RESTARTED, "")
            if restarted:
                problems = wait_rollouts(self.cluster, restarted, self.rollout_timeout, self._should_stop)
                lines.extend(problems.values())
                codes.extend(ServiceUnavailable.exit_code for _ in problems)
                for workload, problem in problems.items():
                    outcome[workload] = (sr.FAILED, _one_line(problem, describe_workload(workload)))
            for workload, (status, reason) in outcome.items():
                result.workloads.append(
                    sr.WorkloadSync(workload.kind, workload.namespace, workload.name, status, reason)
                )
        result.exit_code = combined_exit_code(codes)
        return result


def check_drift(policy: Policy, values: Mapping[str, str | None]) -> tuple[list[str], str | None]:
    """For `status` and `validate`: the mapped keys whose cluster value differs from
    the store's (by digest, never printed), and a warning instead when the cluster
    cannot be asked.  Nothing to check (no mapping): ([], None)."""
    from keyroll.kube.manifests import any_mapped

    if not any_mapped(policy):
        return [], None
    session = KubeSession(policy, None)
    session.cluster.timeout = 5.0
    try:
        return session.drift(values), None
    except KeyrollError as exc:
        return [], f"cannot compare the Kubernetes Secrets with the store: {exc}"
    finally:
        session.close()


def _without(reason: str, subject: str) -> str:
    return reason.removeprefix(f"{subject}: ")


def _one_line(reason: str, subject: str) -> str:
    """A failure's message for --json: its first line, without the subject it names."""
    first = reason.splitlines()[0] if reason else ""
    return _without(first, subject)


def _failure(step: str, subject: str, exc: KeyrollError) -> KubeFailure:
    return KubeFailure(step, subject, _without(str(exc), subject), isinstance(exc, ServiceUnavailable))


def plan_lines(policy: Policy, names: Sequence[str], *, workloads: bool = True) -> list[str]:
    """What a rotation of `names` would change in the cluster (no API call): the
    Kubernetes Secrets and (with `workloads`) the workloads, each once."""
    namespace = policy.kubernetes.namespace or "(default namespace)"
    secrets: dict[str, None] = {}
    restarts: dict[str, None] = {}
    for name in names:
        secret = policy.secrets[name]
        for key in (k for s in (secret, *companions(policy, secret)) for k in mappings(s)):
            secrets.setdefault(f"{key.namespace or namespace}/{key.secret} (key {key.key})", None)
        for workload in _workloads(secret) if workloads else ():
            restarts.setdefault(f"{workload.kind} {workload.namespace or namespace}/{workload.name}", None)
    lines = [f"Kubernetes Secret {s}" for s in secrets]
    lines += [f"rollout restart {w}" for w in restarts]
    return lines


__all__ = ["KubeFailure", "KubeSession", "PublishReport", "check_drift", "holds_value", "plan_lines"]
