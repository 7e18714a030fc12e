"""`keyroll rotate`, `set` and `rollback`: changes that go through the transaction."""

from __future__ import annotations

from collections.abc import Callable

from keyroll.config.policy import Policy, SecretPolicy
from keyroll.consumers import describe_restart, missing_program
from keyroll.errors import EXIT_TEMPFAIL, BackupError, KeyrollError, UsageError
from keyroll.generate import size_problem, unstorable, value_problem
from keyroll.journal import Journal
from keyroll.outcomes import Outcome, TxReport
from keyroll.outputs import hold
from keyroll.records import field, record
from keyroll.rotation import Change, WriterSession
from keyroll.schedule import utcnow
from keyroll.text import shown


@record
class PlanItem:
    """One step of a dry-run plan, in execution order."""

    order: int
    name: str
    target: str | None
    restart: list[str]
    health: list[str]
    services: tuple[str, ...]
    store_only: bool
    notes: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # an http target's: method and URL only
    kubernetes: list[str] = field(default_factory=list)  # Kubernetes Secret keys the value is published to


def _outside_window(secret: SecretPolicy) -> str | None:
    if secret.window is None or secret.window.contains(utcnow()):
        return None
    return f"outside its window ({secret.window.text}, UTC); use --emergency to rotate now"


def plan(policy: Policy, names: list[str], *, emergency: bool = False) -> list[PlanItem]:
    """What `rotate` would do, in order, without changing or locking anything."""
    from keyroll.store import open_store
    from keyroll.targets import open_target

    secrets = policy.select(names)
    admins = policy.admin_secrets()
    secrets.sort(key=lambda s: s.name in admins)
    journal = Journal.open_read(policy.paths)
    inflight = journal.inflight_names() if journal else {}
    store = open_store(policy)
    items = []
    for order, secret in enumerate(secrets, 1):
        target = None
        requests: list[str] = []
        if secret.target:
            opened = open_target(policy, secret.target, secret.name, lambda n: None)
            target = opened.describe()
            requests = getattr(opened, "requests", list)()
        item = PlanItem(
            order,
            secret.name,
            target,
            [describe_restart(spec) for spec in secret.restart],
            [shown(spec) for spec in secret.health],
            secret.services,
            secret.store_only,
            requests=requests,
        )
        info = store.inspect(secret.name)
        if info.problem:
            item.notes.append(f"cannot be read: {info.problem}")
        elif not info.exists:
            item.notes.append("missing from the store: run `keyroll init` first")
        if secret.name in inflight:
            item.notes.append("a rotation is in flight: `keyroll recover` runs first")
        if secret.name in admins:
            item.notes.append("admin credential of other targets: rotated after them")
        item.notes += filter(None, map(missing_program, (*secret.restart, *secret.health)))
        if secret.kubernetes:
            from keyroll.kube.publish import plan_lines

            item.kubernetes = plan_lines(policy, [secret.name], workloads=False)
        if not emergency and (why := _outside_window(secret)):
            item.notes.append(f"skipped: {why}")
        items.append(item)
    if journal:
        journal.close()
    return items


@record
class PublishPlan:
    """[gitops]: the files a change would commit, where it would push, and what stops it."""

    files: list[str]
    push: str | None
    problem: str | None = None


def gitops_plan(policy: Policy) -> PublishPlan | None:
    """What [gitops] would commit and push (None without the section); read-only."""
    if policy.gitops is None:
        return None
    from keyroll.gitops import Publisher
    from keyroll.store import open_store

    store = open_store(policy)
    publisher = Publisher(policy, store, None)
    result = PublishPlan([], policy.gitops.push or None)
    try:
        result.files = publisher.planned()
        publisher.check_ready()
    except KeyrollError as exc:
        result.problem = str(exc)
        result.files = result.files or [str(publisher.given / policy.gitops.path / store.location.name)]
    return result


