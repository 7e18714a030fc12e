"""Everything a policy makes keyroll trust, checked by `keyroll.trust`'s rules.

That is: the config file; the secrets, backup and state folders and the state
files; every file the config names (notification URLs, admin passwords, the age
identity, the SOPS bundle and its `.sops.yaml`); and every program keyroll runs
for it (command targets, `command:` and `systemd:` restarts, `command:` health
checks, `command:` converge checks, the sops binary, git for [gitops]).  `validate` and `config validate` report each finding
as a failure; writing commands and the daemon refuse to start (exit 2).

Layer: beside store, targets and consumers (it reads the policy and how
consumers turn a restart spec into a program).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from keyroll import trust
from keyroll.config.kubernetes import kubeconfig_path
from keyroll.config.policy import Policy
from keyroll.errors import KeyrollError
from keyroll.hardening import parse_env_entries, program_env
from keyroll.paths import resolve_config_path
from keyroll.trust import Unsafe


def folder_findings(policy: Policy) -> list[Unsafe]:
    """The three data folders (as far as they exist) and the state files."""
    paths = policy.paths
    found = trust.check_folder(paths.secrets_dir, "secrets folder")
    found += trust.check_folder(paths.backup_dir, "backup folder")
    found += trust.check_state(paths)
    return found


def _named_files(policy: Policy) -> list[tuple[str, Path]]:
    named: list[tuple[str, str]] = [
        ("notify.urls_file", policy.notify.urls_file),
        ("store.age_key_file", policy.store.age_key_file),
    ]
    named += [
        (f"targets.{n}.admin_password_file", getattr(t, "admin_password_file", "")) for n, t in policy.targets.items()
    ]
    named += [(f"targets.{n}.ca_file", getattr(t, "ca_file", "")) for n, t in policy.targets.items()]
    named += _request_files(policy)
    files: list[tuple[str, Path]] = []
    if policy.source is not None:
        files.append(("config file", policy.source))
    for option, value in named:
        if value:
            try:
                files.append((option, resolve_config_path(value, policy.config_dir, key=option, env=policy.env)))
            except KeyrollError:
                continue  # (no $CREDENTIALS_DIRECTORY, or no config folder: reported where the file is read)
    from keyroll.age import policy_identity_file

    try:
        identity = policy_identity_file(policy)
    except KeyrollError:
        identity = None
    if identity is not None and identity not in (path for _, path in files):
        files.append(("age identity", identity))
    kubeconfig = _kubeconfig(policy)
    if kubeconfig is not None:
        files.append(("kubernetes.kubeconfig", kubeconfig))
    if policy.store.kind == "sops":
        files.append(("store.bundle", resolve_config_path(policy.store.bundle, policy.config_dir, key="store.bundle")))
        files.append(
            (
                "store.sops_config",
                resolve_config_path(policy.store.sops_config, policy.config_dir, key="store.sops_config"),
            )
        )
    return files


def _request_files(policy: Policy) -> list[tuple[str, str]]:
    """The credential files of `http` targets' requests (basic-file:USER:FILE, bearer-file:FILE)."""
    from keyroll.config.httpspec import auth_parts

    named: list[tuple[str, str]] = []
    for name, target in policy.targets.items():
        for option in ("apply", "verify", "rollback"):
            auth = getattr(getattr(target, option, None), "auth", "") or ""
            if auth.startswith(("basic-file:", "bearer-file:")):
                with contextlib.suppress(ValueError):  # (malformed: the config check reports it)
                    form, first, second = auth_parts(auth)
                    named.append((f"targets.{name}.{option}.auth", second if form == "basic-file" else first))
    return named


def _kubeconfig(policy: Policy) -> Path | None:
    """The kubeconfig keyroll would load (it names the API server that receives the
    values, and may name a program to run for credentials), when it uses one."""
    if not policy.uses_kubernetes():
        return None
    return kubeconfig_path(policy.kubernetes.kubeconfig, policy.env, policy.config_dir)


def programs_and_envs(policy: Policy) -> list[tuple[str, list[str], dict[str, str]]]:
    """(option, argv, environment) of every program keyroll may run for this policy:
    the environment it is run with (a target's `env` may set its own PATH)."""
    from keyroll.consumers import restart_argv

    common = program_env(policy.env)
    found: list[tuple[str, list[str], dict[str, str]]] = []
    for name, target in policy.targets.items():
        argv = list(getattr(target, "argv", ()) or ())
        if argv:
            env = program_env(policy.env, parse_env_entries(getattr(target, "env", ()) or ()))
            found.append((f"targets.{name}.argv", argv, env))
    seen: set[str] = set()  # (a spec shared by many secrets is split once: shlex is slow)
    for secret in policy.secrets.values():
        specs = [("restart", spec) for spec in secret.restart]
        specs += [("health", spec) for spec in secret.health if spec.startswith("command:")]
        specs += [("converge", spec) for spec in secret.converge if spec.startswith("command:")]
        for option, spec in specs:
            if spec in seen:
                continue
            seen.add(spec)
            try:  # (a `command:` restart and health check split alike)
                found.append((f"secrets.{secret.name}.{option}", restart_argv(spec), common))
            except ValueError:
                continue  # (an unbalanced quote: the config check reports it)
    if policy.gitops is not None:
        found.append(("gitops", ["git"], common))  # (run as keyroll's user in the fleet's clone)
    if policy.store.kind == "sops":
        from keyroll.store.sops import find_sops

        with contextlib.suppress(KeyrollError):  # (not installed: reported as such)
            found.append(("store.kind = sops", [find_sops(policy.env)], common))
    return found


def file_findings(policy: Policy) -> list[Unsafe]:
    """The config file, the files it names and the programs keyroll runs."""
    found: list[Unsafe] = []
    for option, path in _named_files(policy):
        found += trust.check_file(path, option)
    seen: set[tuple[str, ...]] = set()
    for option, argv, env in programs_and_envs(policy):
        if not argv:
            continue
        # (1,000 `systemd:` restarts: one systemctl; an argument matters only when it is a
        # path or the program runs what its arguments name: sh -c, timeout, env...)
        name = Path(argv[0]).name.rstrip("0123456789.")
        runs_args = name in trust.INTERPRETERS or name in trust.WRAPPERS or name == "env"
        loaded = tuple(f"{k}={v}" for k, v in sorted(env.items()) if k in trust.LOADED_FROM)
        key = (env["PATH"], *loaded, *(argv if runs_args else [argv[0], *(a for a in argv[1:] if "/" in a)]))
        if key not in seen:
            seen.add(key)
            found += trust.check_program(argv, f"program of {option}", env)
            found += trust.check_loaded_files(env, option)
    return found


def findings(policy: Policy) -> list[Unsafe]:
    """Every path of this policy that someone other than root or the running user
    can change (empty when keyroll may trust them all)."""
    return [*folder_findings(policy), *file_findings(policy)]


def refuse_untrusted(policy: Policy) -> None:
    """UnsafePath (exit 2) before any work when `findings` is not empty."""
    trust.refuse(findings(policy))
