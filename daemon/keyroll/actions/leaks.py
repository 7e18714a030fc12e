"""`keyroll leaks scan`: look for every value keyroll manages, or ever managed, in git
repositories and folders; rotate what leaked; write the history rewrite.

The values searched for: the store's current values, every value in every backup
that verifies (encrypted ones decrypted in memory), and the pending and old values
of rotations in flight.  A value is *live* while a service may still accept it: the
current value, one in flight, or a previous one still waiting in the journal's
retirement queue (its grace period); every other one is *retired*.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from keyroll import backup as backups
from keyroll.config.policy import Policy
from keyroll.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, KeyrollError, UsageError, combined_exit_code
from keyroll.journal import Journal
from keyroll.leaks import MIN_LENGTH, Needle, Scanner, ScanReport, encodings
from keyroll.records import field, record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from keyroll.outcomes import TxReport
    from keyroll.targets.base import Target

REPLACEMENT = b"***REMOVED-BY-KEYROLL***"
# How sure keyroll is that a service still accepts a value, strongest first.
_STATES = ("current", "pending", "in flight", "previous, not yet retired", "retired")


@record
class RewritePlan:
    """The filter-repo expressions file written, and the steps to follow, in order."""

    file: Path
    expressions: int
    blob_ids_file: Path | None
    binary_blobs: list[str]
    sensitive_data_removal: bool
    filter_repo_found: bool
    rename_file: Path | None = None  # a --filename-callback: the same replacements in file and folder names
    renamed_refs: bool = False  # a branch or tag is named with a value
    steps: list[str] = field(default_factory=list)


@record
class LeaksReport:
    scan: ScanReport
    staged: bool = False
    too_short: list[str] = field(default_factory=list)  # secrets whose values are too short to search for
    not_searched: list[str] = field(default_factory=list)  # sources of values that could not be read, one line each
    rotation: TxReport | None = None
    after: ScanReport | None = None  # the scan again, after --rotate
    rewrite: RewritePlan | None = None

    @property
    def final(self) -> ScanReport:
        return self.after if self.after is not None else self.scan

    @property
    def exit_code(self) -> int:
        """1 when a live value is found (with --staged: any managed value); 2 when a path
        could not be read; 0 otherwise (only retired values, or nothing)."""
        final = self.final
        if final.live or (self.staged and final.findings):
            return EXIT_FAILURE
        codes = [EXIT_USAGE if final.errors else EXIT_OK]
        if self.rotation is not None:
            codes.append(self.rotation.exit_code)
        return combined_exit_code(codes)


# --- the values --------------------------------------------------------------------------


def _live_previous(journal: Journal) -> dict[str, list[tuple[str, str]]]:
    """secret -> (target, credential token) of every old credential not yet retired."""
    queued: dict[str, list[tuple[str, str]]] = {}
    for item in journal.retirements():
        queued.setdefault(item.name, []).append((item.target, item.credential))
    return queued


def _still_accepted(
    policy: Policy,
    name: str,
    value: str,
    queued: list[tuple[str, str]],
    opened: dict[tuple[str, str], Target | None],
) -> bool:
    """Whether `value` is an old credential of `name` still waiting to be retired.
    `opened` keeps the targets opened so far, (target, secret) -> target (None: it
    could not be opened), so that each is opened once however many backups ask."""
    from keyroll.targets import open_target

    for target_name, credential in queued:
        if target_name not in policy.targets:
            continue
        key = (target_name, name)
        if key not in opened:
            try:
                opened[key] = open_target(policy, target_name, name, lambda _name: None)
            except KeyrollError:
                opened[key] = None
        target = opened[key]
        if target is None:
            continue
        try:
            if target.retirement_token(value) == credential:
                return True
        except KeyrollError:
            continue
    return False


def gather_needles(policy: Policy) -> tuple[list[Needle], list[str], list[str]]:
    """Every value to look for; the secrets whose values are too short to search for;
    and one line for each source of values that could not be read."""
    from keyroll.store import open_store

    found: dict[tuple[str, str], str] = {}  # (secret, value) -> state
    not_searched: list[str] = []

    logins = {name for name, secret in policy.secrets.items() if secret.follows}

    def add(name: str, value: str | None, state: str) -> None:
        if not value or name in logins:  # (a login name is no secret: it is written in configs on purpose)
            return
        key = (name, value)
        known = found.get(key)
        if known is None or _STATES.index(state) < _STATES.index(known):
            found[key] = state

    store = open_store(policy)
    try:
        current, errors = store.read_all(sorted(policy.secrets))
    except KeyrollError as exc:
        current, errors = {}, {"store": str(exc)}
    for name, value in current.items():
        add(name, value, "current")
    for name, why in sorted(errors.items()):
        not_searched.append(f"{name}: the current value could not be read ({why})")

    journal = None
    try:
        journal = Journal.open_read(policy.paths)
    except KeyrollError as exc:
        not_searched.append(f"journal: {exc}")
    queued: dict[str, list[tuple[str, str]]] = {}
    if journal is not None:
        try:
            from keyroll.age import journal_unsealer

            journal.unseal = journal_unsealer(policy)  # (in-flight values sealed with age: REQUIRE_ENCRYPTED_SECRETS)
            for entry in journal.inflight().values():
                add(entry.name, entry.pending, "pending")
                add(entry.name, entry.old, "in flight")
            queued = _live_previous(journal)
        except KeyrollError as exc:
            not_searched.append(f"journal: the values of rotations in flight could not be read ({exc})")
        finally:
            journal.close()

    opened: dict[tuple[str, str], Target | None] = {}
    for name in backups.backup_names(policy.paths.backup_dir):
        try:
            contents = backups.read_backup(policy.paths.backup_dir / name, policy)
            values = store.restore_snapshot(contents.files, contents.store_kind)
        except KeyrollError as exc:
            not_searched.append(f"backup {name}: {exc}")
            continue
        for secret, value in values.items():
            if (secret, value) in found:
                continue
            still = secret in queued and _still_accepted(policy, secret, value, queued[secret], opened)
            add(secret, value, "previous, not yet retired" if still else "retired")

    needles: list[Needle] = []
    too_short: set[str] = set()
    for (name, value), state in sorted(found.items(), key=lambda item: (item[0][0], _STATES.index(item[1]))):
        if len(value) < MIN_LENGTH:
            too_short.add(name)
            continue
        needles.append(Needle(name, value, state != "retired", state))
    return needles, sorted(too_short), not_searched


# --- the command -------------------------------------------------------------------------


def scan(
    policy: Policy,
    paths: list[str],
    *,
    staged: bool = False,
    rotate: bool = False,
    rewrite_file: str | None = None,
    wait: float = 0.0,
) -> LeaksReport:
    """Scan `paths` (default: the current folder) for managed values; with `rotate`,
    rotate at once (emergency) every secret whose live value was found, then scan
    again; with `rewrite_file`, write the filter-repo expressions and plan the rewrite."""
    if staged and (rotate or rewrite_file):
        raise UsageError("--staged checks what is about to be committed: it takes neither --rotate nor --rewrite-file")
    targets = [Path(p) for p in (paths or ["."])]
    for path in targets:
        if not os.path.lexists(path):
            raise UsageError(f"{path}: no such file or folder")
    rewrite_path = Path(rewrite_file) if rewrite_file else None
    if rewrite_path is not None and os.path.lexists(rewrite_path):
        raise UsageError(f"{rewrite_path}: already exists; keyroll never overwrites it: name a new file")
    if rewrite_path is not None:  # (it holds the values: in a folder of another user's, she could swap it)
        from keyroll import trust

        trust.refuse(trust.check_file(rewrite_path, "--rewrite-file"), listed_by=None)
    needles, too_short, not_searched = gather_needles(policy)
    if not needles:
        raise UsageError(
            "no managed value to search for (none stored, or all shorter than "
            f"{MIN_LENGTH} characters): run `keyroll init` first"
        )
    own = {
        policy.paths.secrets_dir: "secrets folder",
        policy.paths.backup_dir: "backup folder",
        policy.paths.state_dir: "state folder",
    }
    scanner = Scanner(needles, staged=staged, own=own)
    report = LeaksReport(scanner.scan(targets), staged=staged, too_short=too_short, not_searched=not_searched)
    if rewrite_path is not None and report.scan.findings:
        report.rewrite = write_rewrite(rewrite_path, scanner, rotate_first=bool(report.scan.live) and not rotate)
    if rotate and report.scan.live:
        from keyroll.actions.rotate import rotate as rotate_secrets

        names = sorted({f.secret for f in report.scan.live if f.secret in policy.secrets})
        if names:
            report.rotation = rotate_secrets(
                policy, names, emergency=True, wait=wait, reason="before emergency rotation (leaked values)"
            )
        again, _, _ = gather_needles(policy)
        report.after = Scanner(again, own=own).scan(targets)
    return report


# --- the rewrite ---------------------------------------------------------------------------


def _filter_repo_help() -> str | None:
    """`git filter-repo -h` (its options), or None when it is not installed."""
    try:
        done = subprocess.run(["git", "filter-repo", "-h"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 and "--replace-text" in done.stdout else None


def _create_private(path: Path, data: bytes) -> None:
    """Create `path` 0600 (never replacing anything, never through a symlink)."""
    from keyroll.fsutil import describe_os_error

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise UsageError(f"{path}: already exists; keyroll never overwrites it: name a new file") from None
    except OSError as exc:
        raise UsageError(describe_os_error(path, exc)) from None
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_rewrite(path: Path, scanner: Scanner, *, rotate_first: bool) -> RewritePlan:
    """Write the `git filter-repo --replace-text` expressions for every value found (each
    in every encoding, longest first, so a value holding another goes whole), list the
    binary blobs (which --replace-text leaves alone), and say the steps in order."""
    report = scanner.report
    found = scanner.found_needles
    patterns: set[bytes] = set()
    for index in found:
        patterns.update(pattern for _, pattern in encodings(scanner.matcher.needles[index].value))
    ordered = sorted(patterns, key=lambda p: (-len(p), p))
    text = b"".join(b"literal:" + p + b"==>" + REPLACEMENT + b"\n" for p in ordered)
    _create_private(path, text)
    binary = sorted(
        {
            f.object
            for f in report.findings
            if f.binary and f.object_type == "blob" and f.object and f.source == "object"
        }
    )
    ids_file = None
    if binary:
        ids_file = path.with_name(path.name + ".blob-ids")
        _create_private(ids_file, "".join(f"{oid}\n" for oid in binary).encode("ascii"))
    help_text = _filter_repo_help()
    sdr = help_text is not None and "--sensitive-data-removal" in help_text
    plan = RewritePlan(
        path.absolute(), len(ordered), ids_file.absolute() if ids_file else None, binary, sdr, help_text is not None
    )
    if any(f.object_type == "tree" or f.name for f in report.findings):
        plan.rename_file = path.with_name(path.name + ".rename").absolute()
        _create_private(plan.rename_file, _RENAME.replace("EXPRESSIONS", repr(str(plan.file))).encode())
    plan.renamed_refs = scanner.masked_refs
    plan.steps = _steps(plan, report, rotate_first)
    return plan


# The body of a git filter-repo --filename-callback (`filename` in, the new name out): the
# replacements of the expressions file, applied to every path (--replace-text leaves names alone).
_RENAME = """\
for line in open(EXPRESSIONS, "rb").read().splitlines():
    if line.startswith(b"literal:"):
        old, new = line[len(b"literal:"):].split(b"==>", 1)
        filename = filename.replace(old, new)
