"""[gitops] publish = ["kubernetes"]: encrypted Secret manifests in the commit, Flux
applies them, keyroll waits until the cluster's Secrets hold the new values (by
digest) before it restarts the workloads.

Real git and sops as in test_gitops.py; the cluster is the fake API server of
tests/kube_fake.py (no real Kubernetes API server can run on these machines: it
has HTTPS, a bearer token, server-side apply field ownership and a rollout
controller).  Flux is played by a thread: it watches the bare remote and, a
delay after each new commit, decrypts the committed manifests with sops and
applies them by server-side apply as the kustomize-controller would."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_sops_store import sops_decrypt
from tests.kube_fake import FakeKube

from fleet import Fleet
from keyroll.store.sops import find_sops

pytest.importorskip("lightkube")


class Flux:
    """Applies what the remote's main branch holds under secrets/kubernetes/, `delay`
    seconds after it sees a new commit; `paused` stops it."""

    def __init__(self, where: Fleet, kube: FakeKube, delay: float = 0.6) -> None:
        self.fleet, self.kube, self.delay = where, kube, delay
        self.paused = threading.Event()
        self.applied: list[str] = []  # commits applied
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flux:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _git(self, *args: str) -> bytes:
        return subprocess.run(
            ["git", "--git-dir", str(self.fleet.remote), *args], capture_output=True, check=False
        ).stdout

    def _run(self) -> None:
        seen = ""
        while not self._stop.wait(0.1):
            head = self._git("rev-parse", "-q", "--verify", "main").decode().strip()
            if not head or head == seen or self.paused.is_set():
                continue
            time.sleep(self.delay)  # (the source-controller's interval, the kustomize-controller's)
            if self.paused.is_set():
                continue
            for path in self._git("ls-tree", "--name-only", f"{head}:secrets/kubernetes").decode().split():
                self._apply(self._git("cat-file", "blob", f"{head}:secrets/kubernetes/{path}"))
            seen = head
            self.applied.append(head)

    def _apply(self, raw: bytes) -> None:
        done = subprocess.run(
            [find_sops(), "--config", os.devnull, "decrypt", "--input-type", "yaml", "--output-type", "json"],
            input=raw,
            capture_output=True,
            env={**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1", "SOPS_AGE_KEY_FILE": str(self.fleet.key)},
            check=True,
        )
        manifest = json.loads(done.stdout)
        meta = manifest["metadata"]
        query = {"fieldManager": "kustomize-controller", "force": "true"}
        with self.kube.lock:
            status, _ = self.kube._apply_secret(meta.get("namespace", "ai-stack"), meta["name"], manifest, query, False)
        assert status == 200


@pytest.fixture
def cluster(fake_cluster) -> tuple[FakeKube, Path]:  # type: ignore[no-untyped-def]
    return fake_cluster("deployment/ai-stack/api", helm_db_secret=True)  # type: ignore[no-any-return]


def configure(fleet: Fleet, kubeconfig: Path, timeout: str) -> None:
    fleet.config.write_text(
        f"""
[store]
kind = "sops"
age_key_file = "age.key"

[kubernetes]
kubeconfig = "{kubeconfig}"
namespace = "ai-stack"
rollout_timeout = "20s"

[gitops]
repo = "fleet"
publish = ["bundle", "kubernetes"]
push = "origin main"
converge_timeout = "{timeout}"

[secrets.pg_password]
kubernetes = ["db/password"]
restart = ["kubernetes:deployment/api"]

