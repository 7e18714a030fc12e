"""`keyroll status`: per secret, its state, size, kind, users, dates and next due.

Read-only: opens the journal read-only and never writes; a rotation left in
flight is reported with the hint to run `keyroll recover`.
"""

from __future__ import annotations

from datetime import datetime

from keyroll.config.policy import Policy, SecretPolicy
from keyroll.errors import EXIT_TEMPFAIL, StoreError
from keyroll.generate import value_problem
from keyroll.journal import HistoryEntry, Journal, SecretRecord
from keyroll.records import field, record
from keyroll.schedule import from_iso, next_due, to_iso, utcnow
from keyroll.store import EntryInfo, open_store

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from collections.abc import Mapping

    from keyroll.gitops import RepoState
    from keyroll.store import Store

OK, MISSING, WRONG_LENGTH, BAD_VALUE, MODIFIED, BAD_MODE = (
    "OK",
    "MISSING",
    "WRONG LENGTH",
    "BAD VALUE",
    "MODIFIED",
    "BAD MODE",
)
IN_FLIGHT, UNREADABLE, FAILED, UNRECORDED = "IN FLIGHT", "UNREADABLE", "FAILED", "UNRECORDED"


@record
class SecretFacts:
    """Everything known about one secret, gathered once for status and validate."""

    secret: SecretPolicy
    info: EntryInfo
    value: str | None
    read_error: str | None
    record: SecretRecord | None
    fingerprint_matches: bool | None  # None: cannot tell (no record or no key)
    inflight_phase: str | None
    last: HistoryEntry | None

    @property
    def value_problem(self) -> str | None:
        if self.value is None or self.secret.follows:  # (a login name is not a generated value)
            return None
        return value_problem(self.value, self.secret.length, self.secret.alphabet)


def gather(policy: Policy, store: Store | None = None) -> tuple[list[SecretFacts], Journal | None]:
    """Inspect every secret of the policy.  The journal is returned open (or None)."""
    store = store or open_store(policy)
    journal = Journal.open_read(policy.paths)
    records = journal.records() if journal else {}
    inflight = journal.inflight_names() if journal else {}
    last = journal.last_outcomes() if journal else {}
    facts = []
    for secret in policy.secrets.values():
        info = store.inspect(secret.name)
        value = error = None
        if info.exists and not info.problem:
            try:
                value = store.read(secret.name)
            except Exception as exc:
                error = str(exc)
        elif info.problem:
            error = info.problem
        record = records.get(secret.name)
        matches = None
        if record and value is not None and journal and journal.can_fingerprint:
            matches = journal.fingerprint(value) == record.fingerprint
        # A login name is written with its password: in flight with it.
        phase = inflight.get(secret.name) or (inflight.get(secret.follows) if secret.follows else None)
        facts.append(SecretFacts(secret, info, value, error, record, matches, phase, last.get(secret.name)))
    return facts, journal


@record
class SecretStatus:
    name: str
    state: str
    problems: list[str]
    size: int | None
    kind: str
    length: int
    entropy_bits: int
    services: list[str]
    description: str
    target: str | None
    version: int | None
    created: str | None
    rotated: str | None
    age_days: int | None
    next_due: str | None
    overdue: bool
    unattended: bool
    last_outcome: str | None


@record
class StatusReport:
    store: str
    secrets_dir: str
    initialized: bool
    secrets: list[SecretStatus] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    gitops: RepoState | None = None  # [gitops]: whether the repository holds the store's values


def missing_hint(facts: SecretFacts) -> str:
    """What to do about a secret missing from the store (status and validate)."""
    name = facts.secret.name
    if facts.record is not None:
        return (
            "missing from the store, though keyroll recorded it: bring it back with `keyroll restore` "
            "(see `keyroll list-backups`); `keyroll init` would make a new value"
        )
    if facts.secret.target:
        return (
            "missing from the store: `keyroll init` creates it if keyroll can log in to its target; "
            f"otherwise store the value the service has today with `keyroll set {name}`"
        )
    return "missing from the store; `keyroll init` creates it"


