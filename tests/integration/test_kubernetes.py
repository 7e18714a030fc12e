"""keyroll publishing to Kubernetes Secrets and restarting workloads, end to end.

No real Kubernetes API server can run on these machines: these tests run the
keyroll CLI (a subprocess, with a kubeconfig) against the in-process fake API
server of tests/kube_fake.py (HTTPS with its own CA, a bearer token, server-side
apply field ownership, generation bumps and a controller thread).  A test against
a real cluster runs only when KEYROLL_TEST_KUBECONFIG is set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.conftest import Home
from tests.integration.conftest import CmdlineWatcher
from tests.kube_fake import FakeKube

from keyroll.rotation import KUBE_FAILPOINTS

pytest.importorskip("lightkube")

CONFIG = """
[kubernetes]
kubeconfig = "{kubeconfig}"
namespace = "ai-stack"
rollout_timeout = "{timeout}"

[secrets.pg_password]
kubernetes = ["db/password"]
restart = ["kubernetes:deployment/api", "kubernetes:statefulset/other-ns/db"]

[secrets.pg_replica]
kubernetes = ["db/replica"]
restart = ["kubernetes:deployment/api"]

[secrets.api_key]
kind = "api_key"
kubernetes = ["other-ns/api/key"]
restart = ["kubernetes:deployment/api", "kubernetes:daemonset/agent"]

