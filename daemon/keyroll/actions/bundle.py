"""`keyroll bundle migrate | render | updatekeys`: the SOPS store's own verbs.

Each runs inside a WriterSession (writer lock, recovery first) and needs
`[store] kind = "sops"`.
"""

from __future__ import annotations

import os
from pathlib import Path

from keyroll import consumers
from keyroll.config.kubernetes import is_workload_spec
from keyroll.config.policy import Policy
from keyroll.config.schema import SECRET_NAME
from keyroll.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_TEMPFAIL,
    ConfigError,
    EncryptionRequired,
    StoreError,
    UsageError,
)
from keyroll.fsutil import MEMORY_FILESYSTEMS, describe_os_error, filesystem_type, fsync_dir
from keyroll.outcomes import TxReport
from keyroll.records import field, record
from keyroll.rotation import WriterSession, failpoint
from keyroll.store.sops import ENV_FILE, SopsStore, bundle_recipients, render_env, render_files

FORMATS = ("files", "env")


def _sops_store(session: WriterSession) -> SopsStore:
    store = session.store
    assert isinstance(store, SopsStore)
    return store


def _require_sops(policy: Policy, verb: str) -> None:
    if policy.store.kind != "sops":
        where = policy.source or "the configuration"
        raise ConfigError(f'{where}: store.kind: `keyroll bundle {verb}` needs [store] kind = "sops"')


# --- migrate ------------------------------------------------------------------------------


@record
class MigrateReport:
    """What `bundle migrate` did; names only, never values."""

    bundle: Path
    source: Path
    migrated: list[str] = field(default_factory=list)  # written into the bundle, verified
    already: list[str] = field(default_factory=list)  # the bundle already held the same value
    missing: list[str] = field(default_factory=list)  # in the policy, no file in the source folder
    skipped: list[str] = field(default_factory=list)  # files of the source folder not in the policy (left alone)
    removed: list[str] = field(default_factory=list)  # plaintext files deleted after verification
    backup: Path | None = None
    recovery: TxReport = field(default_factory=TxReport)

    @property
    def exit_code(self) -> int:
        return EXIT_OK


def migrate(policy: Policy, remove_plaintext: bool = False, *, wait: float = 0.0) -> MigrateReport:
    """Move the directory store's files (the secrets folder) into the SOPS bundle with
    one encrypt, verify every value by decrypting the new bundle, and only then,
    if asked, delete the plaintext files.  Values are unchanged, so the journal's
    fingerprints stay as they are.  A secret the bundle already holds with a
    different value stops the migration before anything is written."""
    from keyroll.store.directory import DirectoryStore

    _require_sops(policy, "migrate")
    source = DirectoryStore(policy.paths.secrets_dir)
    session = WriterSession(policy, wait=wait)
    _sops_store(session).guard_unmigrated = False  # moving those files in is the point
    with session:
        store = _sops_store(session)
        report = MigrateReport(store.location, source.location, recovery=session.recovery)
        names = list(policy.secrets)
        plain, errors = source.read_all(names)
        if errors:
            first = next(iter(errors.values()))
            raise StoreError(f"{first}; nothing was migrated")
        found = {name: value for name, value in plain.items() if value is not None}
        report.missing = [name for name in names if plain.get(name) is None]
        report.skipped = [n for n in source.entries() if SECRET_NAME.match(n) and n not in policy.secrets]
        current, _errors = store.read_all(list(found))
        conflicts = [n for n, v in found.items() if current.get(n) is not None and current[n] != v]
        if conflicts:
            raise StoreError(
                f"{store.location}: already holds {', '.join(conflicts)} with values other than those in "
                f"{source.location}; nothing was migrated (keep one of them: `keyroll set NAME`, or remove the file)"
            )
        todo = {n: v for n, v in found.items() if current.get(n) != v}
        report.already = [n for n in found if n not in todo]
        if todo:
            report.backup = session.backup("before migrate")
            store.write(todo, policy.secrets, before_rename=lambda: failpoint("store-write"))
        if found:
            check = store.decrypt_file()
            wrong = [n for n, v in found.items() if check.get(n) != v]
            if wrong:
                raise StoreError(
                    f"{store.location}: after writing, {', '.join(wrong)} do not read back as migrated; "
                    "the plaintext files were kept"
                )
        report.migrated = list(todo)
        if remove_plaintext and found:
            report.removed = _remove_files(source.location, list(found))
    return report