def rotate(
    policy: Policy,
    names: list[str],
    *,
    emergency: bool = False,
    wait: float = 0.0,
    reason: str = "before rotate",
) -> TxReport:
    """Rotate the named secrets (or all) through the transaction, after a backup."""
    secrets = policy.select(names)
    skipped: list[Outcome] = []
    changes = []
    for secret in secrets:
        why = None if emergency else _outside_window(secret)
        if why:
            skipped.append(Outcome(secret.name, "rotate", "skipped", EXIT_TEMPFAIL, why, services=secret.services))
        else:
            changes.append(Change(secret.name, "rotate"))
    with WriterSession(policy, wait=wait) as session:
        report = (
            session.transact(changes, emergency=emergency, reason=reason)
            if changes
            else TxReport(recovery=session.recovery)
        )
    report.outcomes.extend(skipped)
    return report


def check_value(secret: SecretPolicy, value: str, *, allow_weak: bool = False) -> str | None:
    """Refuse what cannot be stored as one value (empty, several lines, NUL, larger
    than max_length) and, unless `allow_weak`, a value that breaks the secret's policy
    (its length and alphabet: what `validate` checks); with `allow_weak`, say how an
    existing credential being adopted departs from it.  Never echoes the value."""
    why = unstorable(value)
    if why:
        raise UsageError(f"{secret.name}: the value {why}: it must be one line of UTF-8 text; nothing was changed")
    if too_large := size_problem(value, secret.max_length):
        raise UsageError(f"{secret.name}: the value {too_large}; nothing was changed")
    problem = value_problem(value, secret.length, secret.alphabet)
    if problem and not allow_weak:
        raise UsageError(
            f"{secret.name}: the value {problem}; nothing was changed (to adopt a credential as it is: "
            f"`keyroll set {secret.name} --allow-weak`, then `keyroll rotate {secret.name}`)"
        )
    if problem:
        return f"stored as given, but it {problem}: `keyroll rotate {secret.name}` replaces it with one that does"
    return None


def set_value(policy: Policy, name: str, value: str, *, wait: float = 0.0, allow_weak: bool = False) -> TxReport:
    """Store a given value (read from stdin by the CLI), e.g. to adopt the credential a
    service has today.  With a target: recorded only if the service already accepts it,
    else applied and tested.  A value outside the policy is refused (UsageError, nothing
    changed) unless `allow_weak`: then it is stored with a warning."""
    secret = policy.changeable(name)
    hold(value)  # (a program's output holding part of it is withheld)
    warning = check_value(secret, value, allow_weak=allow_weak)
    with WriterSession(policy, wait=wait) as session:
        report = session.transact([Change(name, "set", value)], reason="before set")
    for outcome in report.outcomes:
        if warning and outcome.ok:
            outcome.message = "; ".join(filter(None, [outcome.message, warning]))
    return report


def previous_value(policy: Policy, name: str) -> tuple[str, str | None]:
    """The value `name` had before its last change (from the newest backup that
    holds it), and that value's rotation time."""
    from keyroll import backup as backups
    from keyroll.store import open_store

    journal = Journal.open_read(policy.paths)
    record = journal.record(name) if journal else None
    if record is None or not record.previous_fingerprint:
        raise BackupError(f"{name}: no previous value is recorded (it was never rotated by keyroll)")
    assert journal is not None
    store = open_store(policy)
    try:
        for name_of_backup in reversed(backups.backup_names(policy.paths.backup_dir)):
            try:
                contents = backups.read_backup(policy.paths.backup_dir / name_of_backup, policy)
                values = store.restore_snapshot(contents.files, contents.store_kind)
            except KeyrollError:
                continue
            value = values.get(name)
            if value is not None and journal.fingerprint(value) == record.previous_fingerprint:
                rotated = contents.metadata.get(name, {}).get("rotated")
                return value, rotated if isinstance(rotated, str) else None
    finally:
        journal.close()
    raise BackupError(f"{name}: no verified backup holds its previous value")


def rollback(policy: Policy, name: str, *, wait: float = 0.0) -> TxReport:
    """Go back to the previous value, through the transaction (services follow)."""
    policy.changeable(name)
    value, rotated = previous_value(policy, name)
    with WriterSession(policy, wait=wait) as session:
        return session.transact([Change(name, "rollback", value, rotated=rotated)], reason="before rollback")


def recover(policy: Policy, *, wait: float = 0.0, should_stop: Callable[[], bool] | None = None) -> TxReport:
    """Finish or undo whatever a killed command left in flight (what is left when
    `should_stop` says so stays in flight for the next time)."""
    with WriterSession(policy, wait=wait, should_stop=should_stop) as session:
        return session.recovery
