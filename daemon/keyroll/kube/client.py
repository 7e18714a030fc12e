"""The Kubernetes API, as keyroll uses it (through lightkube, imported only here and
only when a cluster is first contacted).

Every error becomes a one-line KeyrollError naming the object and the verb:
401/403 a TargetError (exit 1), an API server that cannot be reached or answers
5xx a ServiceUnavailable (75); 409 conflicts are retried.  Values never appear in
errors: only object names, verbs and the API's status reason.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from keyroll.config.kubernetes import SecretKey, Workload, kubeconfig_path
from keyroll.config.schema import KubernetesSection
from keyroll.errors import KeyrollError, ServiceUnavailable, TargetError

FIELD_MANAGER = "keyroll"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
CONFLICT_RETRIES = 5
REQUEST_TIMEOUT = 10.0


class KubeError(TargetError):
    """The API server refused a request (exit 1)."""


class KubeUnavailable(ServiceUnavailable):
    """The API server could not be reached, or failed (exit 75)."""


def describe_secret(namespace: str, name: str) -> str:
    return f"Kubernetes Secret {namespace}/{name}"


def describe_workload(workload: Workload) -> str:
    return f"{workload.kind} {workload.namespace}/{workload.name}"


def value_digest(value: str | bytes) -> str:
    """The digest keyroll compares a cluster's key with (never the value itself)."""
    from keyroll.digest import sha256  # (CPython's own SHA-256: no OpenSSL start-up for `status`)

    data = value.encode() if isinstance(value, str) else value
    return sha256(data).hexdigest()