[secrets.local_token]
unattended = true
"""


@pytest.fixture
def cluster(fake_cluster) -> tuple[FakeKube, Path]:  # type: ignore[no-untyped-def]
    return fake_cluster(  # type: ignore[no-any-return]
        "deployment/ai-stack/api", "statefulset/other-ns/db", "daemonset/ai-stack/agent", helm_db_secret=True
    )


def _setup(home: Home, krp, kubeconfig: Path, timeout: str = "20s") -> None:  # type: ignore[no-untyped-def]
    home.write_config(CONFIG.format(kubeconfig=kubeconfig, timeout=timeout))
    result = krp("--config", str(home.config), "init")
    assert result.code == 0, result.both


def _run(krp, home: Home, *argv: str):  # type: ignore[no-untyped-def]
    return krp("--config", str(home.config), *argv)


def test_rotate_all_publishes_and_restarts_each_workload_once(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    assert fake.secret_value("ai-stack", "db", "password") == home.value("pg_password")
    assert fake.secret_value("ai-stack", "db", "unrelated") == "kept"  # another manager's key stays
    before = dict(fake.rollouts)
    old = home.value("pg_password")
    with CmdlineWatcher() as watcher:
        result = _run(krp, home, "rotate", "all", "--json")
    assert result.code == 0, result.both
    new = home.value("pg_password")
    assert new != old
    assert fake.secret_value("ai-stack", "db", "password") == new
    assert fake.secret_value("ai-stack", "db", "replica") == home.value("pg_replica")
    assert fake.secret_value("other-ns", "api", "key") == home.value("api_key")
    assert fake.secret_value("ai-stack", "db", "unrelated") == "kept"
    assert fake.owners[("ai-stack", "db")] == {"unrelated": "helm", "password": "keyroll", "replica": "keyroll"}
    # three secrets share deployment/api: one rollout for it, one for each of the others
    for ident in ("deployment/ai-stack/api", "statefulset/other-ns/db", "daemonset/ai-stack/agent"):
        assert fake.rollouts[ident] - before.get(ident, 0) == 1, ident
    for value in (old, new):
        assert value not in result.both and not watcher.carries(value)


def test_failed_rollout_rolls_everything_back(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    old = home.value("pg_replica")
    fake.deadline.add("deployment/ai-stack/api")
    before = dict(fake.rollouts)
    result = _run(krp, home, "rotate", "pg_replica")
    # the deployment stays failing on the old value too: 75 by the existing rule
    assert result.code == 75, result.both
    assert "ProgressDeadlineExceeded" in result.both and "in Kubernetes" in result.both
    # the undo's rollout failed too: never "healthy again on the previous value"
    assert "healthy again" not in result.both
    assert "did not come back in Kubernetes either" in result.both
    assert home.value("pg_replica") == old
    assert fake.secret_value("ai-stack", "db", "replica") == old
    # restarted with the new value, then again with the old one
    assert fake.rollouts["deployment/ai-stack/api"] - before["deployment/ai-stack/api"] == 2


def test_rollout_failing_on_the_new_value_only_is_exit_1(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    old = home.value("pg_password")
    fake.deadline_once = {"deployment/ai-stack/api"}
    before = dict(fake.rollouts)
    result = _run(krp, home, "rotate", "pg_password")
    assert result.code == 1, result.both
    assert "healthy again on the previous value" in result.both
    assert home.value("pg_password") == old
    assert fake.secret_value("ai-stack", "db", "password") == old
    # each workload: one rollout with the new value, one back to the old (sent once for both workloads)
    assert fake.rollouts["deployment/ai-stack/api"] - before["deployment/ai-stack/api"] == 2
    assert fake.rollouts["statefulset/other-ns/db"] - before["statefulset/other-ns/db"] == 2


def test_stuck_rollout_times_out_and_rolls_back(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig, timeout="2s")
    old = home.value("pg_replica")
    fake.stuck.add("deployment/ai-stack/api")
    result = _run(krp, home, "rotate", "pg_replica")
    assert result.code in (1, 75), result.both
    assert "not complete after 2s" in result.both
    assert home.value("pg_replica") == old
    assert fake.secret_value("ai-stack", "db", "replica") == old


def test_forbidden_secret_stops_before_any_change(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    old = {n: home.value(n) for n in ("pg_password", "api_key")}
    fake.forbidden.add(("patch", "/secrets/api"))
    before = dict(fake.rollouts)
    result = _run(krp, home, "rotate", "api_key")
    assert result.code == 1, result.both
    assert "Kubernetes Secret other-ns/api" in result.both and "patch" in result.both
    assert home.value("api_key") == old["api_key"]
    assert fake.rollouts == before
    # the others go on
    result = _run(krp, home, "rotate", "pg_password")
    assert result.code == 0, result.both


def test_unreachable_api_server_is_temporary_and_changes_nothing(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    old = home.value("pg_password")
    fake.fail_next("GET", "/secrets/db", 500, times=1)
    result = _run(krp, home, "rotate", "pg_password")
    assert result.code == 75, result.both
    assert home.value("pg_password") == old


def test_conflicts_are_retried(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    fake.fail_next("PATCH", "/secrets/db", 409, times=2)
    result = _run(krp, home, "rotate", "pg_password")
    assert result.code == 0, result.both
    assert fake.failures == []  # both conflicts were answered: a path that never matched would leave them here
    assert fake.secret_value("ai-stack", "db", "password") == home.value("pg_password")


def test_wrong_token_is_exit_1_naming_the_object(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    fake.token = "another"
    result = _run(krp, home, "rotate", "pg_password")
    assert result.code == 1, result.both
    assert "401" in result.both and "Kubernetes Secret ai-stack/db" in result.both


@pytest.mark.parametrize("step", KUBE_FAILPOINTS)
def test_sigkill_at_each_step_recovers_with_one_rollout_per_workload(home: Home, krp, cluster, step: str) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    before = dict(fake.rollouts)
    killed = krp("--config", str(home.config), "rotate", "all", env={"KEYROLL_FAILPOINT": step})
    assert killed.code == -9, killed.both
    result = _run(krp, home, "recover")
    assert result.code == 0, result.both
    for name, spec in (("pg_password", ("ai-stack", "db", "password")), ("api_key", ("other-ns", "api", "key"))):
        assert fake.secret_value(*spec) == home.value(name)
    # killed before the restarts: recovery restarts each workload once; killed after them: recovery
    # re-sends the journaled annotation, which changes nothing, so no second rollout starts
    started = {k: fake.rollouts[k] - before.get(k, 0) for k in fake.rollouts}
    assert set(started.values()) == {1}, started
    assert "completed" in result.both
    sees = fake.pods_see["deployment/ai-stack/api"]  # the pods run the new values
    assert sees[("ai-stack", "db", "password")] == home.value("pg_password")
    assert sees[("other-ns", "api", "key")] == home.value("api_key")


def test_sigkill_before_publishing_recovers_with_pods_on_the_new_values(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    """Killed after the store but before any publish: recovery finishes each secret in
    turn; a workload restarted for one secret is restarted again when another secret it
    reads is published after that, so its pods never keep a stale value."""
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    killed = krp("--config", str(home.config), "rotate", "all", env={"KEYROLL_FAILPOINT": "store"})
    assert killed.code == -9, killed.both
    result = _run(krp, home, "recover")
    assert result.code == 0, result.both
    sees = fake.pods_see["deployment/ai-stack/api"]
    assert sees[("ai-stack", "db", "password")] == home.value("pg_password")
    assert sees[("ai-stack", "db", "replica")] == home.value("pg_replica")
    assert sees[("other-ns", "api", "key")] == home.value("api_key")


def test_sync_says_it_creates_a_secret_that_is_missing(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    with fake.lock:  # (someone deleted it: `kubectl delete secret api -n other-ns`)
        del fake.secrets[("other-ns", "api")]
        fake.owners.pop(("other-ns", "api"), None)
    result = _run(krp, home, "kubernetes", "sync", "--dry-run")
    assert result.code == 0, result.both
    assert "Kubernetes Secret other-ns/api: would create key" in result.out
    assert fake.secret_value("other-ns", "api", "key") is None
    result = _run(krp, home, "kubernetes", "sync")
    assert result.code == 0, result.both
    assert "Kubernetes Secret other-ns/api: created key" in result.out
    assert fake.secret_value("other-ns", "api", "key") == home.value("api_key")
    assert "other-ns/api: up to date" in _run(krp, home, "kubernetes", "sync", "--dry-run").out


def test_sync_and_drift(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    fake.add_secret("ai-stack", "db", {"password": "changed-by-hand"}, manager="kubectl")
    result = _run(krp, home, "validate")
    assert result.code == 1, result.both
    assert "pg_password: Kubernetes Secret ai-stack/db key password differs from the store" in result.both
    result = _run(krp, home, "status")
    assert "key password differs from the store" in result.both and "changed-by-hand" not in result.both
    result = _run(krp, home, "kubernetes", "sync", "--dry-run")
    assert result.code == 0, result.both
    assert "would update" in result.out and "changed-by-hand" not in result.both
    # --json: one entry per Secret (key names, never values), for scripts.
    result = _run(krp, home, "kubernetes", "sync", "--dry-run", "--restart", "--json")
    assert result.code == 0, result.both
    envelope = json.loads(result.out)
    assert (envelope["format"], envelope["command"], envelope["ok"]) == ("keyroll/1", "kubernetes sync", True)
    data = envelope["data"]
    assert data["dry_run"] is True
    assert sorted(data["secrets"], key=lambda s: (s["namespace"], s["name"])) == [
        # (the hand-made Secret lost the replica key too)
        {"namespace": "ai-stack", "name": "db", "status": "would_apply", "keys": ["password", "replica"], "reason": ""},
        {"namespace": "other-ns", "name": "api", "status": "unchanged", "keys": [], "reason": ""},
    ]
    assert sorted((w["kind"], w["namespace"], w["name"], w["status"]) for w in data["workloads"]) == [
        ("deployment", "ai-stack", "api", "would_restart"),  # (it reads ai-stack/db)
        ("statefulset", "other-ns", "db", "would_restart"),
    ]
    assert "changed-by-hand" not in result.both and home.value("pg_password") not in result.both
    assert fake.secret_value("ai-stack", "db", "password") == "changed-by-hand"
    before = dict(fake.rollouts)
    result = _run(krp, home, "kubernetes", "sync", "--json")
    assert result.code == 0, result.both
    data = json.loads(result.out)["data"]
    assert data["dry_run"] is False and data["workloads"] == []  # no restart without --restart
    assert {(s["namespace"], s["name"]): (s["status"], s["keys"]) for s in data["secrets"]} == {
        ("ai-stack", "db"): ("applied", ["password", "replica"]),
        ("other-ns", "api"): ("unchanged", []),
    }
    assert home.value("pg_password") not in result.both
    assert fake.secret_value("ai-stack", "db", "password") == home.value("pg_password")
    assert fake.rollouts == before
    assert _run(krp, home, "validate").code == 0
    result = _run(krp, home, "kubernetes", "sync", "--restart")
    assert result.code == 0 and "up to date" in result.out, result.both
    fake.hang.set()  # the API server stops answering: a warning, not a failure
    result = _run(krp, home, "validate")
    assert result.code == 0, result.both
    assert "cannot compare the Kubernetes Secrets" in result.both


def test_rotate_dry_run_shows_secrets_and_workloads(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    calls = len(fake.calls)
    result = _run(krp, home, "rotate", "all", "--dry-run")
    assert result.code == 0, result.both
    assert "publish: Kubernetes Secret ai-stack/db (key password)" in result.out
    # in the order they happen: the Secret first, then the restart
    assert result.out.index("publish: Kubernetes Secret ai-stack/db") < result.out.index("restart: rollout restart")
    assert result.out.count("rollout restart deployment ai-stack/api") == 1
    assert "rollout restart statefulset other-ns/db" in result.out
    assert len(fake.calls) == calls  # no API call


def test_server_that_stops_answering_fails_that_secret_with_75(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    old = home.value("pg_password")
    local = home.value("local_token")
    fake.hang.set()
    result = _run(krp, home, "rotate", "pg_password", "local_token")
    assert result.code == 75, result.both
    assert "cannot be reached" in result.both
    assert home.value("pg_password") == old
    assert home.value("local_token") != local  # the others go on


@pytest.mark.skipif(
    not os.environ.get("KEYROLL_TEST_KUBECONFIG"), reason="set KEYROLL_TEST_KUBECONFIG to test a real cluster"
)
def test_real_cluster(home: Home, krp) -> None:  # type: ignore[no-untyped-def]
    """Against a real cluster: the namespace `keyroll-test` must exist, with a deployment `keyroll-test`."""
    home.write_config(
        f'[kubernetes]\nkubeconfig = "{os.environ["KEYROLL_TEST_KUBECONFIG"]}"\nnamespace = "keyroll-test"\n'
        '[secrets.test_password]\nkubernetes = ["keyroll-test/password"]\n'
        'restart = ["kubernetes:deployment/keyroll-test"]\n'
    )
    assert _run(krp, home, "init").code == 0
    result = _run(krp, home, "rotate", "test_password")
    assert result.code == 0, result.both


def test_missing_workload_stops_before_any_change(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    old = home.value("api_key")
    del fake.workloads[("daemonset", "ai-stack", "agent")]
    before = dict(fake.rollouts)
    result = _run(krp, home, "rotate", "api_key")
    assert result.code == 1, result.both
    assert "daemonset ai-stack/agent: not found" in result.both
    assert home.value("api_key") == old and fake.rollouts == before


def test_holds_value_compares_by_digest(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    """The function issue 14 (gitops) builds on: does the cluster's key hold this value."""
    from keyroll.config.kubernetes import SecretKey
    from keyroll.config.policy import load_policy
    from keyroll.kube.client import Cluster
    from keyroll.kube.publish import holds_value

    _fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    policy = load_policy(str(home.config))
    kube = Cluster(policy.kubernetes, {}, None)
    try:
        assert holds_value(kube, SecretKey("", "db", "password"), home.value("pg_password")) is True
        assert holds_value(kube, SecretKey("ai-stack", "db", "password"), "something else") is False
        assert holds_value(kube, SecretKey("", "db", "no-such-key"), "x") is None
        assert holds_value(kube, SecretKey("", "no-such-secret", "k"), "x") is None
    finally:
        kube.close()


