"""Consumers of a secret: restart or reload them after a change, then check their health.

Restart specs: `systemd:UNIT` (systemctl try-restart: a stopped unit stays
stopped), `systemd-reload:UNIT` (systemctl try-reload-or-restart),
`command:PROGRAM ARGS`.  Health specs: `tcp:HOST:PORT`, `http(s)://URL`
(2xx or 3xx: a redirect is never followed), `command:PROGRAM ARGS` (exit 0).  Commands get the secret's
name in $KEYROLL_SECRET, never its value, in a minimal environment
(keyroll.hardening); of their output keyroll repeats at most a first line that
holds no part of a value (keyroll.outputs).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

from keyroll.config.kubernetes import is_workload_spec
from keyroll.hardening import PROGRAM_CWD, program_env
from keyroll.httpclient import split_http_url
from keyroll.outputs import safe_excerpt
from keyroll.processes import end_group
from keyroll.records import record
from keyroll.text import shown

RESTART_TIMEOUT = 120.0
CHECK_TIMEOUT = 5.0
POLL_INTERVAL = 0.5


@record(frozen=True)
class ConsumerFailure:
    """A restart or health check that did not succeed, in one line."""

    spec: str
    reason: str
    temporary: bool = True  # worth retrying later (a timeout, exit 75, an unhealthy service)
    kind: str = ""  # what failed, when not the restart or health check `spec` names (Kubernetes)

    def __str__(self) -> str:
        return f"{shown(self.spec)}: {self.reason}"


def describe_restart(spec: str) -> str:
    kind, _, rest = spec.partition(":")
    if kind == "systemd":
        return f"systemctl try-restart {rest}"
    if kind == "systemd-reload":
        return f"systemctl try-reload-or-restart {rest}"
    if kind == "kubernetes":
        return f"rollout restart {rest}, then wait for it (once per command)"
    return rest


def _command_env(secret: str, env: Mapping[str, str]) -> dict[str, str]:
    # ($KEYROLL_COMMIT: the commit a [gitops] converge check looks for, when keyroll sets it)
    commit = {"KEYROLL_COMMIT": env["KEYROLL_COMMIT"]} if env.get("KEYROLL_COMMIT") else {}
    return program_env(env, commit, {"KEYROLL_SECRET": secret})


def _run(argv: list[str], secret: str, env: Mapping[str, str], timeout: float) -> tuple[str, bool] | None:
    """Run a program; None on exit 0, else why not (one line) and whether that is
    temporary (a timeout, or exit status 75)."""
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=_command_env(secret, env),
            cwd=PROGRAM_CWD,
            start_new_session=True,  # (keyroll.processes)
        )
    except FileNotFoundError:
        return f"{argv[0]}: not found", False
    except PermissionError:
        return f"{argv[0]}: not executable", False
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        end_group(process.pid)
        process.wait()
        return f"timed out after {timeout:g}s", True
    if process.returncode == 0:
        return None
    excerpt = safe_excerpt(stderr)  # (withheld when it holds part of a value keyroll has read)
    detail = f": {excerpt}" if excerpt else ""
    return f"exit status {process.returncode}{detail}", process.returncode == 75


def restart_argv(spec: str) -> list[str]:
    kind, _, rest = spec.partition(":")
    if kind == "systemd":
        return ["systemctl", "try-restart", "--", rest.strip()]
    if kind == "systemd-reload":
        return ["systemctl", "try-reload-or-restart", "--", rest.strip()]
    return shlex.split(rest)


def missing_program(spec: str, env: Mapping[str, str] | None = None) -> str | None:
    """For a `command:` restart or health check whose program cannot be found or run
    (looked up as it runs: from its folder, on the PATH of its environment, made from
    `env`, keyroll's by default): `PROGRAM: not found or not executable`; None otherwise."""
    from keyroll.trust import runnable_program

    if not spec.startswith("command:"):
        return None
    program = restart_argv(spec)[:1]
    if not program:
        return None
    where = runnable_program(program[0], program_env(os.environ if env is None else env))
    return f"{program[0]}: not found or not executable" if where is None else None


def restart(specs: Sequence[str], secret: str, env: Mapping[str, str] | None = None) -> list[ConsumerFailure]:
    """Restart or reload each consumer, in order; return the ones that failed."""
    env = os.environ if env is None else env
    failures = []
    for spec in specs:
        if is_workload_spec(spec):  # (keyroll.kube restarts workloads, once per command)
            continue
        problem = _run(restart_argv(spec), secret, env, RESTART_TIMEOUT)
        if problem:
            failures.append(ConsumerFailure(spec, *problem))
    return failures


def _check_tcp(spec: str) -> str | None:
    host, _, port = spec.removeprefix("tcp:").rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=CHECK_TIMEOUT):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def _check_http(url: str) -> str | None:
    """A GET of the URL (user:password@ sent as Basic auth); None for a 2xx or 3xx
    answer.  A redirect is an answer ("alive") and is never followed: credentials
    go to the configured host only."""
    from keyroll import httpclient

    try:
        bare, authorization = split_http_url(url)
    except ValueError:
        return "not a valid http(s) URL"  # (never the URL itself: it may hold a password)
    headers = {"User-Agent": "keyroll-health"}
    if authorization:
        headers["Authorization"] = authorization
    try:
        status = httpclient.request("GET", bare, headers=headers, timeout=CHECK_TIMEOUT).status
    except httpclient.HttpUnreachable as exc:
        return str(exc)
    return None if 200 <= status < 400 else f"HTTP {status}"


def check_once(spec: str, secret: str, env: Mapping[str, str]) -> str | None:
    """Run one health check once; None when healthy, else why not."""
    if spec.startswith(("http://", "https://")):
        return _check_http(spec)
    if spec.startswith("tcp:"):
        return _check_tcp(spec)
    problem = _run(shlex.split(spec.removeprefix("command:")), secret, env, CHECK_TIMEOUT * 2)
    return problem[0] if problem else None


def check_health(
    specs: Sequence[str],
    secret: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[ConsumerFailure]:
    """Poll every check until all pass or `timeout` runs out (or keyroll is asked to
    stop: then the checks still failing count as failed); return those still failing."""
    env = os.environ if env is None else env
    pending = list(specs)
    failures: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for spec in pending:
            problem = check_once(spec, secret, env)
            if problem:
                failures[spec] = problem
                still.append(spec)
            else:
                failures.pop(spec, None)
        pending = still
        if not pending or time.monotonic() + POLL_INTERVAL > deadline:
            break
        if should_stop is not None and should_stop():
            failures = {spec: f"{failures[spec]} (keyroll is stopping)" for spec in pending}
            break
        time.sleep(POLL_INTERVAL)
    return [ConsumerFailure(spec, failures[spec]) for spec in pending]