[secrets.api_token]
kind = "api_key"
kubernetes = ["db/token"]
"""
    )


def test_flux_applies_the_commit_then_keyroll_restarts_the_workload(krp, fleet: Fleet, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    configure(fleet, kubeconfig, "20s")
    with Flux(fleet, fake) as flux:
        result = krp(*fleet.cfg, "init")
        assert result.code == 0, result.both
        first = fleet.values()
        assert fake.secret_value("ai-stack", "db", "password") == first["pg_password"]
        rollouts = fake.rollouts.get("deployment/ai-stack/api", 0)

        result = krp(*fleet.cfg, "rotate", "all")
        assert result.code == 0, result.both
        new = fleet.values()
        assert new["pg_password"] != first["pg_password"]
        assert fake.secret_value("ai-stack", "db", "password") == new["pg_password"]
        assert fake.secret_value("ai-stack", "db", "token") == new["api_token"]
        assert fake.secret_value("ai-stack", "db", "unrelated") == "kept"
        # Flux wrote the keys, never keyroll; the one rollout started after the Secret held the new value.
        assert set(fake.owners[("ai-stack", "db")].values()) == {"kustomize-controller", "helm"}
        assert fake.rollouts["deployment/ai-stack/api"] == rollouts + 1
        assert fake.pods_see["deployment/ai-stack/api"][("ai-stack", "db", "password")] == new["pg_password"]
        assert (
            flux.applied[-1]
            == subprocess.run(
                ["git", "--git-dir", str(fleet.remote), "rev-parse", "main"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
        files = subprocess.run(
            ["git", "--git-dir", str(fleet.remote), "show", "--name-only", "--format=", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert sorted(files) == ["secrets/kubernetes/ai-stack.db.yaml", "secrets/secrets.sops.yaml"]
        manifest = (fleet.repo / "secrets" / "kubernetes" / "ai-stack.db.yaml").read_bytes()
        assert b"sops:" in manifest and new["pg_password"].encode() not in manifest  # type: ignore[union-attr]
        assert sops_decrypt(manifest, fleet.key)["kind"] == "Secret"


def test_flux_late_is_75_with_the_values_kept_and_the_next_run_finishes(krp, fleet: Fleet, cluster) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    configure(fleet, kubeconfig, "2s")
    with Flux(fleet, fake) as flux:
        assert krp(*fleet.cfg, "init").code == 0
        rollouts = fake.rollouts.get("deployment/ai-stack/api", 0)
        flux.paused.set()  # Flux is behind
        result = krp(*fleet.cfg, "rotate", "pg_password")
        assert result.code == 75, result.both
        assert "does not hold the committed values" in result.both and "waits again" in result.both
        new = fleet.values()["pg_password"]
        assert fake.secret_value("ai-stack", "db", "password") != new
        assert fake.rollouts.get("deployment/ai-stack/api", 0) == rollouts  # no restart onto the old value
        flux.paused.clear()
        result = krp(*fleet.cfg, "recover")
        assert result.code == 0, result.both
        assert fake.secret_value("ai-stack", "db", "password") == new
        assert fake.rollouts["deployment/ai-stack/api"] == rollouts + 1
        assert fake.pods_see["deployment/ai-stack/api"][("ai-stack", "db", "password")] == new
        assert krp(*fleet.cfg, "recover").code == 0
        assert fake.rollouts["deployment/ai-stack/api"] == rollouts + 1  # (resumed once, not again)


@pytest.mark.parametrize("step", ["git-push", "kube-publish", "kube-restart", "kube-wait"])
def test_sigkill_after_the_push_is_finished_by_recovery_with_one_rollout(krp, fleet: Fleet, cluster, step: str) -> None:  # type: ignore[no-untyped-def]
    fake, kubeconfig = cluster
    configure(fleet, kubeconfig, "20s")
    with Flux(fleet, fake):
        assert krp(*fleet.cfg, "init").code == 0
        rollouts = fake.rollouts.get("deployment/ai-stack/api", 0)
        killed = krp(*fleet.cfg, "rotate", "pg_password", env={"KEYROLL_FAILPOINT": step})
        assert killed.code == -9, killed.both
        result = krp(*fleet.cfg, "recover")
        assert result.code == 0, result.both
        new = fleet.values()["pg_password"]
        assert fake.secret_value("ai-stack", "db", "password") == new
        assert fake.rollouts["deployment/ai-stack/api"] == rollouts + 1  # one rollout, not two
        assert fake.pods_see["deployment/ai-stack/api"][("ai-stack", "db", "password")] == new


def test_status_compares_the_committed_manifests_without_encrypting(krp, fleet: Fleet, cluster) -> None:  # type: ignore[no-untyped-def]
    """`status` reads: it decrypts the committed manifests and compares them with the store's
    values, and never runs `sops encrypt` (one process per manifest, for nothing)."""
    from tests.integration.conftest import CmdlineWatcher

    fake, kubeconfig = cluster
    configure(fleet, kubeconfig, "20s")
    with Flux(fleet, fake):
        result = krp(*fleet.cfg, "init")
    assert result.code == 0, result.both
    with CmdlineWatcher() as watcher:
        result = krp(*fleet.cfg, "status", "--json")
    assert result.code == 0, result.both
    state = json.loads(result.out)["data"]["gitops"]
    assert state["in_step"] is True and "holds the store's current values" in state["detail"], state
    assert sorted(state["files"]) == ["secrets/kubernetes/ai-stack.db.yaml", "secrets/secrets.sops.yaml"]
    ours = [c for c in watcher.seen if str(fleet.root).encode() in c]  # (other tests run beside this one)
    assert [c for c in ours if b"decrypt" in c.split(b"\0")]  # (the watcher sees sops)
    assert not [c for c in ours if b"encrypt" in c.split(b"\0")]
    # A Secret manifest that no longer holds the store's values (here: gone) is named.
    git = ["git", "-C", str(fleet.repo), "-c", "user.name=c", "-c", "user.email=c@c"]
    subprocess.run([*git, "rm", "--quiet", "secrets/kubernetes/ai-stack.db.yaml"], check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "colleague: drop the manifest"], check=True)
    state = json.loads(krp(*fleet.cfg, "status", "--json").out)["data"]["gitops"]
    assert state["in_step"] is False and "secrets/kubernetes/ai-stack.db.yaml differ" in state["detail"], state
