"""`keyroll backup`, `list-backups` and `restore`."""

from __future__ import annotations

from pathlib import Path

from keyroll import backup as backups
from keyroll.config.policy import Policy
from keyroll.errors import BackupError, UsageError
from keyroll.generate import size_problem
from keyroll.outcomes import TxReport
from keyroll.records import field, record
from keyroll.rotation import Change, WriterSession
from keyroll.store import open_store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from keyroll.store import Store


@record
class BackupResult:
    path: Path
    recovery: TxReport
    left_out: dict[str, str] = field(default_factory=dict)  # secret files it could not hold, and why


def take_backup(policy: Policy, *, wait: float = 0.0) -> BackupResult:
    """A new verified backup of the store (after the usual recovery)."""
    with WriterSession(policy, wait=wait) as session:
        path = session.backup("manual")
    if path is None:
        raise BackupError(f"{policy.paths.secrets_dir}: the store is empty; nothing to back up (run `keyroll init`)")
    return BackupResult(path, session.recovery, session.backup_left_out)


def list_backups(policy: Policy) -> list[backups.BackupSummary]:
    """Every backup, newest first, each verified against its manifest."""
    return backups.list_backups(policy.paths.backup_dir)


@record
class RestoreReport:
    backup: Path
    changes: list[str] = field(default_factory=list)  # secrets whose value differs from the backup's
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in the backup, not in the policy
    absent: list[str] = field(default_factory=list)  # in the policy, not in the backup
    pre_restore_backup: Path | None = None
    tx: TxReport | None = None

    @property
    def exit_code(self) -> int:
        return self.tx.exit_code if self.tx else 0


def _compare(report: RestoreReport, store: Store, names: list[str], values: dict[str, str]) -> None:
    """Sort `names` into the report's changes and unchanged by the store's values (a
    file that cannot be read counts as a change)."""
    current, _errors = store.read_all(names)
    report.changes = [n for n in names if current.get(n) != values[n]]
    report.unchanged = [n for n in names if current.get(n) == values[n]]


def restore(policy: Policy, argument: str, *, dry_run: bool = False, wait: float = 0.0) -> RestoreReport:
    """Verify the backup, take a pre-restore backup, then restore every value that
    differs through the transaction (so live services follow the store)."""
    path = backups.resolve_backup(argument, policy.paths.backup_dir)
    contents = backups.read_backup(path, policy)
    store = open_store(policy)
    # (a file of a secret the policy no longer declares is neither read nor brought back)
    undeclared = {n for n in contents.files if contents.store_kind == "directory" and n not in policy.secrets}
    files = {n: raw for n, raw in contents.files.items() if n not in undeclared}
    values = store.restore_snapshot(files, contents.store_kind)
    for name, value in values.items():
        if name in policy.secrets and (too_large := size_problem(value, policy.secrets[name].max_length)):
            raise UsageError(f"{path}: {name}: the value {too_large}; nothing was restored")
    report = RestoreReport(path)
    report.skipped = sorted(undeclared | {n for n in values if n not in policy.secrets})
    report.absent = [n for n in policy.secrets if n not in values]
    # A login name (kind username) is not restored on its own: it follows its password,
    # whose restore stores the login that accepts the restored value.
    names = [n for n in policy.secrets if n in values and not policy.secrets[n].follows]
    if dry_run:
        _compare(report, store, names, values)
        return report
    with WriterSession(policy, wait=wait) as session:
        _compare(report, session.store, names, values)  # under the lock
        if not report.changes:
            report.tx = TxReport(recovery=session.recovery)
            return report  # nothing to restore: no pre-restore backup either
        report.pre_restore_backup = session.backup("before restore", protect={path.name})
        changes = []
        for name in report.changes:
            rotated = contents.metadata.get(name, {}).get("rotated")
            changes.append(Change(name, "restore", values[name], rotated=rotated if isinstance(rotated, str) else None))
        report.tx = session.transact(changes, take_backup=False)
    return report
