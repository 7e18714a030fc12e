"""`keyroll kubernetes sync`: publish the store's values to the mapped Kubernetes Secrets."""

from __future__ import annotations

from keyroll.config.policy import Policy
from keyroll.errors import UsageError
from keyroll.kube.syncreport import SyncResult
from keyroll.outcomes import TxReport
from keyroll.records import field, record
from keyroll.rotation import WriterSession


@record
class SyncReport:
    """The sync's outcome (text lines and, for --json, per Secret and workload), and
    the recovery the writer session ran first."""

    result: SyncResult = field(default_factory=SyncResult)
    recovery: TxReport = field(default_factory=TxReport)


def sync(policy: Policy, *, dry_run: bool = False, restart: bool = False, wait: float = 0.0) -> SyncReport:
    """Apply every mapped value from the store now (first deployment, drift repair);
    restart the workloads of the Secrets that changed only with `restart`.  A secret
    the store cannot read is reported (one line, exit 1) and its Secrets left as they are."""
    if not policy.uses_kubernetes():
        raise UsageError("no secret is published to Kubernetes (`kubernetes = [...]` in a [secrets.NAME] table)")
    with WriterSession(policy, wait=wait) as session:
        kube = session.kube()
        assert kube is not None
        values, errors = session.store.read_all(list(policy.secrets))
        result = kube.sync(values, dry_run=dry_run, restart=restart, unreadable=errors)
        return SyncReport(result, session.recovery)
