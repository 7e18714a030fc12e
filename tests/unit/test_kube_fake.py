"""The fake Kubernetes API server keeps the semantics the Kubernetes tests rely on:
server-side apply field ownership, dry runs, generation bumps only on a pod
template change (tests/kube_fake.py; called in-process here)."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.kube_fake import TOKEN, FakeKube

AUTH = {"Authorization": f"Bearer {TOKEN}"}
APPLY = {**AUTH, "Content-Type": "application/apply-patch+yaml"}
MERGE = {**AUTH, "Content-Type": "application/strategic-merge-patch+json"}
SECRET = "/api/v1/namespaces/ns/secrets/db"
DEPLOYMENT = "/apis/apps/v1/namespaces/ns/deployments/api"


def _apply(fake: FakeKube, data: dict[str, str], manager: str, **query: str) -> tuple[int, Any]:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": data}
    return fake.handle("PATCH", SECRET, {"fieldManager": manager, **query}, APPLY, json.dumps(body).encode())


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_server_side_apply_ownership() -> None:
    fake = FakeKube()
    fake.add_secret("ns", "db", {"other": "x"}, manager="helm")
    assert _apply(fake, {"a": _b64("1"), "b": _b64("2")}, "keyroll")[0] == 200
    # a key another manager owns, with a different value: a conflict unless forced
    assert _apply(fake, {"a": _b64("1"), "b": _b64("2"), "other": _b64("y")}, "keyroll")[0] == 409
    assert _apply(fake, {"a": _b64("1"), "b": _b64("2"), "other": _b64("y")}, "keyroll", force="true")[0] == 200
    assert fake.owners[("ns", "db")] == {"a": "keyroll", "b": "keyroll", "other": "keyroll"}
    # a key the manager no longer applies is removed; others' keys stay
    fake.add_secret("ns", "db", {"other": "x"}, manager="helm")
    _apply(fake, {"a": _b64("1"), "b": _b64("2")}, "keyroll")
    _apply(fake, {"a": _b64("3")}, "keyroll")
    assert fake.secret_value("ns", "db", "b") is None and fake.secret_value("ns", "db", "other") == "x"
    assert fake.secret_value("ns", "db", "a") == "3"
    # a dry run changes nothing; no field manager is refused
    assert _apply(fake, {"a": _b64("4")}, "keyroll", dryRun="All")[0] == 200
    assert fake.secret_value("ns", "db", "a") == "3"
    assert fake.handle("PATCH", SECRET, {}, APPLY, b"{}")[0] == 422
    assert fake.handle("GET", SECRET, {}, {"Authorization": "Bearer wrong"}, b"")[0] == 401


def test_generation_bumps_only_on_a_pod_template_change() -> None:
    fake = FakeKube()
    fake.add_workload("deployment", "ns", "api")

    def patch(body: dict[str, Any], **query: str) -> dict[str, Any]:
        code, obj = fake.handle("PATCH", DEPLOYMENT, query, MERGE, json.dumps(body).encode())
        assert code == 200
        result: dict[str, Any] = obj
        return result

    restart = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "t1"}}}}}
    assert patch(restart, dryRun="All")["metadata"]["generation"] == 1
    assert patch(restart)["metadata"]["generation"] == 2
    assert patch(restart)["metadata"]["generation"] == 2  # the same annotation again: no new rollout
    assert patch({"metadata": {"annotations": {"note": "x"}}})["metadata"]["generation"] == 2
    obj = patch({"spec": {"template": {"metadata": {"annotations": {"other": "y"}}}}})
    assert obj["metadata"]["generation"] == 3
    assert obj["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == "t1"
    assert fake.rollouts == {"deployment/ns/api": 2}