def _remove_files(directory: Path, names: list[str]) -> list[str]:
    removed = []
    for name in names:
        try:
            os.unlink(directory / name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StoreError(describe_os_error(directory / name, exc)) from None
        removed.append(name)
    if removed:
        fsync_dir(directory)
    return removed


# --- render -------------------------------------------------------------------------------


@record
class RenderReport:
    """What `bundle render` wrote; names only, never values."""

    path: Path  # the folder (files) or the env file
    format: str
    changed: list[str] = field(default_factory=list)  # new or different content
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the policy, not in the bundle
    restarted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # restarts that failed, one line each
    recovery: TxReport = field(default_factory=TxReport)

    @property
    def exit_code(self) -> int:
        if self.missing:
            return EXIT_FAILURE
        return EXIT_TEMPFAIL if self.failures else EXIT_OK


def env_file_path(directory: Path) -> Path:
    """Where `--format env` writes: the path itself when it names a *.env file (or
    an existing file), else DIR/.env."""
    if directory.name.endswith(".env") or directory.is_file():
        return directory
    return directory / ENV_FILE


def render(
    policy: Policy,
    directory: Path | str | None = None,
    fmt: str = "files",
    restart: bool = True,
    *,
    wait: float = 0.0,
    encrypt: bool = False,
) -> RenderReport:
    """Decrypt the bundle and write what services read: one file per secret (mode
    and group from the policy, each replaced atomically), the way sops-nix fills
    /run/secrets, or one env file of `NAME='value'` lines (names upper-cased, '-'
    as '_'; mode 0600).  The default place is the secrets folder.  Then restart
    the consumers (`restart = [...]`) of every secret whose content changed, each
    consumer once.  `kubernetes`: see render_kubernetes."""
    if fmt == "kubernetes":
        return render_kubernetes(policy, directory, encrypt=encrypt, wait=wait)
    if encrypt:
        raise UsageError("--encrypt is for --format kubernetes")
    _require_sops(policy, "render")
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use files or env")
    folder = Path(directory).expanduser().absolute() if directory is not None else policy.paths.secrets_dir
    if policy.require_encrypted:
        kind = filesystem_type(folder)
        if kind not in MEMORY_FILESYSTEMS:
            raise EncryptionRequired(
                f"encryption is required (REQUIRE_ENCRYPTED_SECRETS): rendering writes plaintext, and {folder} is on "
                f"{kind or 'an unknown filesystem'}; render into memory (a tmpfs such as /run/secrets), as sops-nix does"
            )
    session = WriterSession(policy, wait=wait)
    _sops_store(session).expect_writes = False  # rendering needs no .sops.yaml
    with session:
        store = _sops_store(session)
        names = list(policy.secrets)
        values, errors = store.read_all(names)
        if errors:
            raise StoreError(next(iter(errors.values())))
        present = {n: v for n, v in values.items() if v is not None}
        path = folder if fmt == "files" else env_file_path(folder)
        report = RenderReport(path, fmt, recovery=session.recovery)
        report.missing = [n for n in names if values.get(n) is None]
        if fmt == "files":
            report.changed, report.unchanged = render_files(folder, present, policy.secrets)
        else:
            report.changed, report.unchanged = render_env(path, present, store.location)
        if restart:
            _restart_consumers(policy, report)
    return report


def render_kubernetes(
    policy: Policy, directory: Path | str | None, *, encrypt: bool = False, wait: float = 0.0
) -> RenderReport:
    """One Secret manifest per mapped Kubernetes Secret in `directory` (mode 0600),
    holding keyroll's keys only; with `encrypt`, each SOPS-encrypted (data only) to
    the age recipients of the store's .sops.yaml, as Flux decrypts it.  Under
    REQUIRE_ENCRYPTED_SECRETS only with `encrypt`.  Restarts nothing."""
    from keyroll.fsutil import ensure_dir, write_files_atomically
    from keyroll.kube.manifests import any_mapped, encrypted_manifests, secret_manifests
    from keyroll.store.sops import sops_config_recipients

    if directory is None:
        raise UsageError("name the folder to write the manifests to: keyroll bundle render DIR --format kubernetes")
    if not any_mapped(policy):
        raise UsageError("no secret is mapped to a Kubernetes Secret (`kubernetes = [...]` in a [secrets.NAME] table)")
    if policy.require_encrypted and not encrypt:
        raise EncryptionRequired(
            "encryption is required (REQUIRE_ENCRYPTED_SECRETS): Kubernetes manifests hold the values; "
            "add --encrypt to SOPS-encrypt them"
        )
    folder = Path(directory).expanduser().absolute()
    recipients: list[str] = []
    if encrypt:
        recipients = sops_config_recipients(policy, "--encrypt encrypts to its age recipients")
    with WriterSession(policy, wait=wait) as session:
        values, errors = session.store.read_all(list(policy.secrets))
        if errors:
            raise StoreError(next(iter(errors.values())))
        report = RenderReport(folder, "kubernetes", recovery=session.recovery)
        report.missing = [n for n, s in policy.secrets.items() if s.kubernetes and values.get(n) is None]
        if encrypt:
            files = encrypted_manifests(policy, values, recipients, lambda name: folder / name)
        else:
            files = {name: text.encode("utf-8") for name, text in secret_manifests(policy, values).items()}
        ensure_dir(folder)
        write_files_atomically(folder, files, 0o600)
        report.changed = sorted(files)
    return report


def _restart_consumers(policy: Policy, report: RenderReport) -> None:
    done: set[str] = set()
    for name in report.changed:
        for spec in policy.secrets[name].restart:
            if spec in done or is_workload_spec(spec):  # (rendering files publishes nothing to a cluster)
                continue
            done.add(spec)
            failures = consumers.restart([spec], name, policy.env)
            if failures:
                report.failures.extend(str(f) for f in failures)
            else:
                report.restarted.append(spec)


# --- updatekeys ---------------------------------------------------------------------------


@record
class UpdateKeysReport:
    """The bundle's recipients before and after `bundle updatekeys`."""

    bundle: Path
    before: list[str]
    after: list[str]
    secrets: int
    backup: Path | None = None
    recovery: TxReport = field(default_factory=TxReport)

    @property
    def changed(self) -> bool:
        return set(self.before) != set(self.after)

    @property
    def exit_code(self) -> int:
        return EXIT_OK


def updatekeys(policy: Policy, *, wait: float = 0.0) -> UpdateKeysReport:
    """Re-encrypt the bundle to the recipients .sops.yaml names now: decrypt it,
    encrypt it again, check the new ciphertext by decrypting it with keyroll's
    identity (so keyroll never locks itself out: hold the new identity beside
    the old one in the identity file), back up the old bundle, then replace it
    atomically.  Backups taken before stay encrypted to the old recipients."""
    _require_sops(policy, "updatekeys")
    with WriterSession(policy, wait=wait) as session:
        store = _sops_store(session)
        old = store.read_ciphertext()
        if old is None:
            raise StoreError(f"{store.location}: no bundle yet; nothing to re-encrypt (run `keyroll init`)")
        data = store.decrypt_bytes(old, store.format, store.location)
        new = store.encrypt_data(data, check_readable=False)
        try:
            check = store.decrypt_bytes(new, store.format, f"{store.location} (re-encrypted)")
        except StoreError as exc:
            raise StoreError(f"{exc}; the bundle was left as it was") from None
        if check != data:
            raise StoreError(f"{store.location}: the re-encrypted bundle does not read back the same; left as it was")
        report = UpdateKeysReport(
            store.location,
            bundle_recipients(old),
            bundle_recipients(new),
            sum(1 for n in data if SECRET_NAME.match(n)),
            recovery=session.recovery,
        )
        if not report.changed:
            return report  # already encrypted to exactly these recipients: nothing to rewrite
        report.backup = session.backup("before updatekeys")
        store.replace(new, data, before_rename=lambda: failpoint("store-write"))
    return report
