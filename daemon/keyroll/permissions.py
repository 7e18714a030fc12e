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
from keyroll.config.policy import Policy
from keyroll.errors import KeyrollError
from keyroll.paths import credential_path
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
    files: list[tuple[str, Path]] = []
    if policy.source is not None:
        files.append(("config file", policy.source))
    for option, value in named:
        if value:
            try:
                files.append((option, credential_path(value, policy.env, policy.config_dir)))
            except KeyrollError:
                continue  # (no $CREDENTIALS_DIRECTORY: reported where the file is read)
    from keyroll.age import policy_identity_file

    try:
        identity = policy_identity_file(policy)
    except KeyrollError:
        identity = None
    if identity is not None and identity not in (path for _, path in files):
        files.append(("age identity", identity))
    if policy.store.kind == "sops":
        from keyroll.store.sops import resolve_path

        files.append(("store.bundle", resolve_path(policy.store.bundle, policy)))
        files.append(("store.sops_config", resolve_path(policy.store.sops_config, policy)))
    return files


def programs(policy: Policy) -> list[tuple[str, list[str]]]:
    """(option, argv) of every program keyroll may run for this policy."""
    from keyroll.consumers import restart_argv

    found: list[tuple[str, list[str]]] = []
    for name, target in policy.targets.items():
        argv = list(getattr(target, "argv", ()) or ())
        if argv:
            found.append((f"targets.{name}.argv", argv))
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
                found.append((f"secrets.{secret.name}.{option}", restart_argv(spec)))
            except ValueError:
                continue  # (an unbalanced quote: the config check reports it)
    if policy.gitops is not None:
        found.append(("gitops", ["git"]))  # (run as keyroll's user in the fleet's clone)
    if policy.store.kind == "sops":
        from keyroll.store.sops import find_sops

        with contextlib.suppress(KeyrollError):  # (not installed: reported as such)
            found.append(("store.kind = sops", [find_sops(policy.env)]))
    return found


def file_findings(policy: Policy) -> list[Unsafe]:
    """The config file, the files it names and the programs keyroll runs."""
    found: list[Unsafe] = []
    for option, path in _named_files(policy):
        found += trust.check_file(path, option)
    seen: set[tuple[str, ...]] = set()
    for option, argv in programs(policy):
        if not argv:
            continue
        key = (argv[0], *(a for a in argv[1:] if "/" in a))  # (1,000 `systemd:` restarts: one systemctl)
        if key not in seen:
            seen.add(key)
            found += trust.check_program(argv, f"program of {option}", policy.env)
    return found


def findings(policy: Policy) -> list[Unsafe]:
    """Every path of this policy that someone other than root or the running user
    can change (empty when keyroll may trust them all)."""
    return [*folder_findings(policy), *file_findings(policy)]


def refuse_untrusted(policy: Policy) -> None:
    """UnsafePath (exit 2) before any work when `findings` is not empty."""
    trust.refuse(findings(policy))
