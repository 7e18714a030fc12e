"""An in-process fake Kubernetes API server, for the tests and the benchmark.

No real Kubernetes API server can be installed on these machines (no binary in
any reachable registry, no container images), so keyroll's Kubernetes support is
tested against this fake.  It speaks HTTPS with its own CA (made with the openssl
CLI), wants a bearer token, and implements the calls keyroll makes with their
real semantics:

- Secrets: GET; PATCH as server-side apply (`application/apply-patch+yaml`, with
  `fieldManager`, `force` and `dryRun`; `type` immutable), keeping per-key field ownership like
  `managedFields`: a manager owns the keys it applied, a key owned by another
  manager with a different value is a 409 conflict unless forced, keys a manager
  stops applying are removed unless another manager owns them.
- Deployments, StatefulSets, DaemonSets: GET; PATCH as strategic merge patch
  (maps merged), `metadata.generation` bumped when the pod template changes (a
  rollout starts), and a controller thread that moves `status` along until the
  rollout completes.
- Scripted failures: a stuck rollout, `ProgressDeadlineExceeded`, a given status
  (401/403/404/409/500) for the next matching requests, verbs forbidden on an
  object (403), and a server that stops answering (`hang`).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN = "fake-token-for-tests"
PLURALS = {"deployments": "deployment", "statefulsets": "statefulset", "daemonsets": "daemonset"}
KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet"}
_PATH = re.compile(
    r"\A/(?:api/v1|apis/apps/v1)/namespaces/(?P<ns>[^/]+)/(?P<plural>secrets|deployments|statefulsets|daemonsets)"
    r"/(?P<name>[^/?]+)\Z"
)


def make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(ca_key),
        "-out", str(ca), "-days", "2", "-subj", "/CN=keyroll-test-ca")  # fmt: skip
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
        "-out", str(csr), "-subj", "/CN=127.0.0.1")  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return ca, cert, key


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Strategic merge patch for maps (what keyroll sends): maps merged, null deletes."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class FakeKube:
    """The cluster's state and the scripted failures; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.owners: dict[tuple[str, str], dict[str, str]] = {}  # (ns, secret) -> key -> manager
        self.workloads: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rollouts: dict[str, int] = {}  # "kind/ns/name" -> rollouts started (template changes)
        self.restart_values: dict[str, list[str]] = {}  # "kind/ns/name" -> restartedAt values, in order
        self.pods_see: dict[str, dict[tuple[str, str, str], str]] = {}  # what the last rollout's pods read
        self.calls: list[tuple[str, str]] = []
        self.failures: list[tuple[str, str, int, int]] = []  # (method, path part, status, times left)
        self.forbidden: set[tuple[str, str]] = set()  # (verb, path part)
        self.stuck: set[str] = set()  # "kind/ns/name": the rollout never completes
        self.deadline: set[str] = set()  # "kind/ns/name": ProgressDeadlineExceeded
        self.deadline_once: set[str] = set()  # "kind/ns/name": the next rollout only exceeds its deadline
        self.hang = threading.Event()  # set: the server stops answering
        self.rollout_seconds = 0.2  # how long a healthy rollout takes
        self.token = TOKEN
        self.namespaces: set[str] | None = None  # set: a PATCH elsewhere is 404 (no such namespace)

    # --- setup -----------------------------------------------------------------------------

    def add_secret(
        self, namespace: str, name: str, data: dict[str, str], manager: str = "kubectl", type: str = "Opaque"
    ) -> None:
        with self.lock:
            self.secrets[(namespace, name)] = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
                "type": type,
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }
            self.owners[(namespace, name)] = dict.fromkeys(data, manager)

    def add_workload(self, kind: str, namespace: str, name: str, replicas: int = 2) -> None:
        with self.lock:
            obj: dict[str, Any] = {
                "apiVersion": "apps/v1",
                "kind": KINDS[kind],
                "metadata": {"name": name, "namespace": namespace, "generation": 1, "resourceVersion": "1"},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": name, "image": f"example/{name}:1"}]},
                    },
                },
                "status": {},
            }
            if kind == "daemonset":
                del obj["spec"]["replicas"]
            if kind == "statefulset":
                obj["spec"]["serviceName"] = name
            self.workloads[(kind, namespace, name)] = obj
            self._complete(kind, obj)

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        with self.lock:
            data = (self.secrets.get((namespace, name)) or {}).get("data") or {}
            return base64.b64decode(data[key]).decode() if key in data else None

    def fail_next(self, method: str, path_part: str, status: int, times: int = 1) -> None:
        """The next `times` requests whose method and path match answer `status`."""
        with self.lock:
            self.failures.append((method.upper(), path_part, status, times))

    def count(self, method: str | None = None, path_part: str = "") -> int:
        with self.lock:
            return sum(1 for m, p in self.calls if (method is None or m == method) and path_part in p)

    # --- the controller --------------------------------------------------------------------

    def _complete(self, kind: str, obj: dict[str, Any]) -> None:
        generation = obj["metadata"]["generation"]
        replicas = obj["spec"].get("replicas", 3)
        status = obj["status"]
        status["observedGeneration"] = generation
        status.pop("conditions", None)
        if kind == "deployment":
            status.update(
                replicas=replicas, updatedReplicas=replicas, availableReplicas=replicas, readyReplicas=replicas
            )
            status["conditions"] = [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
        elif kind == "statefulset":
            revision = f"{obj['metadata']['name']}-{generation}"
            status.update(replicas=replicas, readyReplicas=replicas, updatedReplicas=replicas)
            status.update(currentRevision=revision, updateRevision=revision)
        else:
            status.update(desiredNumberScheduled=3, currentNumberScheduled=3, numberMisscheduled=0)
            status.update(updatedNumberScheduled=3, numberAvailable=3, numberReady=3)

    def _start(self, kind: str, obj: dict[str, Any]) -> None:
        """A new pod template: the rollout begins (new generation, nothing updated yet)."""
        obj["metadata"]["generation"] += 1
        obj["metadata"]["rolloutStarted"] = time.monotonic()
        status = obj["status"]
        if kind == "deployment":
            status["updatedReplicas"] = 0
            status["replicas"] = obj["spec"].get("replicas", 1) + 1
        elif kind == "statefulset":
            status["updatedReplicas"] = 0
            status["updateRevision"] = f"{obj['metadata']['name']}-{obj['metadata']['generation']}"
        else:
            status["updatedNumberScheduled"] = 0

    def tick(self) -> None:
        with self.lock:
            for (kind, ns, name), obj in self.workloads.items():
                ident = f"{kind}/{ns}/{name}"
                started = obj["metadata"].get("rolloutStarted")
                if started is None:
                    continue
                if ident in self.deadline or obj["metadata"].get("deadlineFor") == obj["metadata"]["generation"]:
                    obj["status"]["observedGeneration"] = obj["metadata"]["generation"]
                    obj["status"]["conditions"] = [
                        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
                    ]
                    continue
                if ident in self.stuck:
                    obj["status"]["observedGeneration"] = obj["metadata"]["generation"]
                    continue
                if time.monotonic() - started >= self.rollout_seconds:
                    self._complete(kind, obj)
                    del obj["metadata"]["rolloutStarted"]

    # --- requests ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> tuple[int, Any]:
        with self.lock:
            self.calls.append((method, path))
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 401, _status(401, "Unauthorized", "Unauthorized")
            for index, (m, part, status, times) in enumerate(self.failures):
                if m == method and part in path:
                    self.failures[index] = (m, part, status, times - 1)
                    if times <= 1:
                        del self.failures[index]
                    return status, _status(status, _REASONS.get(status, "Error"), f"scripted {status}")
            verb = {"GET": "get", "PATCH": "patch"}.get(method, method.lower())
            if any(v == verb and part in path for v, part in self.forbidden):
                return 403, _status(403, "Forbidden", f'cannot {verb} resource at "{path}"')
            if method == "GET" and path in _DISCOVERY:  # (for kubectl, which asks before anything else)
                return 200, _DISCOVERY[path]
            match = _PATH.match(path)
            if match is None:
                return 404, _status(404, "NotFound", "the server could not find the requested resource")
            ns, plural, name = match["ns"], match["plural"], match["name"]
            if self.namespaces is not None and ns not in self.namespaces and method == "PATCH":
                return 404, _status(404, "NotFound", f'namespaces "{ns}" not found')
            dry_run = query.get("dryRun") == "All"
            if plural == "secrets":
                if method == "GET":
                    obj = self.secrets.get((ns, name))
                    return (200, self._with_fields(ns, name, obj)) if obj else (404, _not_found("secrets", name))
                if method == "PATCH" and headers.get("Content-Type") == "application/apply-patch+yaml":
                    return self._apply_secret(ns, name, json.loads(body), query, dry_run)
                return 415, _status(415, "UnsupportedMediaType", "only server-side apply is implemented for secrets")
            kind = PLURALS[plural]
            obj = self.workloads.get((kind, ns, name))
            if obj is None:
                return 404, _not_found(plural, name)
            if method == "GET":
                return 200, _public(obj)
            if method == "PATCH" and headers.get("Content-Type") == "application/strategic-merge-patch+json":
                merged = _merge(obj, json.loads(body))
                if dry_run:
                    return 200, _public(merged)
                changed = merged["spec"]["template"] != obj["spec"]["template"]
                obj["spec"] = merged["spec"]
                obj["metadata"]["annotations"] = merged["metadata"].get("annotations", {})
                if changed:
                    ident = f"{kind}/{ns}/{name}"
                    self.rollouts[ident] = self.rollouts.get(ident, 0) + 1
                    value = (
                        obj["spec"]["template"]["metadata"]
                        .get("annotations", {})
                        .get("kubectl.kubernetes.io/restartedAt", "")
                    )
                    self.restart_values.setdefault(ident, []).append(value)
                    self.pods_see[ident] = {  # (new pods read their Secrets when they start)
                        (sns, sname, key): base64.b64decode(v).decode()
                        for (sns, sname), secret in self.secrets.items()
                        for key, v in (secret.get("data") or {}).items()
                    }
                    self._start(kind, obj)
                    if ident in self.deadline_once:
                        self.deadline_once.discard(ident)
                        obj["metadata"]["deadlineFor"] = obj["metadata"]["generation"]
                return 200, _public(obj)
            return 415, _status(415, "UnsupportedMediaType", "unsupported patch type")

    def _with_fields(self, ns: str, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        managers: dict[str, list[str]] = {}
        for key, manager in self.owners.get((ns, name), {}).items():
            managers.setdefault(manager, []).append(key)
        out["metadata"]["managedFields"] = [
            {"manager": m, "operation": "Apply", "fieldsV1": {"f:data": {f"f:{k}": {} for k in keys}}}
            for m, keys in managers.items()
        ]
        return out

    def _apply_secret(
        self, ns: str, name: str, body: dict[str, Any], query: dict[str, str], dry_run: bool
    ) -> tuple[int, Any]:
        manager = query.get("fieldManager")
        if not manager:
            return 422, _status(422, "Invalid", "fieldManager is required for apply requests")
        if body.get("kind") != "Secret" or (body.get("metadata") or {}).get("name") != name:
            return 400, _status(400, "BadRequest", "the body does not name this Secret")
        force = query.get("force") == "true"
        existing = self.secrets.get((ns, name))
        if existing and "type" in body and body["type"] != existing.get("type", "Opaque"):
            return 422, _status(422, "Invalid", f'Secret "{name}" is invalid: type: Invalid value: field is immutable')
        data = dict((existing or {}).get("data") or {})
        owners = dict(self.owners.get((ns, name), {}))
        applied = dict(body.get("data") or {})
        conflicts = [k for k, v in applied.items() if owners.get(k, manager) != manager and data.get(k) != v]
        if conflicts and not force:
            return 409, _status(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s)")
        for key, owner in list(owners.items()):  # keys this manager stops applying are dropped
            if owner == manager and key not in applied:
                del owners[key]
                data.pop(key, None)
        for key, value in applied.items():
            data[key] = value
            owners[key] = manager
        if dry_run:
            return 200, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}}
        obj = existing or {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}}
        obj["data"] = data
        obj["type"] = body.get("type", obj.get("type", "Opaque"))
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"].get("resourceVersion", "0")) + 1)
        self.secrets[(ns, name)] = obj
        self.owners[(ns, name)] = owners
        return 200, self._with_fields(ns, name, obj)


