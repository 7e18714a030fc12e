"""The day's features together, as an operator running the daemon has them.

One installation under REQUIRE_ENCRYPTED_SECRETS=true: a SOPS store, `[metrics]`,
a Redis target (ACL user, grace), a PostgreSQL `alternating` target whose login
name and password are mapped into a Kubernetes Secret and restart a Deployment,
and `[gitops] publish = ["bundle"]` pushing to a bare remote.  Real throwaway
PostgreSQL and Redis (tests/peers.py), real git, real sops and age keys, real
`keyroll daemon` / `keyroll run` subprocesses and signals; the cluster is the fake
API server of tests/kube_fake.py (no real Kubernetes API server can run here)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_sops_store import new_identity, sops_decrypt, write_sops_yaml
from tests.kube_fake import FakeKube, serve

from conftest import unique
from fleet import git

pytest.importorskip("lightkube")

API = "deployment/ai-stack/api"
ENCRYPTED = {"REQUIRE_ENCRYPTED_SECRETS": "true"}


@dataclass
class Stack:
    root: Path
    config: Path
    key: Path
    bundle: Path
    remote: Path
    metrics: Path
    fake: FakeKube
    kubeconfig: Path
    role: str
    redis_user: str
    pg: Any
    redis: Any

    def kr(
        self, *argv: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keyroll", "--config", str(self.config), *argv],
            capture_output=True,
            text=True,
            input=stdin,
            env={**os.environ, **ENCRYPTED, **(env or {})},
            timeout=120,
            check=False,
        )

    def values(self) -> dict[str, Any]:
        return sops_decrypt(self.bundle.read_bytes(), self.key)

    def remote_commits(self) -> list[str]:
        return git(self.remote, "log", "--format=%s", "main").splitlines()

    def write_config(self, schedule: str = "5s", redis_extra: str = "") -> None:
        admin_pg, admin_redis = self.root / "pg-admin", self.root / "redis-admin"
        self.config.write_text(
            f"""
[store]
kind = "sops"
age_key_file = "age.key"

[metrics]
textfile = "{self.metrics}"

[defaults]
schedule = "{schedule}"
unattended = true

[kubernetes]
kubeconfig = "{self.kubeconfig}"
namespace = "ai-stack"
rollout_timeout = "20s"

[gitops]
repo = "fleet"
path = "secrets/"
publish = ["bundle"]
push = "origin main"
author = "keyroll <keyroll@fleet.example>"

[targets.cache]
type = "redis"
host = "{self.redis.host}"
port = {self.redis.port}
user = "{self.redis_user}"
admin_user = "default"
admin_password_file = "{admin_redis}"
grace = "2s"

[targets.pg_app]
type = "postgres"
host = "{self.pg.host}"
port = {self.pg.port}
user = "{self.role}"
admin_user = "{self.role}admin"
admin_password_file = "{admin_pg}"
strategy = "alternating"
username_secret = "app_db_user"
grace = "1h"

[secrets.redis_password]
target = "cache"
{redis_extra}

[secrets.app_password]
target = "pg_app"
kubernetes = ["db/password"]
restart = ["kubernetes:{API.replace("/ai-stack", "")}"]

