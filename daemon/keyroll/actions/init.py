"""`keyroll init`: create every missing secret, adopt existing files as they are."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from keyroll.config.policy import Policy, SecretPolicy
from keyroll.digest import sha256
from keyroll.errors import EXIT_FAILURE, KeyrollError, UsageError
from keyroll.generate import size_problem, unstorable, value_problem
from keyroll.journal import Completion, new_txid
from keyroll.outcomes import Outcome, TxReport
from keyroll.records import field, record
from keyroll.rotation import Change, WriterSession
from keyroll.schedule import from_iso, to_iso, utcnow


@record(frozen=True)
class OldMetadata:
    """One secret's entry in the old tool's metadata JSON."""

    created: str | None
    rotated: str | None
    kind: str | None
    hash: str | None


@record
class InitReport:
    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # mode or owner set back to the policy's
    warnings: list[str] = field(default_factory=list)
    tx: TxReport = field(default_factory=TxReport)

    @property
    def exit_code(self) -> int:
        return self.tx.exit_code


def _parse_time(value: Any, where: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str):
            moment = from_iso(value.strip())
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"{where}: {value!r} is not a date (ISO 8601 or seconds since 1970)") from None
    if moment > utcnow() + timedelta(minutes=5):  # (a little clock skew is not an error)
        raise UsageError(f"{where}: {to_iso(moment)} is in the future; a secret cannot have been made or rotated then")
    return to_iso(moment)


def load_old_metadata(path: Path, known: set[str]) -> dict[str, OldMetadata]:
    """Parse the old tool's JSON metadata (name -> created, rotated, type, hash)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: metadata file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(document, dict) and isinstance(document.get("secrets"), dict):
        document = document["secrets"]
    if not isinstance(document, dict):
        raise UsageError(f"{path}: expected an object mapping secret names to their metadata")
    result = {}
    for name, entry in document.items():
        if name not in known:
            continue
        if not isinstance(entry, dict):
            raise UsageError(f"{path}: {name}: expected an object with created, rotated, type, hash")
        digest = entry.get("hash")
        created = _parse_time(entry.get("created"), f"{path}: {name}.created")
        rotated = _parse_time(entry.get("rotated"), f"{path}: {name}.rotated")
        if created and rotated and rotated < created:
            raise UsageError(f"{path}: {name}: rotated ({rotated}) is before created ({created})")
        result[name] = OldMetadata(
            created=created,
            rotated=rotated,
            kind=entry.get("type") if isinstance(entry.get("type"), str) else None,
            hash=digest.lower() if isinstance(digest, str) else None,
        )
    return result