def test_rollout_already_failing_stops_before_any_change(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    old = home.value("pg_replica")
    with fake.lock:
        status = fake.workloads[("deployment", "ai-stack", "api")]["status"]
        status["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    before = dict(fake.rollouts)
    result = _run(krp, home, "rotate", "pg_replica")
    assert result.code == 1, result.both
    assert "deployment ai-stack/api: its rollout is already failing" in result.both
    assert home.value("pg_replica") == old and fake.rollouts == before
    assert fake.secret_value("ai-stack", "db", "replica") == old


def test_the_kubeconfig_ca_is_verified(home: Home, krp, cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import base64
    import json

    from tests.kube_fake import make_ca

    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    other_ca, _, _ = make_ca(tmp_path / "other-pki")
    config = json.loads(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(other_ca.read_bytes()).decode()
    kubeconfig.write_text(json.dumps(config))
    old = home.value("pg_password")
    calls = len(fake.calls)
    result = _run(krp, home, "rotate", "pg_password")
    assert result.code == 1, result.both
    assert "not signed by the kubeconfig's CA" in result.both
    assert home.value("pg_password") == old and len(fake.calls) == calls


def test_sigkill_while_a_failing_rollout_is_waited_for_recovery_undoes(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    old = home.value("pg_replica")
    fake.deadline_once = {"deployment/ai-stack/api"}
    before = dict(fake.rollouts)
    killed = krp("--config", str(home.config), "rotate", "pg_replica", env={"KEYROLL_FAILPOINT": "kube-wait"})
    assert killed.code == -9, killed.both
    result = _run(krp, home, "recover")
    assert result.code == 1, result.both  # the new value is refused: the rollout failed on it
    assert "ProgressDeadlineExceeded" in result.both
    assert home.value("pg_replica") == old
    assert fake.secret_value("ai-stack", "db", "replica") == old
    # one rollout with the new value (re-sent identically by recovery), one back to the old value
    assert fake.rollouts["deployment/ai-stack/api"] - before["deployment/ai-stack/api"] == 2
    assert fake.pods_see["deployment/ai-stack/api"][("ai-stack", "db", "replica")] == old
    assert "IN FLIGHT" not in _run(krp, home, "status").out


def test_a_broken_kubeconfig_is_a_warning_in_status_and_one_line_elsewhere(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    kubeconfig.write_text(kubeconfig.read_text().replace(f'"token": "{fake.token}"', f'"token": {fake.token}: ['))
    result = _run(krp, home, "status")
    assert result.code == 0, result.both
    assert f"the kubeconfig {kubeconfig} is not valid YAML" in result.both and fake.token not in result.both
    old = home.value("pg_password")
    for argv in (("rotate", "pg_password"), ("kubernetes", "sync")):
        result = _run(krp, home, *argv)
        assert result.code == 1, result.both
        assert "is not valid YAML" in result.both and fake.token not in result.both
        assert "unexpected" not in result.both and "Traceback" not in result.both
    assert home.value("pg_password") == old


def test_server_that_stops_answering_mid_wait_is_75_within_a_bounded_time(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    """The API server stops answering while keyroll waits for a rollout: the wait ends
    at rollout_timeout (not a request timeout later), the rollback waits out one
    request before giving up (not one timeout per Secret and workload), exit 75, and
    the store and the target hold the previous value."""
    import threading
    import time

    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig, timeout="2s")
    old = home.value("pg_password")
    fake.stuck.add("deployment/ai-stack/api")
    timer = threading.Timer(1.0, fake.hang.set)
    timer.start()
    started = time.monotonic()
    result = _run(krp, home, "rotate", "pg_password")
    elapsed = time.monotonic() - started
    timer.cancel()
    fake.hang.clear()
    assert result.code == 75, result.both
    assert "cannot be reached" in result.both and "kubernetes sync --restart" in result.both
    assert home.value("pg_password") == old
    # 2 s of waiting + one 10 s request timeout (the rollback's first request); it was 42 s
    assert elapsed < 18, elapsed


def test_publishing_into_a_basic_auth_secret_keeps_its_type(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    """A Secret's type is immutable: keyroll applies only its keys, so a Secret made by
    someone else as kubernetes.io/basic-auth takes the values (and stays basic-auth),
    and a Secret keyroll creates is Opaque."""
    fake, kubeconfig = cluster
    fake.add_secret("other-ns", "api", {"username": "svc"}, manager="helm", type="kubernetes.io/basic-auth")
    _setup(home, krp, kubeconfig)
    result = _run(krp, home, "rotate", "api_key")
    assert result.code == 0, result.both
    assert fake.secret_value("other-ns", "api", "key") == home.value("api_key")
    assert fake.secrets[("other-ns", "api")]["type"] == "kubernetes.io/basic-auth"
    assert fake.secret_value("other-ns", "api", "username") == "svc"
    del fake.secrets[("ai-stack", "db")]
    result = _run(krp, home, "kubernetes", "sync")
    assert result.code == 0, result.both
    assert fake.secrets[("ai-stack", "db")]["type"] == "Opaque"


def test_a_namespace_that_does_not_exist_is_named_before_any_change(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    fake.namespaces = {"ai-stack"}  # other-ns is gone (or misspelt in the config)
    old = home.value("api_key")
    result = _run(krp, home, "rotate", "api_key")
    assert result.code == 1, result.both
    assert "Kubernetes Secret other-ns/api: cannot patch: its namespace does not exist" in result.both
    assert home.value("api_key") == old


def test_sync_goes_on_past_a_secret_it_cannot_write(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    fake.add_secret("ai-stack", "db", {"password": "changed-by-hand"})
    fake.add_secret("other-ns", "api", {"key": "changed-by-hand"})
    fake.forbidden.add(("patch", "/secrets/db"))
    result = _run(krp, home, "kubernetes", "sync", "--restart")
    assert result.code == 1, result.both
    assert "Kubernetes Secret ai-stack/db: cannot patch: forbidden (403)" in result.out and "not updated" in result.out
    assert "Kubernetes Secret other-ns/api: updated key" in result.out
    assert fake.secret_value("other-ns", "api", "key") == home.value("api_key")
    assert "daemonset ai-stack/agent: restarted" in result.out  # (it reads other-ns/api)
    assert "changed-by-hand" not in result.both
    # The same in --json: the failed Secret says why in one line, the others go on.
    fake.add_secret("other-ns", "api", {"key": "changed-by-hand"})
    result = _run(krp, home, "kubernetes", "sync", "--restart", "--json")
    assert result.code == 1, result.both
    envelope = json.loads(result.out)
    assert (envelope["ok"], envelope["exit_code"]) == (False, 1)
    secrets = {(s["namespace"], s["name"]): s for s in envelope["data"]["secrets"]}
    assert secrets[("ai-stack", "db")] == {
        "namespace": "ai-stack",
        "name": "db",
        "status": "failed",
        "keys": ["password", "replica"],
        "reason": "cannot patch: forbidden (403): keyroll needs the patch permission",
    }
    assert (secrets[("other-ns", "api")]["status"], secrets[("other-ns", "api")]["keys"]) == ("applied", ["key"])
    assert sorted((w["kind"], w["name"], w["status"], w["reason"]) for w in envelope["data"]["workloads"]) == [
        ("daemonset", "agent", "restarted", ""),
        ("deployment", "api", "restarted", ""),
    ]
    assert "changed-by-hand" not in result.both and home.value("api_key") not in result.both


def test_recovery_with_the_cluster_out_of_reach_leaves_the_rotation_in_flight(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    """Killed after the restarts were sent (the pods run the new values), then the API
    server stops answering: recovery must not undo the rotation in the store and the
    targets while the cluster keeps the new values.  It stays in flight (75, fast),
    and once the cluster is back, recovery finishes it with no second rollout."""
    import time

    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    before = dict(fake.rollouts)
    killed = krp("--config", str(home.config), "rotate", "all", env={"KEYROLL_FAILPOINT": "kube-restart"})
    assert killed.code == -9, killed.both
    fake.hang.set()
    started = time.monotonic()
    result = _run(krp, home, "recover")
    elapsed = time.monotonic() - started
    assert result.code == 75, result.both
    assert "still in flight" in result.both and "cannot be reached" in result.both
    assert elapsed < 20, elapsed  # one request timeout, not one per secret and step
    assert "IN FLIGHT" in _run(krp, home, "status").out
    fake.hang.clear()
    result = _run(krp, home, "recover")
    assert result.code == 0, result.both
    started_rollouts = {k: fake.rollouts[k] - before.get(k, 0) for k in fake.rollouts}
    assert set(started_rollouts.values()) == {1}, started_rollouts
    for name, spec in (
        ("pg_password", ("ai-stack", "db", "password")),
        ("pg_replica", ("ai-stack", "db", "replica")),
        ("api_key", ("other-ns", "api", "key")),
    ):
        assert fake.secret_value(*spec) == home.value(name)
        assert fake.pods_see["deployment/ai-stack/api"][spec] == home.value(name)


def test_status_is_bounded_when_the_api_server_stops_answering(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    import time

    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    fake.hang.set()
    started = time.monotonic()
    result = _run(krp, home, "status", "--json")
    elapsed = time.monotonic() - started
    assert result.code == 0, result.both
    assert "cannot compare the Kubernetes Secrets with the store" in result.out
    assert elapsed < 12, elapsed  # one 5 s request, however many Secrets are mapped


def test_a_paused_deployment_stops_the_rotation_before_any_change(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    with fake.lock:
        fake.workloads[("deployment", "ai-stack", "api")]["spec"]["paused"] = True
    old = home.value("pg_replica")
    before = dict(fake.rollouts)
    result = _run(krp, home, "rotate", "pg_replica")
    assert result.code == 1, result.both
    assert "deployment ai-stack/api: its rollout is already failing (the deployment is paused" in result.both
    assert home.value("pg_replica") == old and fake.rollouts == before


def test_init_with_the_cluster_out_of_reach_creates_nothing_and_says_so(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    home.write_config(CONFIG.format(kubeconfig=kubeconfig, timeout="20s"))
    fake.hang.set()
    try:
        result = _run(krp, home, "init")
    finally:
        fake.hang.clear()
    assert result.code == 75, result.both
    assert "pg_password" in result.both and "cannot be reached" in result.both
    assert "not created" in result.both and "keyroll init" in result.both
    assert "not rotated" not in result.both  # (init has nothing to rotate)
    assert not (home.secrets / "pg_password").exists()
    assert fake.secret_value("ai-stack", "db", "password") is None
    # once it is back, init creates them
    assert _run(krp, home, "init").code == 0


def test_sync_reports_a_secret_the_store_cannot_read(home: Home, krp, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    _setup(home, krp, kubeconfig)
    replica = fake.secret_value("ai-stack", "db", "replica")
    fake.add_secret("other-ns", "api", {"key": "changed-by-hand"})
    (home.secrets / "pg_replica").write_bytes(b"\xff\xfe not UTF-8\n")
    result = _run(krp, home, "kubernetes", "sync")
    assert result.code == 1, result.both
    assert "pg_replica" in result.out and "not UTF-8" in result.out  # the store's one-line error
    assert "Kubernetes Secret ai-stack/db: pg_replica cannot be read from the store; not updated" in result.out
    assert fake.secret_value("ai-stack", "db", "replica") == replica  # (never applied without the key)
    assert "Kubernetes Secret other-ns/api: updated key" in result.out  # the others go on
    assert fake.secret_value("other-ns", "api", "key") == home.value("api_key")
    assert "Traceback" not in result.both