[secrets.app_db_user]
kind = "username"
kubernetes = ["db/username"]
"""
        )


@pytest.fixture
def stack(pg, redis_server, home, tmp_path: Path) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    root = home.root
    remote, repo = root / "remote.git", root / "fleet"
    git(root, "init", "--quiet", "--bare", "-b", "main", str(remote))
    git(root, "clone", "--quiet", str(remote), str(repo))
    (repo / "README.md").write_text("fleet\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "fleet: start")
    git(repo, "push", "--quiet", "origin", "main")
    key = root / "age.key"
    write_sops_yaml(root / ".sops.yaml", new_identity(key))

    role = unique("ops")
    pg_initial, admin_value = "PgInitial" * 3 + "12345", "Adm1n" * 6 + "xy"
    pg.create_role(f"{role}admin", admin_value, createrole=True)
    pg.create_role(role, pg_initial)
    (root / "pg-admin").write_text(admin_value)
    redis_user, redis_initial = unique("opscache"), "Cache" * 6 + "ok"
    redis_server.create_user(redis_user, redis_initial)
    redis_server.acl_save()
    (root / "redis-admin").write_text(redis_server.default_password + "\n")

    with serve(tmp_path / "kube") as (fake, kubeconfig):
        fake.add_workload("deployment", "ai-stack", "api")
        s = Stack(root, home.config, key, root / "secrets.sops.yaml", remote, root / "metrics" / "keyroll.prom",
                  fake, kubeconfig, role, redis_user, pg, redis_server)  # fmt: skip
        (root / "metrics").mkdir()
        s.write_config()
        for name, value in (("app_password", pg_initial), ("redis_password", redis_initial)):
            done = s.kr("set", name, stdin=value)
            assert done.returncode == 0, done.stdout + done.stderr
        done = s.kr("init")
        assert done.returncode == 0, done.stdout + done.stderr
        yield s


class Daemon:
    """`keyroll daemon` as systemd runs it, under REQUIRE_ENCRYPTED_SECRETS, its log in a file."""

    def __init__(self, s: Stack, env: dict[str, str] | None = None) -> None:
        self.log_path = s.root / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "keyroll", "--config", str(s.config), "daemon"],
            stdout=subprocess.DEVNULL, stderr=self._log, env={**os.environ, **ENCRYPTED, **(env or {})},
        )  # fmt: skip

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait(self, pattern: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.log)) < count:
            assert self.process.poll() is None, f"daemon died:\n{self.log}"
            assert time.monotonic() < deadline, f"{pattern!r} x{count} not logged:\n{self.log}"
            time.sleep(0.1)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


def rotated(s: Stack, name: str) -> list[dict[str, Any]]:
    """The successful rotations of `name`, from `keyroll history --json`."""
    done = s.kr("history", name, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return [e for e in json.loads(done.stdout)["data"]["entries"] if e["op"] == "rotate" and e["outcome"] == "rotated"]


def all_in_step(s: Stack) -> dict[str, Any]:
    """The store, the services, the cluster and the remote agree; return the store's values."""
    values = s.values()
    login, password = values["app_db_user"], values["app_password"]
    assert s.pg.login_ok(login, password), "PostgreSQL accepts the stored login and password"
    assert s.redis.login_ok(s.redis_user, values["redis_password"]), "Redis accepts the stored password"
    assert (s.fake.secret_value("ai-stack", "db", "username"), s.fake.secret_value("ai-stack", "db", "password")) == (
        login,
        password,
    ), "the cluster's Secret holds the stored pair"
    sees = s.fake.pods_see[API]
    assert (sees[("ai-stack", "db", "username")], sees[("ai-stack", "db", "password")]) == (login, password)
    pushed = subprocess.run(
        ["git", "--git-dir", str(s.remote), "cat-file", "blob", "main:secrets/secrets.sops.yaml"],
        capture_output=True,
        check=True,
    ).stdout
    assert sops_decrypt(pushed, s.key) == values, "the remote holds the store's values, encrypted"
    for value in values.values():
        assert value.encode() not in pushed
    return values


def clean(s: Stack) -> None:
    """status and validate say all is well; no managed value lies in plaintext anywhere
    under the installation (remote, clone, journal, backups, metrics, logs)."""
    for command in ("status", "validate"):
        done = s.kr(command)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "recover" not in done.stdout + done.stderr, done.stdout
    assert "0 failed, 0 warnings" in done.stdout
    done = s.kr("leaks", "scan", str(s.root), "--json")  # (the remote and the clone are git repositories in it)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)["data"]
    assert report["scan"]["findings"] == [] and report["not_searched"] == [], report
    assert report["scan"]["values"] >= 3, "the current values and those of the backups are searched for"
    assert {"bare repository", "repository"} <= {where["kind"] for where in report["scan"]["scanned"]}


def test_daemon_cycles_reload_and_stop_with_everything_in_step(stack: Stack) -> None:
    s = stack
    done = s.kr("rotate", "all")  # (both secrets on one clock: each cycle rotates both)
    assert done.returncode == 0, done.stdout + done.stderr
    rollouts, commits = s.fake.rollouts[API], len(s.remote_commits())
    daemon = Daemon(s)
    try:
        daemon.wait(r"app_password: rotated", 2, timeout=40)
        daemon.wait(r"redis_password: rotated", 2, timeout=10)
        s.write_config(schedule="90d")  # the operator slows the schedule down
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait("configuration reloaded")
        cycles = len(rotated(s, "redis_password")) - 1
        daemon.wait("redis_password: old credential retired", cycles, timeout=15)
        time.sleep(1)
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(20) == 0, daemon.log
    finally:
        daemon.close()
    assert len(rotated(s, "redis_password")) == cycles + 1, "after the reload: nothing more is due"
    app_cycles = len(rotated(s, "app_password")) - 1
    assert app_cycles >= 2
    log = daemon.log
    assert "ERROR" not in log and "Traceback" not in log, log
    # one commit per cycle that changed something, none for the retirements
    new_commits = s.remote_commits()[: len(s.remote_commits()) - commits]
    assert all(c.startswith("keyroll: rotate ") for c in new_commits), new_commits
    assert sum("redis_password" in c for c in new_commits) == cycles, new_commits
    assert sum("app_password" in c for c in new_commits) == app_cycles, new_commits
    # one rollout per rotation, onto the new pair
    assert s.fake.rollouts[API] - rollouts == app_cycles
    values = all_in_step(s)
    assert values["app_db_user"] in (s.role, f"{s.role}_clone")
    metrics = s.metrics.read_text()
    assert 'keyroll_secret_last_result{result="success",secret="app_password"} 1.0' in metrics
    assert "keyroll_last_scheduled_run_exit_code 0.0" in metrics
    for value in values.values():
        assert value not in metrics and value not in log
    clean(s)


