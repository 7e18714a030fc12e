"""Kubernetes names in the configuration, the rollout rules of `kubectl rollout
status`, the dry-run plan and the manifests: no API server involved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keyroll.config.kubernetes import SecretKey, Workload, kubeconfig_path, parse_secret_key, parse_workload
from keyroll.config.policy import build_policy
from keyroll.errors import ConfigError
from keyroll.kube.rollout import DONE, FAILED, PROGRESSING, rollout_state

PATHS = '[paths]\nsecrets_dir = "/tmp/x/s"\nbackup_dir = "/tmp/x/b"\nstate_dir = "/tmp/x/st"\n'


def _policy(text: str):  # type: ignore[no-untyped-def]
    import tomllib

    return build_policy(tomllib.loads(PATHS + text), None, {})


def test_the_kubeconfig_keyroll_loads_is_the_one_its_trust_check_checks(tmp_path: Path) -> None:
    """One rule serves the client and the permission check (they once differed on ~)."""
    home = {"HOME": str(tmp_path)}
    assert kubeconfig_path("kube.yaml", {}, tmp_path / "etc") == tmp_path / "etc" / "kube.yaml"
    assert kubeconfig_path("/k.yaml", {"KUBECONFIG": "/other"}, tmp_path) == Path("/k.yaml")
    first = kubeconfig_path("", {**home, "KUBECONFIG": "~/a.yaml:/b.yaml"}, None)
    assert first == Path("~/a.yaml").expanduser()  # the first file named, ~ expanded
    assert kubeconfig_path("", home, None) is None  # no ~/.kube/config: the in-cluster account
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("")
    assert kubeconfig_path("", home, None) == tmp_path / ".kube" / "config"


def test_names_parse() -> None:
    assert parse_secret_key("db/password") == SecretKey("", "db", "password")
    assert parse_secret_key("ai-stack/db.main/PASSWORD_1") == SecretKey("ai-stack", "db.main", "PASSWORD_1")
    assert parse_workload("kubernetes:deployment/aidb") == Workload("deployment", "", "aidb")
    assert parse_workload("kubernetes:statefulset/other-ns/db") == Workload("statefulset", "other-ns", "db")


@pytest.mark.parametrize(
    ("table", "keypath", "words"),
    [
        ('kubernetes = ["Postgres/password"]', "secrets.a.kubernetes", "Secret 'Postgres'"),
        ('kubernetes = ["db/pass word"]', "secrets.a.kubernetes", "key 'pass word'"),
        ('kubernetes = ["password"]', "secrets.a.kubernetes", "SECRET/KEY"),
        ('kubernetes = ["Ns/db/k"]', "secrets.a.kubernetes", "namespace 'Ns'"),
        ('restart = ["kubernetes:cronjob/x"]', "secrets.a.restart", "unknown kind 'cronjob'"),
        ('restart = ["kubernetes:deployment/a/b/c"]', "secrets.a.restart", "KIND/NAMESPACE/NAME"),
        ('restart = ["kubernetes:deployment/Api"]', "secrets.a.restart", "deployment 'Api'"),
    ],
)
def test_bad_names_are_config_errors_naming_the_key(table: str, keypath: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _policy(f"[secrets.a]\n{table}\n")
    assert str(caught.value).startswith(f"{keypath}: ") and words in str(caught.value)


def test_a_bad_default_namespace_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        _policy('[kubernetes]\nnamespace = "AI stack"\n[secrets.a]\nkubernetes = ["db/a"]\n')
    assert str(caught.value).startswith("kubernetes.namespace: ") and "'AI stack'" in str(caught.value)
    assert _policy('[kubernetes]\nnamespace = ""\n[secrets.a]\n') is not None


def test_a_zero_rollout_timeout_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^kubernetes.rollout_timeout: .*more than 0s"):
        _policy('[kubernetes]\nrollout_timeout = "0s"\n[secrets.a]\nkubernetes = ["db/a"]\n')


def test_config_validate_exits_2(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config('[secrets.a]\nrestart = ["kubernetes:job/x"]\n')
    result = kr("--config", str(home.config), "config", "validate")
    assert result.code == 2 and "secrets.a.restart" in result.err


def _deployment(**status: object) -> dict[str, object]:
    return {"metadata": {"generation": 3}, "spec": {"replicas": 2}, "status": {"observedGeneration": 3, **status}}


def test_deployment_rollout_rules() -> None:
    done = _deployment(replicas=2, updatedReplicas=2, availableReplicas=2)
    assert rollout_state("deployment", done).state == DONE
    paused = {**done, "spec": {"replicas": 2, "paused": True}}
    assert rollout_state("deployment", paused).state == FAILED  # (kubectl will not restart it either)
    stale = {**done, "status": {**done["status"], "observedGeneration": 2}}  # type: ignore[dict-item]
    assert rollout_state("deployment", stale).state == PROGRESSING
    assert rollout_state("deployment", _deployment(replicas=3, updatedReplicas=2, availableReplicas=2)).state == (
        PROGRESSING  # an old replica still terminating
    )
    assert rollout_state("deployment", _deployment(replicas=2, updatedReplicas=1, availableReplicas=1)).state == (
        PROGRESSING
    )
    assert rollout_state("deployment", _deployment(replicas=2, updatedReplicas=2, availableReplicas=1)).state == (
        PROGRESSING
    )
    deadline = _deployment(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}])
    assert rollout_state("deployment", deadline).state == FAILED


def test_statefulset_and_daemonset_rollout_rules() -> None:
    sts = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, "readyReplicas": 2, "updatedReplicas": 2, "currentRevision": "a"},
    }
    assert rollout_state("statefulset", {**sts, "status": {**sts["status"], "updateRevision": "b"}}).state == (
        PROGRESSING
    )
    assert rollout_state("statefulset", {**sts, "status": {**sts["status"], "updateRevision": "a"}}).state == DONE
    ds = {"metadata": {"generation": 1}, "spec": {}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 3}}
    half = {**ds["status"], "updatedNumberScheduled": 3, "numberAvailable": 2}
    assert rollout_state("daemonset", {**ds, "status": half}).state == PROGRESSING
    assert rollout_state("daemonset", {**ds, "status": {**half, "numberAvailable": 3}}).state == DONE


def test_plan_names_each_secret_and_workload_once() -> None:
    from keyroll.kube.publish import plan_lines

    policy = _policy(
        '[kubernetes]\nnamespace = "ai"\n'
        '[secrets.a]\nkubernetes = ["db/a"]\nrestart = ["kubernetes:deployment/api"]\n'
        '[secrets.b]\nkubernetes = ["db/b"]\nrestart = ["kubernetes:deployment/api", "kubernetes:daemonset/x/agent"]\n'
    )
    assert plan_lines(policy, ["a", "b"]) == [
        "Kubernetes Secret ai/db (key a)",
        "Kubernetes Secret ai/db (key b)",
        "rollout restart deployment ai/api",
        "rollout restart daemonset x/agent",
    ]


def test_plan_lines_show_the_login_name_published_with_its_password() -> None:
    """An alternating target stores (and publishes) its login name with the password:
    `rotate --dry-run` of the password shows the login name's Secret too."""
    from keyroll.kube.publish import plan_lines

    policy = _policy(
        '[kubernetes]\nnamespace = "ai"\n'
        '[targets.pg]\ntype = "postgres"\nuser = "app"\nadmin_user = "admin"\nstrategy = "alternating"\n'
        'username_secret = "app_user"\n'
        '[secrets.app_password]\ntarget = "pg"\nkubernetes = ["db/password"]\nrestart = ["kubernetes:deployment/api"]\n'
        '[secrets.app_user]\nkind = "username"\nkubernetes = ["db-user/username"]\n'
    )
    assert plan_lines(policy, ["app_password"]) == [
        "Kubernetes Secret ai/db (key password)",
        "Kubernetes Secret ai/db-user (key username)",
        "rollout restart deployment ai/api",
    ]