def _resources(group_version: str, names: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {
                "name": plural,
                "singularName": plural[:-1],
                "namespaced": True,
                "kind": kind,
                "verbs": ["get", "list", "patch", "create", "update", "delete"],
            }
            for plural, kind in names.items()
        ],
    }


_DISCOVERY: dict[str, Any] = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            }
        ],
    },
    "/api/v1": _resources("v1", {"secrets": "Secret"}),
    "/apis/apps/v1": _resources(
        "apps/v1", {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}
    ),
}

_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 500: "InternalError"}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _not_found(plural: str, name: str) -> dict[str, Any]:
    return _status(404, "NotFound", f'{plural} "{name}" not found')


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"].pop("rolloutStarted", None)
    out["metadata"].pop("deadlineFor", None)
    return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # (headers and body go as separate writes: no 40 ms delayed-ACK stall)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        while fake.hang.is_set():  # stops answering (the connection stays open)
            time.sleep(0.05)
            if self.server.closing:
                return
        path, _, raw_query = self.path.partition("?")
        from urllib.parse import parse_qsl

        query = dict(parse_qsl(raw_query))
        code, payload = fake.handle(self.command, path, query, self.headers, body)
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeKube
    closing = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout) before the answer: no traceback on stderr."""
        import sys

        if not isinstance(sys.exc_info()[1], (OSError, ssl.SSLError)):
            super().handle_error(request, client_address)


@contextmanager
def serve(folder: Path, fake: FakeKube | None = None) -> Iterator[tuple[FakeKube, Path]]:
    """Run a fake API server on 127.0.0.1 (HTTPS); yield it with a kubeconfig for it."""
    fake = fake or FakeKube()
    ca, cert, key = make_ca(folder / "pki")
    server = _Server(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.fake = fake
    stop = threading.Event()

    def controller() -> None:
        while not stop.wait(0.05):
            fake.tick()

    threads = [
        threading.Thread(target=server.serve_forever, daemon=True),
        threading.Thread(target=controller, daemon=True),
    ]
    for thread in threads:
        thread.start()
    port = server.server_address[1]
    kubeconfig = folder / "kubeconfig.yaml"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "fake",
                        "cluster": {
                            "server": f"https://127.0.0.1:{port}",
                            "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                        },
                    }
                ],
                "users": [{"name": "keyroll", "user": {"token": fake.token}}],
                "contexts": [
                    {"name": "fake", "context": {"cluster": "fake", "user": "keyroll", "namespace": "ai-stack"}}
                ],
                "current-context": "fake",
            }
        )
    )
    kubeconfig.chmod(0o600)
    try:
        yield fake, kubeconfig
    finally:
        stop.set()
        server.closing = True
        fake.hang.clear()
        server.shutdown()
        server.server_close()
