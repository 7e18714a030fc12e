"""Kubernetes names in the configuration: Secret mappings and workload consumers.

A mapping is `SECRET/KEY` or `NAMESPACE/SECRET/KEY`; a consumer is
`kubernetes:KIND/[NAMESPACE/]NAME` with KIND deployment, statefulset or
daemonset.  An empty namespace means the `[kubernetes] namespace` (else the
kubeconfig context's, else `default`), resolved when keyroll talks to the cluster.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from keyroll.records import record

CONSUMER_PREFIX = "kubernetes:"
KINDS = ("deployment", "statefulset", "daemonset")
# DNS-1123 subdomain (Secret and workload names) and label (namespaces); data keys.
_SUBDOMAIN = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_LABEL = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_KEY = re.compile(r"\A[-._a-zA-Z0-9]+\Z")


@record(frozen=True)
class SecretKey:
    """One key of one Kubernetes Secret; `namespace` "" means the default one."""

    namespace: str
    secret: str
    key: str


@record(frozen=True)
class Workload:
    """A Deployment, StatefulSet or DaemonSet; `namespace` "" means the default one."""

    kind: str
    namespace: str
    name: str


def _name_problem(name: str, what: str) -> str | None:
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        return f"{what} {name!r} is not a valid Kubernetes name (lower-case letters, digits, '-' and '.')"
    return None


def _namespace_problem(namespace: str) -> str | None:
    if len(namespace) > 63 or not _LABEL.match(namespace):
        return f"namespace {namespace!r} is not a valid Kubernetes namespace (lower-case letters, digits and '-')"
    return None


def parse_secret_key(spec: str) -> SecretKey:
    """`SECRET/KEY` or `NAMESPACE/SECRET/KEY`; ValueError (one line) when malformed."""
    parts = spec.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"{spec!r}: use SECRET/KEY or NAMESPACE/SECRET/KEY")
    namespace, secret, key = parts if len(parts) == 3 else ("", *parts)
    if len(parts) == 3 and (problem := _namespace_problem(namespace)):
        raise ValueError(f"{spec!r}: {problem}")
    if problem := _name_problem(secret, "Secret"):
        raise ValueError(f"{spec!r}: {problem}")
    if len(key) > 253 or not _KEY.match(key):
        raise ValueError(f"{spec!r}: key {key!r} may hold only letters, digits, '-', '_' and '.'")
    return SecretKey(namespace, secret, key)


def is_workload_spec(spec: str) -> bool:
    """True for a `restart` entry that names a Kubernetes workload (kubernetes:...)."""
    return spec.startswith(CONSUMER_PREFIX)


def parse_workload(spec: str) -> Workload:
    """`kubernetes:KIND/[NAMESPACE/]NAME`; ValueError (one line) when malformed."""
    rest = spec.removeprefix(CONSUMER_PREFIX)
    parts = rest.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"{spec!r}: use kubernetes:KIND/NAME or kubernetes:KIND/NAMESPACE/NAME")
    kind, namespace, name = parts if len(parts) == 3 else (parts[0], "", parts[1])
    if kind not in KINDS:
        raise ValueError(f"{spec!r}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if len(parts) == 3 and (problem := _namespace_problem(namespace)):
        raise ValueError(f"{spec!r}: {problem}")
    if problem := _name_problem(name, kind):
        raise ValueError(f"{spec!r}: {problem}")
    return Workload(kind, namespace, name)


def default_namespace_problem(namespace: str) -> str | None:
    """Why `[kubernetes] namespace` is not a namespace; None when fine (or empty)."""
    return _namespace_problem(namespace) if namespace else None


def secret_keys_problem(values: tuple[str, ...]) -> str | None:
    """The first malformed Secret mapping, as one line; None when all are fine."""
    for spec in values:
        try:
            parse_secret_key(spec)
        except ValueError as exc:
            return str(exc)
    return None


def workload_problem(spec: str) -> str | None:
    """Why `spec` is not a valid kubernetes:KIND/[NAMESPACE/]NAME entry, or None."""
    try:
        parse_workload(spec)
    except ValueError as exc:
        return str(exc)
    return None


def kubeconfig_path(kubeconfig: str, env: Mapping[str, str], config_dir: Path | None) -> Path | None:
    """The kubeconfig file keyroll loads: `[kubernetes] kubeconfig` (relative to the
    config's folder), else the first file $KUBECONFIG names, else ~/.kube/config when
    it exists; None when there is none (keyroll then uses the in-cluster account)."""
    if kubeconfig:
        from keyroll.paths import resolve_config_path

        return resolve_config_path(kubeconfig, config_dir, key="kubernetes.kubeconfig")
    if env.get("KUBECONFIG"):
        return Path(env["KUBECONFIG"].split(os.pathsep)[0]).expanduser()
    default = Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"
    return default if default.exists() else None
