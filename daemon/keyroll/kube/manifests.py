"""Kubernetes Secret manifests for people who apply them their own way
(`keyroll bundle render DIR --format kubernetes`): one YAML document per mapped
Secret, `type: Opaque`, holding keyroll's keys only."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from keyroll.config.kubernetes import parse_secret_key
from keyroll.config.policy import Policy

# What Flux's kustomize-controller expects of a SOPS-encrypted Secret: only its data encrypted.
ENCRYPTED_REGEX = "^(data|stringData)$"


def _quoted(text: str) -> str:
    return json.dumps(text)  # (a JSON string is a YAML double-quoted scalar)


def manifest_text(namespace: str, name: str, data: Mapping[str, str]) -> str:
    """One Secret as YAML; `namespace` "" leaves it out (kubectl's context decides)."""
    lines = ["apiVersion: v1", "kind: Secret", "metadata:", f"  name: {_quoted(name)}"]
    if namespace:
        lines.append(f"  namespace: {_quoted(namespace)}")
    lines += ["  labels:", '    app.kubernetes.io/managed-by: "keyroll"', "type: Opaque", "data:"]
    for key in sorted(data):
        lines.append(f"  {_quoted(key)}: {_quoted(base64.b64encode(data[key].encode()).decode())}")
    return "\n".join(lines) + "\n"


def any_mapped(policy: Policy) -> bool:
    """Whether any secret is mapped to a Kubernetes Secret (`kubernetes = [...]`)."""
    return any(secret.kubernetes for secret in policy.secrets.values())


def secret_data(policy: Policy, values: Mapping[str, str | None]) -> dict[str, tuple[str, str, dict[str, str]]]:
    """File name -> (namespace, Secret name, key -> value) for every Kubernetes Secret a
    secret maps into (secrets without a value are left out).  File names:
    NAMESPACE.NAME.yaml, or NAME.yaml when neither the entry nor [kubernetes] names
    a namespace."""
    default = policy.kubernetes.namespace
    grouped: dict[tuple[str, str], dict[str, str]] = {}
    for secret in policy.secrets.values():
        value = values.get(secret.name)
        for spec in secret.kubernetes:
            key = parse_secret_key(spec)
            data = grouped.setdefault((key.namespace or default, key.secret), {})
            if value is not None:
                data[key.key] = value
    return {
        (f"{ns}.{name}.yaml" if ns else f"{name}.yaml"): (ns, name, data)
        for (ns, name), data in grouped.items()
        if data
    }


def secret_manifests(policy: Policy, values: Mapping[str, str | None]) -> dict[str, str]:
    """File name -> manifest, for every Secret of `secret_data`."""
    return {file: manifest_text(ns, name, data) for file, (ns, name, data) in secret_data(policy, values).items()}


def holds_data(document: Mapping[str, object], namespace: str, name: str, data: Mapping[str, str]) -> bool:
    """Whether a decrypted manifest is the Secret `namespace`/`name` holding exactly `data`."""
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("name") != name or metadata.get("namespace", "") != namespace:
        return False
    held = document.get("data")
    if not isinstance(held, dict) or set(held) != set(data):
        return False
    try:
        return all(base64.b64decode(str(held[key]), validate=True) == value.encode() for key, value in data.items())
    except ValueError:
        return False


def encrypted_manifests(
    policy: Policy, values: Mapping[str, str | None], recipients: list[str], where_of: Callable[[str], Path]
) -> dict[str, bytes]:
    """File name -> each manifest of `secret_manifests`, SOPS-encrypted as Flux decrypts
    it (data only) to the age `recipients`; `where_of(name)` is the path sops is told
    the file has (its creation rules match on it).  One sops call per manifest."""
    from keyroll.store.sops import SopsStore

    encrypter = SopsStore(policy)
    return {
        name: encrypter.encrypt_yaml(text, recipients, ENCRYPTED_REGEX, where_of(name))
        for name, text in secret_manifests(policy, values).items()
    }
