"""`keyroll config generate | validate [--static] | show | schema`."""

from __future__ import annotations

import os
from pathlib import Path

from keyroll.actions.validate import FAIL, OK, WARN, ValidationReport
from keyroll.config.policy import Policy
from keyroll.config.render import render_example
from keyroll.errors import KeyrollError, UsageError
from keyroll.fsutil import describe_os_error


def generate_config(path: Path | None, *, force: bool = False) -> str:
    """The commented starting config; written to `path` (0600) when given."""
    text = render_example()
    if path is None or str(path) == "-":
        return text
    if (path.exists() or path.is_symlink()) and not force:
        raise UsageError(f"{path}: already exists; pass --force to overwrite it")
    from keyroll.fsutil import ensure_dir, write_files_atomically

    ensure_dir(path.parent.absolute())
    write_files_atomically(path.parent.absolute(), {path.name: text.encode()}, mode=0o600)
    return text


def show_config(policy: Policy) -> str:
    """The effective configuration (defaults applied, paths resolved) as TOML."""
    import tomli_w

    header = (
        f"# effective configuration from {policy.source or 'the embedded default policy'}\n"
        "# (notification URLs and health URL passwords are redacted)\n"
    )
    return header + tomli_w.dumps(policy.effective_document())


def validate_config(policy: Policy, *, static: bool = False) -> ValidationReport:
    """The config parsed (loading it already checked every key); unless `static`,
    also the files, groups, folders, tools and services it refers to."""
    report = ValidationReport()
    report.add(
        OK,
        str(policy.source or "embedded default"),
        f"valid: {len(policy.secrets)} secrets, {len(policy.targets)} targets",
    )
    if policy.gitops is not None:
        from keyroll.gitops import fleet_warnings

        for subject, message in fleet_warnings(policy):
            report.add(WARN, subject, message)
    if static:
        return report
    from keyroll.hardening import parse_env_entries, program_env
    from keyroll.paths import resolve_config_path
    from keyroll.trust import runnable_program

    def check_file(option: str, value: str) -> None:
        if not value:
            return
        try:
            path = resolve_config_path(value, policy.config_dir, key=option, env=policy.env)
            with open(path, "rb"):
                pass
        except KeyrollError as exc:
            report.add(FAIL, option, str(exc))
        except OSError as exc:
            report.add(FAIL, option, describe_os_error(path, exc))

    check_file("notify.urls_file", policy.notify.urls_file)
    check_file("store.age_key_file", policy.store.age_key_file)
    for name, target in policy.targets.items():
        check_file(f"targets.{name}.admin_password_file", getattr(target, "admin_password_file", ""))
        argv = getattr(target, "argv", ())
        env = program_env(policy.env, parse_env_entries(getattr(target, "env", ())))
        if argv and runnable_program(argv[0], env) is None:
            report.add(FAIL, f"targets.{name}.argv", f"{argv[0]}: not found or not executable")
    from keyroll.consumers import missing_program
    from keyroll.store.directory import ownership

    for secret in policy.secrets.values():
        try:
            ownership(secret)
        except KeyrollError as exc:
            report.add(FAIL, f"secrets.{secret.name}", str(exc))
        for option, specs in (("restart", secret.restart), ("health", secret.health)):
            for problem in filter(None, (missing_program(spec, policy.env) for spec in specs)):
                report.add(FAIL, f"secrets.{secret.name}.{option}", problem)
    for label, folder in (
        ("paths.secrets_dir", policy.paths.secrets_dir),
        ("paths.backup_dir", policy.paths.backup_dir),
        ("paths.state_dir", policy.paths.state_dir),
    ):
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            report.add(FAIL, label, f"{folder}: cannot be created or written by this user")
    textfile_problem = _textfile_problem(policy)
    if textfile_problem:
        report.add(FAIL, "metrics.textfile", textfile_problem)
    from keyroll.permissions import findings

    unsafe = findings(policy)
    for finding in unsafe:
        report.add(FAIL, finding.purpose, str(finding))
    if unsafe:
        return report  # (no target program or service is tried with an unsafe path in play)
    if policy.store.kind == "sops":
        from keyroll.store.sops import find_sops

        try:
            find_sops()
        except KeyrollError as exc:
            report.add(FAIL, "store.kind", str(exc))
    if policy.gitops is not None:
        from keyroll.gitops import Publisher
        from keyroll.store import open_store

        try:
            Publisher(policy, open_store(policy), None).check_ready()
        except KeyrollError as exc:
            report.add(FAIL, "gitops.repo", str(exc).removeprefix("gitops.repo: "))
    if not report.failures:
        report.add(OK, "references", "files, groups, folders and tools it names are in place")
    if policy.targets:
        _check_targets(policy, report)
    return report


def _textfile_problem(policy: Policy) -> str | None:
    """Why the metrics file could not be written (its folder is the collector's: keyroll
    does not create it), None when it can or metrics are off."""
    from keyroll.metrics import textfile_path

    path = textfile_path(policy)
    if path is None:
        return None
    folder = path.parent
    if not folder.is_dir():
        return f"{folder}: no such folder (node_exporter's --collector.textfile.directory; keyroll does not create it)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder}: not writable by this user"
    if path.is_symlink():
        return f"{path}: is a symlink; keyroll never writes through one"
    if path.exists() and not path.is_file():
        return f"{path}: is not a regular file"
    return None


def _check_targets(policy: Policy, report: ValidationReport) -> None:
    """Connect to each target with its admin credentials (read from the store)."""
    from keyroll.store import open_store
    from keyroll.targets import open_target

    store = open_store(policy)

    def live(name: str) -> str | None:
        return store.read(name)

    owners = {s.target: s.name for s in policy.secrets.values() if s.target}
    already_failed = {f.subject for f in report.failures}
    for name in policy.targets:
        if f"targets.{name}.admin_password_file" in already_failed:
            continue  # (reported once, under the option that names the file)
        if name not in owners:
            report.add(WARN, f"targets.{name}", "no secret names this target")
            continue
        try:
            target = open_target(policy, name, owners[name], live)
        except KeyrollError as exc:
            report.add(FAIL, f"targets.{name}", str(exc))
            continue
        try:
            target.check()
            report.add(OK, f"targets.{name}", f"reachable: {target.describe()}")
        except KeyrollError as exc:
            report.add(FAIL, f"targets.{name}", str(exc))
        finally:
            target.close()