class Cluster:
    """One API server, reached through the kubeconfig (or the in-cluster account)
    that `[kubernetes]` names.  Counts its requests (`calls`)."""

    def __init__(self, section: KubernetesSection, env: Mapping[str, str], config_dir: Path | None = None) -> None:
        self.section = section
        self._env = env
        self._config_dir = config_dir
        self._client: Any = None
        self._namespace = section.namespace
        self.calls = 0
        self.timeout = REQUEST_TIMEOUT
        self._down: str | None = None  # why the last request did not reach the API server
        self._fail_fast = False

    # --- connection ---------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        try:
            import httpx2
            from lightkube import Client, KubeConfig
            from lightkube.core.exceptions import ConfigError as KubeConfigError
        except ImportError:
            raise KeyrollError(
                "Kubernetes support is not installed: install keyroll with the `kubernetes` extra (lightkube)"
            ) from None
        source, config = self._load_kubeconfig(KubeConfig, KubeConfigError)
        try:
            single = config.get(self.section.context or None)
        except (KubeConfigError, KeyError, AttributeError, TypeError) as exc:
            raise KeyrollError(f"kubernetes: {source}: {_config_problem(exc)}") from None
        if single is None:
            raise KeyrollError(f"kubernetes: {source} has no context {self.section.context!r}")
        if getattr(single.cluster, "insecure", False):
            raise KeyrollError(
                f"kubernetes: {source}: the cluster sets insecure-skip-tls-verify; keyroll sends secrets only "
                "to an API server whose certificate it can verify (give the cluster's CA instead)"
            )
        if not self._namespace:
            self._namespace = single.namespace or "default"
        try:
            self._client = Client(
                single,
                namespace=self._namespace,
                timeout=httpx2.Timeout(self.timeout),
                field_manager=FIELD_MANAGER,
                trust_env=False,
            )
        except (KubeConfigError, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
            # (a certificate or key file the kubeconfig names is missing or unreadable)
            named = (getattr(single.cluster, "certificate_auth", None), *_user_files(single))
            missing = next((f for f in named if f and not Path(f).expanduser().is_file()), None)
            if missing is not None:
                raise KeyrollError(f"kubernetes: {source}: a file it names does not exist ({missing})") from None
            raise KeyrollError(f"kubernetes: {source}: {_config_problem(exc)}") from None
        return self._client

    def _load_kubeconfig(self, kube_config: Any, config_error: type[Exception]) -> tuple[str, Any]:
        """The kubeconfig `[kubernetes]` names (else $KUBECONFIG, else ~/.kube/config,
        else the in-cluster service account), and how to name it in an error.  A file
        that cannot be read or parsed is one line that never quotes it (it holds a
        token)."""
        import importlib

        yaml_error: type[Exception] = importlib.import_module("yaml").YAMLError  # (lightkube's parser)
        resolved = kubeconfig_path(self.section.kubeconfig, self._env, self._config_dir)
        if resolved is None:
            try:
                return "the in-cluster service account", kube_config.from_service_account()
            except (config_error, OSError, KeyError):
                raise KeyrollError(
                    "kubernetes: no kubeconfig: set `[kubernetes] kubeconfig` or $KUBECONFIG, or create "
                    "~/.kube/config (keyroll is not running in a pod with a service account either)"
                ) from None
        source = f"the kubeconfig {resolved}"
        if not resolved.is_file():
            raise KeyrollError(f"kubernetes: {source} does not exist")
        try:
            return source, kube_config.from_file(resolved)
        except yaml_error as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise KeyrollError(f"kubernetes: {source} is not valid YAML{where}") from None
        except (config_error, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
            raise KeyrollError(f"kubernetes: {source}: {_config_problem(exc)}") from None

    @property
    def namespace(self) -> str:
        """The namespace of entries that name none."""
        if not self._namespace:
            self._connect()
        return self._namespace

    def resolve_key(self, key: SecretKey) -> SecretKey:
        return key if key.namespace else SecretKey(self.namespace, key.secret, key.key)

    def resolve_workload(self, workload: Workload) -> Workload:
        return workload if workload.namespace else Workload(workload.kind, self.namespace, workload.name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @contextmanager
    def failing_fast(self, fresh: bool = True) -> Iterator[None]:
        """Inside: once a request has not reached the API server, the next ones fail at
        once with the same reason instead of each waiting out its timeout (`fresh`:
        the first one inside is sent whatever happened before)."""
        if fresh:
            self._down = None
        saved, self._fail_fast = self._fail_fast, True
        try:
            yield
        finally:
            self._fail_fast = saved

    @contextmanager
    def request_timeout(self, seconds: float) -> Iterator[None]:
        """Inside: each request waits at most `seconds` (never more than `timeout`), so
        that a wait with a deadline does not outlast it by a request's timeout."""
        import httpx2

        inner = getattr(getattr(self._connect(), "_client", None), "_client", None)
        if not isinstance(inner, httpx2.Client) or seconds >= self.timeout:
            yield
            return
        saved = inner.timeout
        inner.timeout = httpx2.Timeout(max(seconds, 0.5))
        try:
            yield
        finally:
            inner.timeout = saved

    def _call(self, what: str, verb: str, request: Callable[[Any], Any]) -> Any:
        """Run one request; retry conflicts; map errors to one line naming `what` and `verb`."""
        client = self._connect()
        import httpx2
        from lightkube import ApiError

        if self._fail_fast and self._down is not None:
            raise KubeUnavailable(f"{what}: cannot {verb}: the API server cannot be reached ({self._down})")
        for attempt in range(CONFLICT_RETRIES):
            self.calls += 1
            try:
                result = request(client)
                self._down = None
                return result
            except ApiError as exc:
                self._down = None
                code = exc.status.code or 0
                reason = exc.status.reason or ""
                if code == 409 and attempt + 1 < CONFLICT_RETRIES:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                if code == 404:
                    message = exc.status.message or ""
                    if message.startswith("namespaces "):  # (what the API server says: 'namespaces "x" not found')
                        raise KubeNotFound(f"{what}: cannot {verb}: its namespace does not exist") from None
                    raise KubeNotFound(f"{what}: not found") from None
                if code == 401:
                    raise KubeError(
                        f"{what}: cannot {verb}: the API server did not accept keyroll's credentials (401)"
                    ) from None
                if code == 403:
                    raise KubeError(
                        f"{what}: cannot {verb}: forbidden (403): keyroll needs the {verb} permission"
                    ) from None
                if code >= 500 or code == 429:
                    raise KubeUnavailable(
                        f"{what}: cannot {verb}: the API server answered {code} {reason}".rstrip()
                    ) from None
                raise KubeError(f"{what}: cannot {verb}: the API server answered {code} {reason}".rstrip()) from None
            except httpx2.TransportError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise KubeError(
                        f"{what}: cannot {verb}: the API server's certificate is not signed by the kubeconfig's CA"
                    ) from None
                self._down = type(exc).__name__
                raise KubeUnavailable(
                    f"{what}: cannot {verb}: the API server cannot be reached ({self._down})"
                ) from None
            except (ValueError, TypeError) as exc:  # (an answer lightkube cannot decode: msgspec, JSON)
                raise KubeError(
                    f"{what}: cannot {verb}: unexpected answer from the API server ({type(exc).__name__})"
                ) from None
        raise KubeUnavailable(f"{what}: cannot {verb}: still conflicting after {CONFLICT_RETRIES} tries")

    # --- Secrets --------------------------------------------------------------------------

    def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """The Secret's data (decoded), None when it does not exist."""
        from lightkube.resources.core_v1 import Secret

        what = describe_secret(namespace, name)
        try:
            obj = self._call(what, "get", lambda c: c.get(Secret, name, namespace=namespace))
        except KubeNotFound:
            return None
        data: dict[str, bytes] = {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}
        for k, v in (obj.stringData or {}).items():
            data[k] = v.encode()
        return data

    def apply_secret(self, namespace: str, name: str, values: Mapping[str, str], *, dry_run: bool = False) -> None:
        """Server-side apply of `values` as the Secret's keys, as field manager
        `keyroll`: it owns these keys (and gives up keys it applied before and no
        longer lists); other keys and other managers' fields stay as they are.  The
        type is left out: a new Secret is Opaque, an existing one keeps its type (it
        is immutable: a kubernetes.io/basic-auth Secret is fine)."""
        from lightkube.resources.core_v1 import Secret
        from lightkube.types import PatchType

        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
        }
        self._call(
            describe_secret(namespace, name),
            "patch",
            lambda c: c.patch(
                Secret,
                name,
                body,
                namespace=namespace,
                patch_type=PatchType.APPLY,
                field_manager=FIELD_MANAGER,
                force=True,
                dry_run=dry_run,
            ),
        )

    # --- workloads ------------------------------------------------------------------------

    @staticmethod
    def _resource(kind: str) -> Any:
        from lightkube.resources import apps_v1

        return {"deployment": apps_v1.Deployment, "statefulset": apps_v1.StatefulSet, "daemonset": apps_v1.DaemonSet}[
            kind
        ]

    def read_workload(self, workload: Workload) -> dict[str, Any]:
        """The workload as plain JSON (metadata, spec, status)."""
        res = self._resource(workload.kind)
        obj = self._call(
            describe_workload(workload),
            "get",
            lambda c: c.get(res, workload.name, namespace=workload.namespace),
        )
        result: dict[str, Any] = obj.to_dict()
        return result

    def restart_workload(self, workload: Workload, restarted_at: str, *, dry_run: bool = False) -> None:
        """What `kubectl rollout restart` sends: the pod template annotation
        kubectl.kubernetes.io/restartedAt = `restarted_at` (a strategic merge patch).
        Sending the same value twice changes nothing: no second rollout."""
        res = self._resource(workload.kind)
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: restarted_at}}}}}
        self._call(
            describe_workload(workload),
            "patch",
            lambda c: c.patch(res, workload.name, body, namespace=workload.namespace, dry_run=dry_run),
        )


def _user_files(single: Any) -> tuple[str | None, ...]:
    user = getattr(single, "user", None)
    return tuple(getattr(user, name, None) for name in ("client_cert", "client_key", "token_file"))


def _config_problem(exc: Exception) -> str:
    """One line about a kubeconfig that lightkube cannot use, quoting none of it."""
    if isinstance(exc, PermissionError):
        return f"cannot read {exc.filename or 'a file it names'}: permission denied"
    if isinstance(exc, FileNotFoundError):
        return f"a file it names does not exist ({exc.filename})" if exc.filename else "a file it names does not exist"
    if isinstance(exc, OSError):
        return f"cannot use a certificate or key it names ({type(exc).__name__})"
    if isinstance(exc, KeyError):
        return f"not a kubeconfig (no {exc.args[0]!r} entry)" if exc.args else "not a kubeconfig"
    if isinstance(exc, (AttributeError, TypeError, ValueError)):
        return "not a kubeconfig (clusters, users and contexts expected)"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class KubeNotFound(KubeError):
    """The object does not exist (404)."""
