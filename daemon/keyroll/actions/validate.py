"""`keyroll validate`: every check a careful operator would make, read-only.

Fails (exit 1) on a missing, unreadable, empty, malformed or manually edited
secret, a group/world-writable file or one more open than the policy, a rotation
left in flight, plaintext where encryption is required, or a folder, file or
program that someone other than root or the running user can change; warns on
world-readable files, unknown files in the secrets folder, and a secrets folder
inside a git work tree that does not ignore it.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from keyroll import backup as backups
from keyroll.actions.status import gather, missing_hint
from keyroll.config.policy import Policy
from keyroll.config.schema import SECRET_NAME
from keyroll.errors import EXIT_FAILURE, EXIT_OK
from keyroll.fsutil import MEMORY_FILESYSTEMS, filesystem_type
from keyroll.paths import TEMP_PREFIX
from keyroll.permissions import findings
from keyroll.records import field, record
from keyroll.rotation import secrets_folder_mode
from keyroll.store import open_store

OK, WARN, FAIL = "ok", "warn", "fail"
# Programs validate never runs: an unsafe one does not keep it from reading the store.
PROGRAMS_NOT_RUN_HERE = ("program of targets.", "program of secrets.")


@record(frozen=True)
class Finding:
    level: str
    subject: str
    message: str


@record
class ValidationReport:
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: str, subject: str, message: str) -> None:
        self.findings.append(Finding(level, subject, message))

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.level == FAIL]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == WARN]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURE if self.failures else EXIT_OK


def _check_mode(report: ValidationReport, name: str, mode: int, wanted: int) -> bool:
    if mode & 0o022:
        report.add(FAIL, name, f"mode {mode:04o}: writable by group or others")
        return False
    if mode & ~wanted:
        report.add(FAIL, name, f"mode {mode:04o} is more open than the policy ({wanted:04o})")
        return False
    if mode & 0o004:
        report.add(WARN, name, f"mode {mode:04o}: readable by every user of this machine (the policy allows it)")
    elif mode != wanted:
        report.add(WARN, name, f"mode {mode:04o} differs from the policy ({wanted:04o})")
    return True


def git_exposure(directory: Path) -> str | None:
    """A warning when `directory` lies in a git work tree that does not ignore it."""
    here = directory.resolve()
    for parent in (here, *here.parents):
        if (parent / ".git").exists():
            try:
                done = subprocess.run(
                    ["git", "-C", str(parent), "check-ignore", "-q", "--", str(here) + "/"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=10,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired):
                return None
            if done.returncode == 1:
                return (
                    f"lies in the git work tree {parent} and is not ignored: add it to .gitignore; "
                    "`keyroll leaks scan` finds any value already committed"
                )
            return None
    return None


def validate(policy: Policy) -> ValidationReport:
    """Check every secret and the store around them; never changes anything."""
    report = ValidationReport()
    unsafe = findings(policy)
    for finding in unsafe:  # (a path others can change: nothing there is used)
        report.add(FAIL, finding.purpose, str(finding))
    if any(not finding.purpose.startswith(PROGRAMS_NOT_RUN_HERE) for finding in unsafe):
        return report  # (the store, the journal or sops is not safe to read: the findings say why)
    store = open_store(policy)
    facts, journal = gather(policy, store)
    if journal is None:
        report.add(FAIL, str(policy.paths.state_dir), "keyroll has not been initialized here: run `keyroll init`")
    else:
        journal.close()
    if policy.require_encrypted:
        _check_encryption(report, policy, store.is_plaintext(), str(store.location))
    for item in facts:
        name, secret = item.secret.name, item.secret
        problems_before = len(report.failures)
        if item.inflight_phase:
            report.add(FAIL, name, f"a rotation was interrupted after {item.inflight_phase}: run `keyroll recover`")
        if not item.info.exists:
            report.add(FAIL, name, missing_hint(item))
            continue
        if item.read_error:
            report.add(FAIL, name, item.read_error)
            continue
        if item.value is not None and (problem := item.value_problem):
            report.add(FAIL, name, f"the value {problem}")
        if item.fingerprint_matches is False:
            if not item.inflight_phase:  # (in flight: the new value, not recorded yet; said above)
                report.add(FAIL, name, "changed outside keyroll: its fingerprint differs from the journal's")
        elif item.record is None and journal is not None:
            report.add(WARN, name, "not recorded in the journal: `keyroll init` adopts it")
        if item.info.mode is not None:
            _check_mode(report, name, item.info.mode, secret.mode)
        if len(report.failures) == problems_before and secret.follows:
            report.add(OK, name, f"login name in use for {secret.follows}")
        elif len(report.failures) == problems_before:
            report.add(OK, name, f"{secret.length} characters, {secret.entropy_bits} bits")

    if policy.uses_kubernetes():
        from keyroll.kube.publish import check_drift

        drift, warning = check_drift(policy, {item.secret.name: item.value for item in facts})
        for text in drift:
            report.add(FAIL, "kubernetes", f"{text}: `keyroll kubernetes sync` publishes the store's value")
        if warning:
            report.add(WARN, "kubernetes", warning)
    if store.kind == "directory":
        _check_folder(report, policy, store.location)
    # (An encrypted bundle in git is how SOPS is meant to be used; plaintext files, rendered
    # copies and backups are not.)
    folders = {policy.paths.backup_dir}
    if store.is_plaintext() or store.location.parent != policy.paths.secrets_dir:
        folders.add(policy.paths.secrets_dir)  # (for a SOPS store: the folder it renders into)
    for folder in sorted(folders):
        exposure = git_exposure(folder) if folder.is_dir() else None
        if exposure:
            report.add(WARN, str(folder), exposure)
    newest = backups.backup_names(policy.paths.backup_dir)
    if newest:
        summary = backups.summarize(policy.paths.backup_dir / newest[-1])
        if not summary.verified:
            report.add(WARN, summary.name, f"the newest backup does not verify: {summary.problem}")
    return report


def _check_encryption(report: ValidationReport, policy: Policy, plaintext_store: bool, location: str) -> None:
    """Under REQUIRE_ENCRYPTED_SECRETS: any plaintext at rest is a failure (rendered
    copies in a memory filesystem, as sops-nix keeps /run/secrets, are not at rest)."""
    if plaintext_store:
        report.add(FAIL, location, "encryption is required, but this store keeps secrets in plaintext")
    else:
        folder = policy.paths.secrets_dir
        if folder.is_dir() and filesystem_type(folder) not in MEMORY_FILESYSTEMS:
            for name in sorted(os.listdir(folder)):
                if name in policy.secrets and (folder / name).is_file():
                    report.add(
                        FAIL, name, f"a plaintext copy lies on disk in {folder}: remove it, or render into a tmpfs"
                    )
    for summary in backups.list_backups(policy.paths.backup_dir):
        if not summary.encrypted:
            report.add(FAIL, summary.name, "this backup holds plaintext while encryption is required: remove it")


def _check_folder(report: ValidationReport, policy: Policy, folder: Path) -> None:
    try:
        info = folder.stat()
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        report.add(FAIL, str(folder), "the secrets folder exists and is not a folder")
        return
    except OSError as exc:
        report.add(FAIL, str(folder), exc.strerror or str(exc))
        return
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o002:
        report.add(FAIL, str(folder), f"mode {mode:04o}: anyone can add or replace secrets here")
    elif mode & 0o077 & ~secrets_folder_mode(policy):
        expected = f"{secrets_folder_mode(policy):04o}"
        report.add(
            WARN, str(folder), f"mode {mode:04o}: the secrets folder is more open than needed ({expected} expected)"
        )
    for entry in sorted(names):
        if entry in policy.secrets:
            continue
        if entry.startswith(TEMP_PREFIX):
            report.add(WARN, entry, "left by an interrupted keyroll: `keyroll recover` removes it")
        elif SECRET_NAME.match(entry):
            report.add(WARN, entry, f"unknown file in {folder}: not a secret of the policy")
        else:
            report.add(WARN, entry, f"unexpected file in {folder}: the secrets folder should hold only secrets")