def test_manifests_hold_the_mapped_keys_only() -> None:
    from keyroll.kube.manifests import secret_manifests

    policy = _policy('[secrets.a]\nkubernetes = ["db/a", "other/db/a"]\n[secrets.b]\n')
    manifests = secret_manifests(policy, {"a": "va", "b": "vb"})
    assert sorted(manifests) == ["db.yaml", "other.db.yaml"]
    assert "namespace" not in manifests["db.yaml"]  # (kubectl's context decides)
    assert '"a": "dmE="' in manifests["db.yaml"] and "vb" not in "".join(manifests.values())


def test_nothing_imports_lightkube_until_a_cluster_is_contacted() -> None:
    code = (
        "import sys, keyroll.kube.publish, keyroll.kube.manifests, keyroll.rotation, keyroll.actions.kubernetes\n"
        "assert not [m for m in sys.modules if m.startswith(('lightkube', 'httpx'))], 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _kubeconfig(
    ca_file: str = "", client_cert: str = "", token: str = "t0ken-in-the-kubeconfig", insecure: bool = False
) -> dict[str, object]:
    cluster: dict[str, object] = {"server": "https://127.0.0.1:1"}
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    if ca_file:
        cluster["certificate-authority"] = ca_file
    user: dict[str, object] = {"token": token}
    if client_cert:
        user = {"client-certificate": client_cert, "client-key": client_cert}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }


