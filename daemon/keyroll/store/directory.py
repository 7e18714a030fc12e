"""The directory store: one file per secret, named exactly after it (contract)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from keyroll.errors import ConfigError, StoreError
from keyroll.fsutil import describe_os_error, ensure_dir, read_bytes, remove_temp_files, write_files_atomically
from keyroll.generate import MAX_VALUE_BYTES
from keyroll.paths import TEMP_PREFIX
from keyroll.store.base import EntryInfo, decode_value, read_each

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from keyroll.config.policy import SecretPolicy


def ownership(secret: SecretPolicy) -> tuple[int, int]:
    """The (uid, gid) a secret's file gets from its policy; -1 leaves one as it is.
    ConfigError (naming the key) when the user or group does not exist here."""
    import grp
    import pwd

    def resolve(name: str, what: str) -> int:
        if not name:
            return -1
        if name.isdigit():
            return int(name)
        try:
            return pwd.getpwnam(name).pw_uid if what == "user" else grp.getgrnam(name).gr_gid
        except KeyError:
            key = "owner" if what == "user" else "group"
            raise ConfigError(f"secrets.{secret.name}.{key}: {what} {name!r} does not exist on this machine") from None

    return resolve(secret.owner, "user"), resolve(secret.group, "group")


def follows_policy(info: os.stat_result, mode: int, uid: int, gid: int) -> bool:
    """Whether a file has `mode` and the owner and group (-1: any) its policy gives."""
    return stat.S_IMODE(info.st_mode) == mode and uid in (-1, info.st_uid) and gid in (-1, info.st_gid)


class DirectoryStore:
    """Secrets as files in one folder (mode 0700), each replaced atomically."""

    kind = "directory"

    def __init__(self, directory: Path) -> None:
        self.location = directory

    def read(self, name: str) -> str | None:
        raw = read_bytes(self.location, name, limit=MAX_VALUE_BYTES + 2)  # (+ a line ending)
        return None if raw is None else decode_value(raw, self.location / name)

    def read_all(self, names: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
        return read_each(self, names)

    def write(
        self,
        values: Mapping[str, str],
        secrets: Mapping[str, SecretPolicy],
        before_rename: Callable[[], None] | None = None,
    ) -> None:
        ensure_dir(self.location)
        write_files_atomically(
            self.location,
            {name: value.encode("utf-8") for name, value in values.items()},
            mode={name: secrets[name].mode for name in values},
            owner={name: ownership(secrets[name]) for name in values},
            before_rename=before_rename,
        )

    def inspect(self, name: str) -> EntryInfo:
        path = self.location / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            return EntryInfo(exists=False)
        except OSError as exc:
            return EntryInfo(exists=False, problem=describe_os_error(path, exc))
        if stat.S_ISLNK(info.st_mode):
            return EntryInfo(exists=True, problem=f"{path}: is a symlink; keyroll never reads or writes through one")
        if not stat.S_ISREG(info.st_mode):
            return EntryInfo(exists=True, problem=f"{path}: is not a regular file")
        return EntryInfo(exists=True, size=info.st_size, mode=stat.S_IMODE(info.st_mode))

    def entries(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.location) if not n.startswith(TEMP_PREFIX))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(describe_os_error(self.location, exc)) from None

    def snapshot(self, names: Collection[str]) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for name in (n for n in self.entries() if n in names):  # (an undeclared file is never copied)
            if self.inspect(name).problem:
                continue  # a symlink or a folder: never read; that secret is refused on its own
            raw = read_bytes(self.location, name)
            if raw is not None:
                files[name] = raw
        return files

    def restore_snapshot(self, files: Mapping[str, bytes], kind: str) -> dict[str, str]:
        if kind != self.kind:
            raise StoreError(f"the backup holds a {kind} store; this store is a {self.kind} store")
        return {name: decode_value(raw, Path(name)) for name, raw in files.items()}

    def remove_temp_files(self) -> list[str]:
        return remove_temp_files(self.location)

    def is_plaintext(self) -> bool:
        return True

    def repair_permissions(self, secret: SecretPolicy) -> bool:
        path = self.location / secret.name
        uid, gid = ownership(secret)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreError(describe_os_error(path, exc)) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or follows_policy(info, secret.mode, uid, gid):
                return False
            if not follows_policy(info, stat.S_IMODE(info.st_mode), uid, gid):
                os.fchown(fd, uid, gid)
            os.fchmod(fd, secret.mode)
            os.fsync(fd)
            return True
        except OSError as exc:
            raise StoreError(describe_os_error(path, exc)) from None
        finally:
            os.close(fd)