def _matches_old_hash(value: str, digest: str) -> bool | None:
    """Whether the old tool's hash (SHA-256, of the value with or without its
    newline) matches; None when the hash is in a form we do not know."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None
    candidates = (value, value + "\n")
    return any(sha256(c.encode()).hexdigest() == digest for c in candidates)


def _service_refuses(session: WriterSession, secret: SecretPolicy, value: str) -> Outcome | None:
    """For a secret with a target: None when the service takes the existing file's
    value, else the failed outcome (never adopt a value the service would refuse)."""
    try:
        target = session.target_for(secret)
        if target is None or target.accepts(value):
            return None
        why, code = f"{target.describe()} does not accept the existing file's value", EXIT_FAILURE
    except KeyrollError as exc:
        why, code = f"cannot check the existing file's value with its service ({exc})", exc.exit_code
    hint = f"store the value the service takes with `keyroll set {secret.name}`"
    return Outcome(secret.name, "init", "failed", code, f"{why}; not adopted: {hint}")


def initialize(
    policy: Policy, *, force: bool = False, import_metadata: Path | None = None, wait: float = 0.0
) -> InitReport:
    """Create missing secrets and adopt existing ones; with `force`, regenerate
    every secret through the rotation transaction (after a backup)."""
    names = [name for name, secret in policy.secrets.items() if not secret.follows]  # (login names: below)
    old_metadata = load_old_metadata(import_metadata, set(names)) if import_metadata else {}
    report = InitReport()
    with WriterSession(policy, wait=wait) as session:
        if force:
            changes = [Change(name, "init") for name in names]
            report.tx = session.transact(changes, reason="before init --force")
            report.created = [o.name for o in report.tx.outcomes if o.ok]
            _settle_logins(session, report)
            return report
        records = session.journal.records()
        values, errors = session.store.read_all(names)
        adoptions: list[Completion] = []
        failed: list[Outcome] = []
        for name in names:
            secret = policy.secrets[name]
            value = values.get(name)
            if name in errors:
                failed.append(Outcome(name, "init", "failed", EXIT_FAILURE, f"{errors[name]}; not adopted"))
                continue
            if value is None:
                continue
            if name in records:
                report.already.append(name)
                if name in old_metadata:
                    report.warnings.append(f"{name}: already recorded by keyroll; the old metadata was not applied")
                continue
            why = unstorable(value) or size_problem(value, secret.max_length)
            if why:
                failed.append(
                    Outcome(
                        name,
                        "init",
                        "failed",
                        EXIT_FAILURE,
                        f"the existing file {why}; not adopted (fix it, or store the real value with "
                        f"`keyroll set {name}`)",
                    )
                )
                continue
            refusal = _service_refuses(session, secret, value)
            if refusal is not None:
                failed.append(refusal)
                continue
            meta = old_metadata.get(name)
            created = rotated = None
            if meta is not None:
                match = _matches_old_hash(value, meta.hash) if meta.hash else None
                if match is False:
                    report.warnings.append(
                        f"{name}: the file differs from the old metadata's hash; its dates were not imported"
                    )
                else:
                    created, rotated = meta.created, meta.rotated or meta.created
            problem = value_problem(value, secret.length, secret.alphabet)
            if problem:
                report.warnings.append(
                    f"{name}: adopted as it is, but it {problem}; `keyroll rotate {name}` replaces it"
                )
            adoptions.append(
                Completion(
                    name,
                    "init",
                    "adopted",
                    "existing file adopted",
                    kind=secret.kind,
                    value=value,
                    rotated=rotated,
                    created=created,
                )
            )
            report.adopted.append(name)
        if adoptions:
            session.journal.complete(new_txid(), adoptions)
        for name in report.adopted + report.already:
            if session.store.repair_permissions(policy.secrets[name]):
                report.repaired.append(name)
        missing = [name for name in names if values.get(name) is None and name not in errors]
        report.tx = session.transact([Change(name, "init") for name in missing], reason="before init")
        report.tx.outcomes.extend(failed)
        report.created = [o.name for o in report.tx.outcomes if o.ok and o.op == "init"]
        _settle_logins(session, report)
    return report


def _settle_logins(session: WriterSession, report: InitReport) -> None:
    """Create, adopt or correct each login name that follows a password (an alternating
    postgres target's username_secret): it must name the login the server accepts the
    stored password with (asked of the server)."""
    policy = session.policy
    records = session.journal.records()
    completions: list[Completion] = []
    for secret in policy.secrets.values():
        if not secret.follows or secret.name in report.created:
            continue
        if secret.follows in report.created and secret.name in records:  # (stored with its new password)
            report.created.append(secret.name)
            continue
        try:
            current = session.store.read(secret.name)
            if current is not None and secret.name in records:
                report.already.append(secret.name)  # (kept in step by every change of its password)
                continue
            password = session.store.read(secret.follows)
            target = session.target_for(policy.secrets[secret.follows])
            if password is None or target is None:
                continue  # (nothing to pair it with yet)
            login = target.companion_values(password).get(secret.name)
            if login is None:
                continue
            if current != login:
                session.store.write({secret.name: login}, policy.secrets)
            outcome = "created" if current is None else "adopted" if current == login else "set"
            detail = f"login name in use for {secret.follows}"
            completions.append(Completion(secret.name, "init", outcome, detail, kind=secret.kind, value=login))
            (report.created if current is None else report.adopted).append(secret.name)
        except KeyrollError as exc:
            report.tx.outcomes.append(Outcome(secret.name, "init", "failed", exc.exit_code, f"{exc}; not created"))
    if completions:
        session.journal.complete(new_txid(), completions)