@pytest.mark.parametrize(
    ("content", "context", "words"),
    [
        (None, "", "does not exist"),
        ("users:\n- name: u\n  user:\n    token: t0ken-in-the-kubeconfig: [\n", "", "is not valid YAML (line 4)"),
        ("- just\n- a list\n", "", "not a kubeconfig"),
        ("", "", "not a kubeconfig"),
        ('{"kind": "Config", "current-context": "ctx"}', "", "not a kubeconfig"),
        (json.dumps(_kubeconfig()), "prod", "Context 'prod' not found"),
        (json.dumps(_kubeconfig(ca_file="/nonexistent/ca.pem")), "", "does not exist (/nonexistent/ca.pem)"),
        (json.dumps(_kubeconfig(client_cert="/nonexistent/u.pem")), "", "does not exist (/nonexistent/u.pem)"),
        (json.dumps(_kubeconfig(insecure=True)), "", "insecure-skip-tls-verify"),
    ],
)
def test_a_kubeconfig_keyroll_cannot_use_is_one_line_quoting_none_of_it(
    tmp_path: Path, content: str | None, context: str, words: str
) -> None:
    from keyroll.config.schema import KubernetesSection
    from keyroll.errors import KeyrollError
    from keyroll.kube.client import Cluster

    pytest.importorskip("lightkube")
    path = tmp_path / "kubeconfig.yaml"
    if content is not None:
        path.write_text(content)
    cluster = Cluster(KubernetesSection(kubeconfig=str(path), context=context, namespace="ns"), {}, None)
    with pytest.raises(KeyrollError) as caught:
        cluster.read_secret("ns", "db")
    message = str(caught.value)
    assert message.startswith(f"kubernetes: the kubeconfig {path}") and words in message, message
    assert "\n" not in message and "t0ken" not in message and type(caught.value) is KeyrollError


def test_no_kubeconfig_anywhere_says_where_keyroll_looked(tmp_path: Path) -> None:
    from keyroll.config.schema import KubernetesSection
    from keyroll.errors import KeyrollError
    from keyroll.kube.client import Cluster

    pytest.importorskip("lightkube")
    cluster = Cluster(KubernetesSection(namespace="ns"), {"HOME": str(tmp_path)}, None)
    with pytest.raises(KeyrollError, match=r"no kubeconfig: set `\[kubernetes\] kubeconfig` or \$KUBECONFIG"):
        cluster.read_secret("ns", "db")


@pytest.mark.parametrize("command", ["status", "validate"])
def test_status_without_kubernetes_imports_no_kubernetes_client(home, command: str) -> None:  # type: ignore[no-untyped-def]
    """`keyroll status` and `validate` of a configuration without Kubernetes load
    neither lightkube nor its HTTP client (a fresh interpreter, the real CLI)."""
    home.write_config('[secrets.a]\n[secrets.b]\nkind = "api_key"\n')
    code = (
        "import sys\n"
        "from keyroll.cli import main\n"
        f"main(['--config', {str(home.config)!r}, 'init'])\n"
        f"main(['--config', {str(home.config)!r}, {command!r}])\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'lightkube', 'httpx', 'httpx2', 'yaml'})\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