return filename
"""


def filter_repo_command(plan: RewritePlan, *, strip_binary: bool = True) -> list[str]:
    """The git filter-repo command line of the plan."""
    argv = ["git", "filter-repo"]
    if plan.sensitive_data_removal:
        argv.append("--sensitive-data-removal")
    argv += ["--replace-text", str(plan.file), "--replace-message", str(plan.file)]
    if strip_binary and plan.blob_ids_file is not None:
        argv += ["--strip-blobs-with-ids", str(plan.blob_ids_file)]
    return argv


def _steps(plan: RewritePlan, report: ScanReport, rotate_first: bool) -> list[str]:
    import shlex

    steps = []
    if rotate_first:
        steps.append(
            "Rotate first: a live value was found, and rewriting history does not make it safe; "
            "`keyroll leaks scan --rotate` (or `keyroll rotate --emergency NAME...`) replaces it now."
        )
    else:
        steps.append("Rotation: confirm that every value found is retired (this scan says which are live).")
    steps.append(
        "Work in a fresh mirror clone of the shared repository: `git clone --mirror URL repo.git && cd repo.git` "
        "(from a path on this machine add `--no-local`: git-filter-repo refuses a hard-linked clone); "
        "a submodule is a repository of its own: rewrite it the same way."
    )
    if not plan.filter_repo_found:
        steps.append(
            "Install git-filter-repo: `pip install git-filter-repo` (2.47 or newer has --sensitive-data-removal)."
        )
    command = shlex.join(filter_repo_command(plan))
    note = (
        ""
        if plan.sensitive_data_removal
        else " (this git-filter-repo has no --sensitive-data-removal: upgrade to 2.47+ to have it)"
    )
    if plan.rename_file is not None:
        command += f' --filename-callback "$(cat {shlex.quote(str(plan.rename_file))})"'
        note += (
            f"; a value is in a file or folder name: --replace-text leaves names alone, the callback in "
            f"{plan.rename_file} renames them"
        )
    steps.append(f"Rewrite: `{command}`{note}.")
    if plan.renamed_refs:
        steps.append(
            "A branch or tag is named with a value (shown with *** above): rename it in the mirror "
            "(`git branch -m`, or a new tag and `git tag -d`), delete the old name on the forge, "
            "and delete the mirror's filter-repo/ folder (it keeps the old names)."
        )
    if plan.binary_blobs:
        steps.append(
            f"Binary files holding a value ({len(plan.binary_blobs)}, listed in {plan.blob_ids_file}) are removed "
            "whole by --strip-blobs-with-ids: --replace-text does not edit binary files."
        )
    steps.append("Force-push every branch and tag: `git push --force --all origin && git push --force --tags origin`.")
    steps.append(
        "Ask the forge (GitHub, GitLab, ...) to purge cached views and pull-request refs that still show the old commits."
    )
    steps.append("Have every collaborator re-clone (a pull or merge from an old clone brings the values back).")
    steps.append(
        "In every clone kept (this one included): `git stash clear` if a stash held one, then "
        "`git reflog expire --expire=now --all && git gc --prune=now`."
    )
    lfs = sorted({f.path or "" for f in report.findings if f.source == "git dir" and (f.path or "").startswith("lfs/")})
    if lfs:
        steps.append(
            f"Git LFS objects hold a value ({', '.join(lfs[:5])}{' ...' if len(lfs) > 5 else ''}; each is named by "
            "its sha256, which the pointer file in history names): the rewrite does not change them. Find the "
            "pointers (`git log --all -p -S OID`), take those files out of history as well "
            "(`git filter-repo --invert-paths --path PATH`), and have the forge delete the objects from its LFS store."
        )
    extra = sorted(
        {f.path or "" for f in report.findings if f.source in ("git dir", "work tree") and (f.path or "") not in lfs}
    )
    if extra:
        steps.append(
            "Outside history, edit these by hand (remote URLs: `git remote set-url NAME URL` without credentials): "
            + ", ".join(extra)
        )
    steps.append("Then run `keyroll leaks scan` again: it should find nothing.")
    return steps