@pytest.mark.parametrize("step", ["kube-publish", "git-push", "store", "restart"])
def test_daemon_killed_mid_cycle_is_back_in_step_after_its_restart(stack: Stack, step: str) -> None:
    s = stack
    before = s.values()
    killed = Daemon(s, {"KEYROLL_FAILPOINT": step})
    try:
        assert killed.process.wait(40) == -signal.SIGKILL, killed.log
    finally:
        killed.close()
    # What the kill left behind: read-only commands name the rotation in flight, and the
    # journal holds its values sealed with age (REQUIRE_ENCRYPTED_SECRETS), never in plaintext.
    status = s.kr("status")
    assert "recover" in status.stdout + status.stderr, status.stdout + status.stderr
    left = b"".join(p.read_bytes() for p in (s.root / "state").glob("journal.sqlite3*"))
    s.write_config(schedule="90d")  # (nothing new falls due after the restart: recovery alone is seen)
    restarted = Daemon(s)
    try:
        restarted.wait("ready", timeout=40)
        restarted.process.send_signal(signal.SIGTERM)
        assert restarted.process.wait(20) == 0, restarted.log
    finally:
        restarted.close()
    assert "ERROR" not in restarted.log and "Traceback" not in restarted.log, restarted.log
    values = all_in_step(s)
    changed = [name for name in ("redis_password", "app_password") if values[name] != before[name]]
    for name in changed:
        assert values[name].encode() not in left, f"{name}: the in-flight value lay in plaintext in the journal"
    if step != "kube-publish":  # (killed before the cluster saw the new pair: recovery may undo it)
        assert changed, "the cycle had gone past the point of no return: recovery drives it forward"
    clean(s)


def test_oneshot_run_dry_run_and_the_plaintext_guards(stack: Stack) -> None:
    s = stack
    before = s.values()
    plan = s.kr("rotate", "all", "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    for line in ("target:  Redis ACL user", "target:  PostgreSQL role", "publish: Kubernetes Secret ai-stack/db (key password)",
                 "publish: Kubernetes Secret ai-stack/db (key username)", "restart: rollout restart deployment/api",
                 "commit:  ", "push to origin main"):  # fmt: skip
        assert line in plan.stdout, plan.stdout
    assert s.values() == before and len(s.remote_commits()) == 3, "a dry run changes nothing"

    time.sleep(5.2)  # both secrets fall due ("5s")
    done = s.kr("run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run: 2 done, 0 not done" in done.stdout, done.stdout
    assert s.remote_commits()[0] == "keyroll: rotate app_password, redis_password"
    again = s.kr("run")
    assert again.returncode == 0 and "nothing is due" in again.stdout, again.stdout + again.stderr
    values = all_in_step(s)
    assert values["redis_password"] != before["redis_password"] and values["app_password"] != before["app_password"]
    assert values["app_db_user"] == f"{s.role}_clone", "the alternating target took its turn"

    # Under REQUIRE_ENCRYPTED_SECRETS nothing renders plaintext onto a disk.
    for argv, why in (
        (["bundle", "render", str(s.root / "out")], "render into memory"),
        (["bundle", "render", str(s.root / "out"), "--format", "kubernetes"], "add --encrypt"),
    ):
        refused = s.kr(*argv)
        assert refused.returncode == 2 and why in refused.stderr, refused.stdout + refused.stderr
        assert not (s.root / "out").exists()
    metrics = s.metrics.read_text()
    assert 'keyroll_last_run_info{command="run"} 1.0' in metrics
    assert oct(s.metrics.stat().st_mode & 0o777) == "0o644", "node_exporter reads it"
    for value in values.values():
        assert value not in metrics
    clean(s)
