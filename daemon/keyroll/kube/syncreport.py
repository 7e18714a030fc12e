"""What `keyroll kubernetes sync` did, per Secret and per workload, for `--json`
(the text output stays one line per action).  Never a value: key names only, and
reasons are the one-line messages the text output shows."""

from __future__ import annotations

from keyroll.records import field, record

# SecretSync.status
APPLIED = "applied"
WOULD_APPLY = "would_apply"  # --dry-run
UNCHANGED = "unchanged"
FAILED = "failed"

# WorkloadSync.status (FAILED too: the restart was refused, or its rollout did not complete)
RESTARTED = "restarted"
WOULD_RESTART = "would_restart"  # --dry-run


@record(frozen=True)
class SecretSync:
    """One Kubernetes Secret: the keys applied (or that would be), or why it failed."""

    namespace: str
    name: str
    status: str
    keys: tuple[str, ...] = ()
    reason: str = ""


@record(frozen=True)
class WorkloadSync:
    """One workload restarted (or that would be) because a Secret it reads changed."""

    kind: str
    namespace: str
    name: str
    status: str
    reason: str = ""


@record
class SyncResult:
    """The text lines, the structured outcome, and the exit code of one sync."""

    dry_run: bool = False
    lines: list[str] = field(default_factory=list)
    secrets: list[SecretSync] = field(default_factory=list)
    workloads: list[WorkloadSync] = field(default_factory=list)
    exit_code: int = 0

    def data(self) -> dict[str, object]:
        """The `data` of `keyroll kubernetes sync --json`."""
        return {"dry_run": self.dry_run, "secrets": list(self.secrets), "workloads": list(self.workloads)}
