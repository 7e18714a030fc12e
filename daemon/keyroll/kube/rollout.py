"""When a rollout is complete, by the rules `kubectl rollout status` uses.

Deployment: not paused (kubectl refuses to restart a paused one); observedGeneration
>= generation; a Progressing condition with reason
ProgressDeadlineExceeded is a failure; updatedReplicas == replicas;
replicas (total) <= updatedReplicas (no old pods left); availableReplicas >=
updatedReplicas.  StatefulSet (RollingUpdate): observedGeneration caught up,
readyReplicas and updatedReplicas == replicas, currentRevision == updateRevision.
DaemonSet (RollingUpdate): observedGeneration caught up,
updatedNumberScheduled and numberAvailable == desiredNumberScheduled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from keyroll.config.kubernetes import Workload
from keyroll.errors import KeyrollError
from keyroll.kube.client import Cluster, KubeError, describe_workload
from keyroll.records import record

POLL_INTERVAL = 0.5

DONE, PROGRESSING, FAILED = "done", "progressing", "failed"


@record(frozen=True)
class RolloutState:
    state: str  # done | progressing | failed
    message: str


def _int(mapping: dict[str, Any], key: str) -> int:
    value = mapping.get(key)
    return int(value) if isinstance(value, int) else 0


def rollout_state(kind: str, obj: dict[str, Any]) -> RolloutState:
    """The state of one workload's rollout, from its JSON (as the API returns it)."""
    metadata, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if kind == "deployment" and spec.get("paused"):  # (never rolls out; `kubectl rollout restart` refuses it)
        return RolloutState(FAILED, "the deployment is paused: `kubectl rollout resume` it first")
    generation = _int(metadata, "generation")
    if _int(status, "observedGeneration") < generation:
        return RolloutState(PROGRESSING, "waiting for the controller to see the change")
    if kind == "deployment":
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
                return RolloutState(FAILED, "ProgressDeadlineExceeded: the rollout made no progress in time")
        wanted = spec.get("replicas", 1)
        wanted = wanted if isinstance(wanted, int) else 1
        updated, total = _int(status, "updatedReplicas"), _int(status, "replicas")
        available = _int(status, "availableReplicas")
        if updated < wanted:
            return RolloutState(PROGRESSING, f"{updated} of {wanted} new replicas updated")
        if total > updated:
            return RolloutState(PROGRESSING, f"{total - updated} old replicas pending termination")
        if available < updated:
            return RolloutState(PROGRESSING, f"{available} of {updated} updated replicas available")
        return RolloutState(DONE, "rolled out")
    if kind == "statefulset":
        if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
            return RolloutState(DONE, "OnDelete strategy: not waited for")
        wanted = spec.get("replicas", 1)
        wanted = wanted if isinstance(wanted, int) else 1
        if _int(status, "readyReplicas") < wanted:
            return RolloutState(PROGRESSING, f"{_int(status, 'readyReplicas')} of {wanted} pods ready")
        if _int(status, "updatedReplicas") < wanted:
            return RolloutState(PROGRESSING, f"{_int(status, 'updatedReplicas')} of {wanted} pods updated")
        if status.get("updateRevision") != status.get("currentRevision"):
            return RolloutState(PROGRESSING, "waiting for the update revision to become current")
        return RolloutState(DONE, "rolled out")
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        return RolloutState(DONE, "OnDelete strategy: not waited for")
    desired = _int(status, "desiredNumberScheduled")
    if _int(status, "updatedNumberScheduled") < desired:
        return RolloutState(PROGRESSING, f"{_int(status, 'updatedNumberScheduled')} of {desired} pods updated")
    if _int(status, "numberAvailable") < desired:
        return RolloutState(PROGRESSING, f"{_int(status, 'numberAvailable')} of {desired} updated pods available")
    return RolloutState(DONE, "rolled out")


def wait_rollouts(
    cluster: Cluster,
    workloads: Sequence[Workload],
    timeout: float,
    should_stop: Callable[[], bool] | None = None,
) -> dict[Workload, str]:
    """Poll every workload until its rollout completes, fails, or `timeout` runs out;
    return the ones that did not complete, with why (one line each)."""
    pending = list(workloads)
    problems: dict[Workload, str] = {}
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for workload in pending:
            try:
                with cluster.request_timeout(deadline - time.monotonic()):
                    state = rollout_state(workload.kind, cluster.read_workload(workload))
            except KubeError as exc:
                problems[workload] = str(exc)
                continue
            except KeyrollError as exc:  # (unreachable for a moment while waiting: keep waiting until the deadline)
                state = RolloutState(PROGRESSING, str(exc))
            if state.state == FAILED:
                problems[workload] = f"{describe_workload(workload)}: rollout failed: {state.message}"
            elif state.state == PROGRESSING:
                problems[workload] = (
                    f"{describe_workload(workload)}: rollout not complete after {timeout:g}s ({state.message})"
                )
                still.append(workload)
            else:
                problems.pop(workload, None)
        pending = still
        if not pending:
            break
        if time.monotonic() + POLL_INTERVAL > deadline:
            break
        if should_stop is not None and should_stop():
            for workload in pending:
                problems[workload] += " (keyroll is stopping)"
            break
        time.sleep(POLL_INTERVAL)
    return problems
