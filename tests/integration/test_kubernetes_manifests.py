"""`keyroll bundle render DIR --format kubernetes`: Secret manifests, plain and
SOPS-encrypted with the real sops binary; checked by `kubectl create
--dry-run=client` where kubectl is installed (kubectl still asks a server for its
API discovery: it gets it from the fake API server of tests/kube_fake.py, since no
real API server can run here)."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from tests.conftest import Home
from tests.integration.conftest import CmdlineWatcher
from tests.integration.test_sops_store import new_identity, sops_decrypt, write_sops_yaml
from tests.kube_fake import serve

yaml = pytest.importorskip("yaml")

SECRETS = """
[kubernetes]
namespace = "ai-stack"
publish = false  # manifests only: keyroll never contacts a cluster

[secrets.pg_password]
kubernetes = ["db/password"]

[secrets.pg_replica]
kubernetes = ["db/replica", "other-ns/replica/password"]

[secrets.unmapped]
"""


def test_one_manifest_per_secret_with_mapped_keys_only(home: Home, krp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home.write_config(SECRETS)
    assert krp("--config", str(home.config), "init").code == 0
    out = tmp_path / "manifests"
    result = krp("--config", str(home.config), "bundle", "render", str(out), "--format", "kubernetes")
    assert result.code == 0, result.both
    assert sorted(p.name for p in out.iterdir()) == ["ai-stack.db.yaml", "other-ns.replica.yaml"]
    db = yaml.safe_load((out / "ai-stack.db.yaml").read_text())
    assert db["kind"] == "Secret" and db["type"] == "Opaque" and db["metadata"]["namespace"] == "ai-stack"
    assert {k: base64.b64decode(v).decode() for k, v in db["data"].items()} == {
        "password": home.value("pg_password"),
        "replica": home.value("pg_replica"),
    }
    assert stat.S_IMODE((out / "ai-stack.db.yaml").stat().st_mode) == 0o600
    for value in (home.value("pg_password"), home.value("unmapped")):
        assert value not in result.both
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the manifests were not checked by kubectl")
    with serve(tmp_path / "kube") as (_fake, kubeconfig):
        done = subprocess.run(
            ["kubectl", "create", "--dry-run=client", "--validate=false", "-o", "name", "-f", str(out)],
            capture_output=True,
            text=True,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == ["secret/db", "secret/replica"]


def test_encrypted_manifests_under_require_encrypted(home: Home, krp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = home.root / "age.key"
    recipient = new_identity(key)
    write_sops_yaml(home.root / ".sops.yaml", recipient)
    home.write_config(f'[store]\nkind = "sops"\nage_key_file = "age.key"\nrequire_encrypted = true\n{SECRETS}')
    assert krp("--config", str(home.config), "init").code == 0
    out = tmp_path / "manifests"
    refused = krp("--config", str(home.config), "bundle", "render", str(out), "--format", "kubernetes")
    assert refused.code == 2 and "--encrypt" in refused.both
    assert not out.exists()
    with CmdlineWatcher() as watcher:  # sops gets the manifest on stdin, never in its argv
        result = krp("--config", str(home.config), "bundle", "render", str(out), "--format", "kubernetes", "--encrypt")
    assert result.code == 0, result.both
    raw = (out / "ai-stack.db.yaml").read_bytes()
    document = yaml.safe_load(raw)
    assert document["sops"]["encrypted_regex"] == "^(data|stringData)$"
    assert document["metadata"]["name"] == "db"  # only the data is encrypted (what Flux expects)
    assert all(v.startswith("ENC[") for v in document["data"].values())
    plain = sops_decrypt(raw, key)
    password = plain["data"]["password"]  # type: ignore[index]
    bundle = sops_decrypt((home.root / "secrets.sops.yaml").read_bytes(), key)
    assert base64.b64decode(password).decode() == bundle["pg_password"]
    assert not watcher.carries(str(bundle["pg_password"])) and not watcher.carries(password)
    (home.root / ".sops.yaml").write_text("creation_rules:\n  - path_regex: .*\n")  # no recipient left
    elsewhere = tmp_path / "elsewhere"
    refused = krp(
        "--config", str(home.config), "bundle", "render", str(elsewhere), "--format", "kubernetes", "--encrypt"
    )
    assert refused.code == 2, refused.both
    assert f"{home.root / '.sops.yaml'}: names no age recipient; --encrypt" in refused.both
    assert len(refused.both.strip().splitlines()) == 1 and not elsewhere.exists()
