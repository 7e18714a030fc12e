"""Backups: verified snapshots of the store, their manifests, listing, retention.

A backup is a folder `secrets_YYYYmmdd_HHMMSS` (UTC; `_01`, `_02` ... keep two
in one second apart, so name order is time order), mode 0700, holding the
store's files byte for byte plus `metadata.json` and `manifest.json` (names a
secret cannot have).  It is assembled under a temp name and renamed into place,
so a backup folder is either complete or absent.

Encryption: a SOPS store's backup holds the encrypted bundle as it is (already
encrypted to the .sops.yaml recipients; keyroll does not encrypt it again, so
`[backup] encrypt_to` does not apply to it; add the backup key to .sops.yaml
instead).  A directory store's backup with `[backup] encrypt_to` holds each
file age-encrypted to those recipients as `NAME.age`.  Either way the manifest
says `"encrypted": true` and `"encryption"` ("sops" or "age"), and its
checksums are those of the stored (encrypted) bytes, so a backup verifies
without any key; restoring an age-encrypted one needs an identity (see
`keyroll.age`), and age's own authentication checks each file as it is
decrypted.  Under REQUIRE_ENCRYPTED_SECRETS a backup that would hold plaintext
is refused before anything is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyroll import __version__, trust
from keyroll.digest import sha256
from keyroll.errors import BackupError, ConfigError, EncryptionRequired, StoreError, UsageError
from keyroll.fsutil import describe_os_error, ensure_dir, fsync_dir, read_bytes, remove_temp_files, write_new_files
from keyroll.paths import TEMP_PREFIX
from keyroll.records import field, record

if TYPE_CHECKING:
    from keyroll.config.policy import Policy

MANIFEST = "manifest.json"
METADATA = "metadata.json"
FORMAT_VERSION = 1
log = logging.getLogger("keyroll.backup")
NAME_PATTERN = re.compile(r"\Asecrets_(\d{8})_(\d{6})(?:_(\d{2,}))?\Z")
AGE_SUFFIX = ".age"
_BUNDLE_NAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


@record(frozen=True)
class BackupSummary:
    """One backup as `list-backups` shows it."""

    name: str
    path: Path
    created: str
    size: int
    secrets: int
    store: str
    encrypted: bool
    verified: bool
    problem: str | None
    reason: str


@record
class BackupContents:
    """A verified backup: its manifest, its files (as stored) and its metadata."""

    path: Path
    manifest: dict[str, Any]
    files: dict[str, bytes]
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def store_kind(self) -> str:
        return str(self.manifest.get("store", "directory"))

    @property
    def encrypted(self) -> bool:
        return bool(self.manifest.get("encrypted", False))

    @property
    def encryption(self) -> str | None:
        """The layer that encrypts the files: "age" (keyroll), "sops" (the store), or None."""
        value = self.manifest.get("encryption")
        return str(value) if value else None


def sha256_hex(data: bytes) -> str:
    return sha256(data).hexdigest()


def backup_name(now: datetime, taken: set[str]) -> str:
    """`secrets_YYYYmmdd_HHMMSS` for `now` (UTC), with a suffix above every backup
    already named for that second, so name order stays time order."""

    base = "secrets_" + now.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    used = [-1]
    for name in taken:
        match = NAME_PATTERN.match(name)
        if match and name.startswith(base):
            used.append(int(match.group(3) or 0))
    following = max(used) + 1
    return base if following == 0 else f"{base}_{following:02d}"


def backup_names(backup_dir: Path) -> list[str]:
    """Names of the backup folders, oldest first."""
    try:
        names = [n for n in os.listdir(backup_dir) if NAME_PATTERN.match(n)]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise BackupError(describe_os_error(backup_dir, exc)) from None
    return sorted(names)


def create_backup(
    backup_dir: Path,
    files: Mapping[str, bytes],
    metadata: Mapping[str, Mapping[str, Any]],
    *,
    store_kind: str,
    reason: str,
    now: datetime,
    keep: int,
    secret_count: int,
    encrypted: bool = False,
    encrypt_to: Sequence[str] = (),
    require_encrypted: bool = False,
    protect: set[str] | None = None,
) -> Path:
    """Write a complete, verified backup and apply retention (never to this one).

    `encrypted`: the store's files are already encrypted (a SOPS bundle).
    `encrypt_to`: age recipients; each file is then stored age-encrypted as
    NAME.age.  With `require_encrypted`, a backup that would hold plaintext is
    refused (EncryptionRequired) before anything is written.  Returns the new
    folder.  On failure nothing is left behind but a temp folder that the next
    recovery removes.
    """
    encryption: str | None = store_kind if encrypted else None
    if encrypt_to and not encrypted:
        from keyroll import age

        recipients = age.parse_recipients(list(encrypt_to), "backup.encrypt_to")
        files = {f"{name}{AGE_SUFFIX}": age.encrypt(data, recipients) for name, data in files.items()}
        encryption = "age"
    if require_encrypted and encryption is None:
        raise EncryptionRequired(
            f"encryption is required (REQUIRE_ENCRYPTED_SECRETS): a backup to {backup_dir} would hold plaintext; "
            "set [backup] encrypt_to"
        )
    ensure_dir(backup_dir)
    name = backup_name(now, set(backup_names(backup_dir)))
    final = backup_dir / name
    tmp = backup_dir / f"{TEMP_PREFIX}{name}.{secrets.token_hex(4)}"
    from keyroll.schedule import to_iso

    metadata_bytes = (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode()
    manifest = {
        "format": FORMAT_VERSION,
        "keyroll": __version__,
        "store": store_kind,
        "encrypted": encryption is not None,
        "encryption": encryption,
        "created": to_iso(now),
        "reason": reason,
        "secrets": secret_count,
        "files": {n: {"sha256": sha256_hex(data), "size": len(data)} for n, data in sorted(files.items())},
        "metadata": {"file": METADATA, "sha256": sha256_hex(metadata_bytes)},
    }
    if encryption == "age":
        manifest["recipients"] = [r.strip() for r in encrypt_to]
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    try:
        os.mkdir(tmp, 0o700)
        write_new_files(tmp, {**files, METADATA: metadata_bytes, MANIFEST: manifest_bytes})
        os.rename(tmp, final)
        fsync_dir(backup_dir)
    except StoreError as exc:
        _remove_tree(tmp)
        raise BackupError(f"backup failed: {exc}") from None
    except OSError as exc:
        _remove_tree(tmp)
        raise BackupError(f"backup failed: {describe_os_error(tmp, exc)}") from None
    apply_retention(backup_dir, keep, protect={name, *(protect or ())})
    return final


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _refuse_non_folder(path: Path) -> None:
    """BackupError unless `path` is a real folder (a symlink is never followed)."""
    info = _lstat(path)
    if info is None:
        raise BackupError(f"{path}: no such backup")
    if stat.S_ISLNK(info.st_mode):
        raise BackupError(f"{path}: a symlink, not a backup folder")
    if not stat.S_ISDIR(info.st_mode):
        raise BackupError(f"{path}: not a backup folder")


def _is_keyroll_backup(path: Path) -> bool:
    """A real folder holding a manifest file: what retention may delete."""
    folder = _lstat(path)
    if folder is None or not stat.S_ISDIR(folder.st_mode):
        return False
    manifest = _lstat(path / MANIFEST)
    return manifest is not None and stat.S_ISREG(manifest.st_mode)


def apply_retention(backup_dir: Path, keep: int, protect: set[str]) -> list[str]:
    """Delete the oldest keyroll backups beyond `keep`; never those in `protect` (the
    one just made, the one being restored), nor anything else found under a backup's
    name (a symlink, a file, a folder without a manifest: not keyroll's to delete).
    Each is renamed to a temp name first, so a kill mid-way leaves no half-deleted
    backup (recovery removes the temp folder); one that cannot be deleted is a
    warning, never the command's failure (its backup is already made)."""
    names = [n for n in backup_names(backup_dir) if _is_keyroll_backup(backup_dir / n)]
    doomed = [n for n in names[: max(len(names) - keep, 0)] if n not in protect]
    deleted: list[str] = []
    for name in doomed:
        condemned = backup_dir / f"{TEMP_PREFIX}{name}.{secrets.token_hex(4)}.deleted"
        try:
            os.rename(backup_dir / name, condemned)
            fsync_dir(backup_dir)
            shutil.rmtree(condemned)
        except OSError as exc:
            log.warning("retention: could not delete backup %s: %s", name, exc.strerror or exc)
            continue
        except StoreError as exc:  # (fsync_dir)
            log.warning("retention: could not delete backup %s: %s", name, exc)
            continue
        deleted.append(name)
    return deleted


def resolve_backup(argument: str, backup_dir: Path) -> Path:
    """A backup given as a path or as a name in the backup folder."""
    if "/" in argument or argument in (".", ".."):
        path = Path(argument).expanduser().absolute()
    else:
        if not NAME_PATTERN.match(argument):
            raise UsageError(f"{argument!r} is not a backup name (secrets_YYYYmmdd_HHMMSS) or a path")
        path = backup_dir / argument
    if not path.exists():  # a name that names nothing, like an unknown secret: a usage error
        raise UsageError(f"{path}: no such backup (`keyroll list-backups` shows them)")
    _refuse_non_folder(path)
    trust.refuse(trust.check_backup(path), listed_by=None)
    return path


def _allowed_file_name(name: str, store_kind: str) -> bool:
    from keyroll.config.schema import SECRET_NAME

    if name in (MANIFEST, METADATA):
        return False
    if "/" in name or name.startswith("."):
        return False
    if SECRET_NAME.match(name) or name.endswith((".yaml", ".yml", ".json")):
        return True
    if name.endswith(AGE_SUFFIX) and SECRET_NAME.match(name[: -len(AGE_SUFFIX)]):
        return True
    return store_kind == "sops" and bool(_BUNDLE_NAME.match(name))


def _parse_manifest(raw: bytes) -> dict[str, Any] | None:
    """The manifest, or None when it is not one (bad JSON, or the wrong shape)."""
    try:
        manifest = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format"), int):
        return None
    files, metadata = manifest.get("files"), manifest.get("metadata", {})
    if not isinstance(files, dict) or not all(isinstance(entry, dict) for entry in files.values()):
        return None
    return manifest if isinstance(metadata, dict) else None


def read_backup(path: Path, policy: Policy | None = None, *, decrypt: bool = True) -> BackupContents:
    """Read and verify a backup; BackupError naming the first bad file otherwise.

    The checksums are of the stored bytes, so verifying needs no key.  An
    age-encrypted backup's files are then decrypted (unless `decrypt` is False)
    with the identity of `policy` (or, without one, of the environment: see
    `keyroll.age`) and returned under their secret names."""
    _refuse_non_folder(path)
    raw_manifest = read_bytes(path, MANIFEST)
    if raw_manifest is None:
        raise BackupError(f"{path / MANIFEST}: missing; this is not a complete keyroll backup")
    manifest = _parse_manifest(raw_manifest)
    if manifest is None:
        raise BackupError(f"{path / MANIFEST}: unreadable or damaged manifest")
    listed: dict[str, dict[str, Any]] = manifest["files"]
    format_version = int(manifest["format"])
    if format_version > FORMAT_VERSION:
        raise BackupError(f"{path / MANIFEST}: format {format_version} is newer than this keyroll understands")
    store_kind = str(manifest.get("store", "directory"))
    expected = set(listed) | {MANIFEST, METADATA}
    try:
        present = set(os.listdir(path))
    except OSError as exc:
        raise BackupError(describe_os_error(path, exc)) from None
    for extra in sorted(present - expected):
        raise BackupError(f"{path / extra}: not listed in the manifest; the backup was tampered with")
    files: dict[str, bytes] = {}
    for name, entry in sorted(listed.items()):
        if not _allowed_file_name(name, store_kind):
            raise BackupError(f"{path / MANIFEST}: lists an invalid file name {name!r}")
        info = _lstat(path / name)
        if info is None:
            raise BackupError(f"{path / name}: missing; the backup is incomplete")
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
            raise BackupError(f"{path / name}: not a regular file; the backup was tampered with")
        data = read_bytes(path, name) or b""
        if sha256_hex(data) != entry.get("sha256"):
            raise BackupError(f"{path / name}: checksum mismatch; the backup is damaged or was tampered with")
        files[name] = data
    metadata: dict[str, dict[str, Any]] = {}
    raw_metadata = read_bytes(path, METADATA)
    if raw_metadata is None:
        raise BackupError(f"{path / METADATA}: missing; the backup is incomplete")
    if sha256_hex(raw_metadata) != manifest.get("metadata", {}).get("sha256"):
        raise BackupError(f"{path / METADATA}: checksum mismatch; the backup is damaged or was tampered with")
    try:
        metadata = json.loads(raw_metadata)
    except ValueError:
        raise BackupError(f"{path / METADATA}: unreadable") from None
    if decrypt and manifest.get("encryption") == "age":
        files = decrypt_files(path, files, policy)
    return BackupContents(path, manifest, files, metadata)


def decrypt_files(path: Path, files: Mapping[str, bytes], policy: Policy | None) -> dict[str, bytes]:
    """The files of an age-encrypted backup, decrypted, under their secret names."""
    from keyroll import age

    try:
        if policy is not None:
            identity = age.policy_identity_file(policy, required=True)
        else:
            identity = age.identity_file(os.environ, required=True)
        assert identity is not None
        identities = age.load_identities(identity)
        plain: dict[str, bytes] = {}
        for name, data in files.items():
            if not name.endswith(AGE_SUFFIX):
                raise BackupError(f"{path / name}: not encrypted, in a backup whose manifest says it is")
            plain[name[: -len(AGE_SUFFIX)]] = age.decrypt(data, identities, str(path / name))
    except (StoreError, ConfigError) as exc:
        message = str(exc)
        raise BackupError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    return plain


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def summarize(path: Path) -> BackupSummary:
    """One backup for `list-backups`: size, secret count, and whether it verifies."""
    problem: str | None = None
    manifest: dict[str, Any] = {}
    try:
        contents = read_backup(path, decrypt=False)
        manifest = contents.manifest
    except (BackupError, StoreError) as exc:
        problem = str(exc)
        try:
            manifest = _parse_manifest((path / MANIFEST).read_bytes()) or {}
        except OSError:
            manifest = {}
    size = 0
    try:
        for entry in os.scandir(path):
            if entry.is_file(follow_symlinks=False):
                size += entry.stat(follow_symlinks=False).st_size
    except OSError:
        pass
    files = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    count = manifest.get("secrets", len(files)) if isinstance(manifest, dict) else 0
    return BackupSummary(
        name=path.name,
        path=path,
        created=str(manifest.get("created", "")),
        size=size,
        secrets=int(count) if isinstance(count, int) else 0,
        store=str(manifest.get("store", "?")),
        encrypted=bool(manifest.get("encrypted", False)),
        verified=problem is None,
        problem=problem,
        reason=str(manifest.get("reason", "")),
    )


def list_backups(backup_dir: Path) -> list[BackupSummary]:
    """Every backup, newest first."""
    return [summarize(backup_dir / name) for name in reversed(backup_names(backup_dir))]


def remove_partial_backups(backup_dir: Path) -> list[str]:
    """Delete the temp folders a killed keyroll left (a backup half-written, or one
    retention was deleting); one that cannot be deleted is a warning, never a failure."""
    return remove_temp_files(backup_dir, warn_only=True)
