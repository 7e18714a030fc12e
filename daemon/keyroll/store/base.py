"""What every store shares: the entry record, the interface (a Protocol, for type
checking only) and the helpers both kinds use.  The store modules import this, never
the package, so that the package may import them."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from keyroll.records import record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from keyroll.config.policy import SecretPolicy


@record(frozen=True)
class EntryInfo:
    """What the store can say about one secret without revealing it."""

    exists: bool
    size: int = 0
    mode: int | None = None  # file mode, where the store has one per secret
    problem: str | None = None  # unreadable, symlink, not a regular file, ...


if TYPE_CHECKING:
    from typing import Protocol

    class Store(Protocol):
        """A place holding the current value of each secret."""

        kind: str
        location: Path

        def read(self, name: str) -> str | None:
            """The value of `name`, None if absent; StoreError if it cannot be read."""

        def read_all(self, names: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
            """Values of `names` (None when absent) and, separately, per-name read errors."""

        def write(
            self,
            values: Mapping[str, str],
            secrets: Mapping[str, SecretPolicy],
            before_rename: Callable[[], None] | None = None,
        ) -> None:
            """Make every value current, each one atomically; nothing changes on failure
            before the first replacement.  `before_rename` runs once everything new is
            durable and nothing old is replaced yet (a failpoint hook)."""

        def inspect(self, name: str) -> EntryInfo:
            """Existence, size, mode and problems of one entry."""

        def entries(self) -> list[str]:
            """Names of everything in the store, secrets or not (temp files excluded)."""

        def snapshot(self, names: Collection[str]) -> dict[str, bytes]:
            """The files a backup holds for the declared secrets `names`, byte for
            byte, keyed by file name (nothing else of the store's folder)."""

        def restore_snapshot(self, files: Mapping[str, bytes], kind: str) -> dict[str, str]:
            """The secret values held in a backup's files (decrypting where needed)."""

        def remove_temp_files(self) -> list[str]:
            """Delete what a killed keyroll left behind; return the names removed."""

        def is_plaintext(self) -> bool:
            """True when values sit on disk unencrypted."""

        def repair_permissions(self, secret: SecretPolicy) -> bool:
            """Give an existing entry the mode and owner its policy says (never through a
            symlink); True when something had to change."""


def read_each(store: Store, names: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
    """`store.read` for each name: values (None when absent) and, apart, each name's
    read error, so that one unreadable secret does not hide the others."""
    from keyroll.errors import StoreError

    values: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for name in names:
        try:
            values[name] = store.read(name)
        except StoreError as exc:
            errors[name] = str(exc)
    return values, errors


def decode_value(raw: bytes, where: Path) -> str:
    """File bytes -> value: UTF-8, one trailing newline is not part of it."""
    from keyroll.errors import NotAValue

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotAValue(f"{where}: not UTF-8 text; the file looks corrupt") from None
    value = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    from keyroll.outputs import hold

    hold(value)  # (a program's output holding part of it is then withheld)
    return value