def _state(facts: SecretFacts) -> tuple[str, list[str]]:
    problems: list[tuple[str, str]] = []
    secret = facts.secret
    if facts.inflight_phase:
        problems.append((IN_FLIGHT, f"a rotation was interrupted after {facts.inflight_phase}; run `keyroll recover`"))
    if not facts.info.exists:
        problems.append((MISSING, missing_hint(facts)))
    elif facts.read_error:
        problems.append((UNREADABLE, facts.read_error))
    if facts.fingerprint_matches is False and not facts.inflight_phase:  # (in flight: the new value, not recorded yet)
        problems.append((MODIFIED, "changed outside keyroll since it was last recorded"))
    if facts.value is not None:
        problem = facts.value_problem
        if problem and len(facts.value) != secret.length:
            problems.append((WRONG_LENGTH, f"{len(facts.value)} characters; the policy says {secret.length}"))
        elif problem:
            problems.append((BAD_VALUE, f"the value {problem}"))
    if facts.info.mode is not None and facts.info.mode != secret.mode:
        problems.append((BAD_MODE, f"mode {facts.info.mode:04o}; the policy says {secret.mode:04o}"))
    if facts.last and facts.last.outcome == "failed":
        how = " (temporary: try again later)" if facts.last.exit_code == EXIT_TEMPFAIL else ""
        problems.append((FAILED, f"last {facts.last.op} failed at {facts.last.at}{how}: {facts.last.detail}"))
    if facts.value is not None and facts.record is None:
        hint = "`keyroll init` adopts it" + (
            f" if its service accepts the value; otherwise `keyroll set {secret.name}`" if secret.target else ""
        )
        problems.append((UNRECORDED, f"not recorded by keyroll yet; {hint}"))
    if not problems:
        return OK, []
    return problems[0][0], [message for _, message in problems]


def status(policy: Policy, now: datetime | None = None) -> StatusReport:
    """The state of every secret; never a value."""
    now = now or utcnow()
    store = open_store(policy)
    if store.kind == "directory" and store.location.exists() and not store.location.is_dir():
        # (not twelve "missing, `keyroll init` creates it": init cannot, while this is so)
        raise StoreError(f"{store.location}: the secrets folder exists and is not a folder")
    facts, journal = gather(policy, store)
    report = StatusReport(store.kind, str(store.location), journal is not None)
    for item in facts:
        secret, record = item.secret, item.record
        state, problems = _state(item)
        due = age = None
        if record:
            rotated = from_iso(record.rotated)
            age = (now - rotated).days
        if record and not secret.follows:  # (a login name changes with its password, never due alone)
            due = next_due(secret.name, rotated, secret.schedule, secret.window, secret.jitter)
        report.secrets.append(
            SecretStatus(
                name=secret.name,
                state=state,
                problems=problems,
                size=(  # the value's length (a trailing newline is not part of it), else the file's
                    len(item.value)
                    if item.value is not None
                    else item.info.size
                    if item.info.exists and not item.info.problem
                    else None
                ),
                kind=secret.kind,
                length=secret.length,
                entropy_bits=0 if secret.follows else secret.entropy_bits,  # a login name is no secret
                services=list(secret.services),
                description=secret.description,
                target=secret.target,
                version=record.version if record else None,
                created=record.created if record else None,
                rotated=record.rotated if record else None,
                age_days=age,
                next_due=to_iso(due) if due else None,
                overdue=bool(due and due <= now),
                unattended=secret.rotates_unattended,
                last_outcome=item.last.outcome if item.last else None,
            )
        )
    held: list[str] = []
    if journal is None:
        report.hints.append("keyroll has not written here yet: run `keyroll init`")
    else:
        if policy.gitops is not None:
            from keyroll.gitops import held as held_for_fleet

            held = sorted(held_for_fleet(journal))
        journal.close()
    if any(s.state == IN_FLIGHT for s in report.secrets):
        report.hints.append("a rotation was interrupted: run `keyroll recover` to finish or undo it")
    if policy.gitops is not None:
        report.gitops = repo_state(policy, store, {item.secret.name: item.value for item in facts})
        if held:
            from keyroll.text import shown_names

            report.hints.append(
                f"waiting for the fleet to apply {shown_names(held)}: their old credentials are kept "
                "until the converge checks pass (the next writing command waits again)"
            )
    if journal is not None and policy.uses_kubernetes():
        from keyroll.kube.publish import check_drift

        drift, warning = check_drift(policy, {item.secret.name: item.value for item in facts})
        report.hints += [f"{text}: `keyroll kubernetes sync` publishes the store's value" for text in drift]
        report.hints += [f"warning: {warning}"] if warning else []
    unmigrated = getattr(store, "unmigrated", None)  # (a SOPS store beside a folder not migrated yet)
    if unmigrated is not None and (names := unmigrated()):
        from keyroll.text import shown_names

        report.hints.append(
            f"{policy.paths.secrets_dir} holds plaintext files of secrets the bundle lacks ({shown_names(names)}): "
            "move them in with `keyroll bundle migrate`, not `keyroll init`"
        )
    return report


def repo_state(policy: Policy, store: Store, values: Mapping[str, str | None]) -> RepoState:
    """[gitops]: whether the repository's last commit holds the store's current `values`
    (as `gather` read them: the bundle the same bytes or values, each Secret manifest
    decrypted holding them; nothing is encrypted), and what is not pushed."""
    from keyroll.gitops import Publisher

    decrypt = getattr(store, "decrypt_bytes", None)

    def decrypted(raw: bytes, fmt: str, where: str) -> dict[str, object]:
        assert decrypt is not None
        return dict(decrypt(raw, fmt, where))

    return Publisher(policy, store, None).repo_state(values, decrypted if decrypt else None)
