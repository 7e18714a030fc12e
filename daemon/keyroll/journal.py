"""Durable state in SQLite (WAL, synchronous=FULL, secure_delete): per-secret
metadata, rotations in flight with their pending and old values, history, and
old credentials waiting to be retired.

Pending and old values live here only while a rotation is in flight; they are
erased (secure_delete plus a truncating WAL checkpoint) when it ends, and the
pages they took are given back (auto_vacuum=INCREMENTAL, an incremental vacuum
after each completion; a journal written before is converted by one VACUUM).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from keyroll.digest import hmac_sha256
from keyroll.errors import JournalError
from keyroll.fsutil import describe_os_error
from keyroll.outputs import hold
from keyroll.paths import Paths
from keyroll.records import record
from keyroll.schedule import to_iso, utcnow
from keyroll.trust import JOURNAL_FILES, check_state, open_state_file, refuse

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    created TEXT NOT NULL,
    rotated TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    previous_fingerprint TEXT
);
CREATE TABLE IF NOT EXISTS inflight (
    name TEXT PRIMARY KEY,
    txid TEXT NOT NULL,
    op TEXT NOT NULL,
    phase TEXT NOT NULL,
    pending BLOB NOT NULL,
    old BLOB,
    sealed INTEGER NOT NULL DEFAULT 0,
    target TEXT,
    started TEXT NOT NULL,
    updated TEXT NOT NULL,
    error TEXT,
    emergency INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    txid TEXT NOT NULL,
    name TEXT NOT NULL,
    op TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    exit_code INTEGER
);
CREATE INDEX IF NOT EXISTS history_name ON history(name, id);
CREATE TABLE IF NOT EXISTS retire (
    name TEXT NOT NULL,
    target TEXT NOT NULL,
    credential TEXT NOT NULL,
    not_before TEXT NOT NULL,
    PRIMARY KEY (name, credential)
);
"""

# Phases of an in-flight rotation, in order.
CREATED, APPLIED, VERIFIED, STORED = "created", "applied", "verified", "stored"
PHASES = (CREATED, APPLIED, VERIFIED, STORED)

Sealer = Callable[[bytes], bytes]


@record(frozen=True)
class SecretRecord:
    """What the journal knows about one secret (never its value)."""

    name: str
    kind: str
    version: int
    created: str
    rotated: str
    fingerprint: str
    previous_fingerprint: str | None


@record(frozen=True)
class InFlight:
    """A rotation that has started and not yet ended."""

    name: str
    txid: str
    op: str
    phase: str
    pending: str
    old: str | None
    target: str | None
    started: str
    updated: str
    error: str | None
    emergency: bool = False  # rotate --emergency: retire the old credential at once, even when recovered


@record(frozen=True)
class HistoryEntry:
    txid: str
    name: str
    op: str
    outcome: str
    at: str
    detail: str
    exit_code: int | None = None  # the outcome's exit code (75: temporary); None when written before it was kept


@record(frozen=True)
class Retirement:
    """An old credential to remove from a target once `not_before` has passed."""

    name: str
    target: str
    credential: str  # a hash of the old value (Redis accepts removal by SHA-256)
    not_before: str


@record(frozen=True)
class Completion:
    """The end of one secret's rotation, as recorded in one journal transaction."""

    name: str
    op: str
    outcome: str  # rotated, created, adopted, set, restored, rolled back, failed, ...
    detail: str = ""
    kind: str | None = None  # set when the value changed: the new metadata follows
    value: str | None = None
    rotated: str | None = None  # when None: now
    created: str | None = None  # only for secrets new to the journal
    exit_code: int | None = None  # the outcome's exit code, kept in the history (75 tells a temporary failure)


def new_txid() -> str:
    import secrets

    return secrets.token_hex(8)


class Fingerprinter:
    """HMAC-SHA256 of a value under a local key (0600 in the state folder):
    detects manual edits without giving away a hash that can be brute-forced."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, value: str) -> str:
        return hmac_sha256(self._key, value.encode("utf-8")).hex()

    @classmethod
    def load(cls, path: Path, create: bool) -> Fingerprinter | None:
        try:
            fd = open_state_file(path, os.O_RDONLY)
            try:
                key = os.read(fd, 4096)
            finally:
                os.close(fd)
        except FileNotFoundError:
            if not create:
                return None
            import secrets

            key = secrets.token_bytes(32)
            fd = open_state_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, key)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise JournalError(describe_os_error(path, exc)) from None
        if len(key) < 32:
            raise JournalError(f"{path}: the fingerprint key is damaged (too short)")
        return cls(key)


def _refuse_foreign_state(paths: Paths) -> None:
    """UnsafePath (exit 2) before SQLite opens anything: the journal and its side
    files must be regular files of the running user (a journal planted by another user may
    carry triggers that copy every value it is given).  The fingerprint key is
    checked as it is opened (Fingerprinter.load)."""
    refuse(check_state(paths, JOURNAL_FILES, running_notes=False))


def _explain(exc: sqlite3.Error, path: Path) -> str:
    """SQLite's message, saying so when the cause is a full disk (SQLite calls it a
    "disk I/O error" when it cannot even create its side files), and what to do
    when the file is damaged."""
    message = str(exc)
    if "not a database" in message or "malformed" in message:
        return (
            f"{message}; to start it afresh, move {path.name} aside and run `keyroll init`, which adopts "
            "the secrets as they are (their history stays in the old file)"
        )
    if "disk I/O error" in message:
        try:
            if os.statvfs(path.parent).f_bavail == 0:
                return f"{message}: the disk is full"
        except OSError:
            pass
    return message


class Journal:
    """The SQLite journal in the state folder.  Open with `open_write` or `open_read`."""

    def __init__(self, connection: sqlite3.Connection, fingerprint: Fingerprinter | None, writable: bool) -> None:
        self._db = connection
        self._fingerprint = fingerprint
        self.writable = writable
        self.seal: Sealer | None = None
        self.unseal: Sealer | None = None
        self._exit_column: str | None = None  # (found on first use: see _history_columns)

    # --- opening ----------------------------------------------------------------------

    @classmethod
    def open_write(cls, paths: Paths) -> Journal:
        """Open (creating if needed) the journal for writing; the caller holds the writer lock."""
        path = paths.journal
        _refuse_foreign_state(paths)
        fingerprint = Fingerprinter.load(paths.fingerprint_key, create=True)
        new = not path.exists()
        if new:
            try:
                os.close(open_state_file(path, os.O_WRONLY | os.O_CREAT, 0o600))
            except OSError as exc:
                raise JournalError(describe_os_error(path, exc)) from None
        db = None
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=30)
            if new:
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # (before the first table)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA secure_delete=ON")
            db.executescript(_SCHEMA)
            if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # a journal written before: convert it once
                with contextlib.suppress(sqlite3.OperationalError):  # (busy or a full disk: next time then)
                    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                    db.execute("VACUUM")
            columns = {row[1] for row in db.execute("PRAGMA table_info(inflight)")}
            if "emergency" not in columns:  # journals written before the column existed
                db.execute("ALTER TABLE inflight ADD COLUMN emergency INTEGER NOT NULL DEFAULT 0")
            if "exit_code" not in {row[1] for row in db.execute("PRAGMA table_info(history)")}:  # (likewise)
                db.execute("ALTER TABLE history ADD COLUMN exit_code INTEGER")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            raise JournalError(f"{path}: cannot open the journal ({_explain(exc, path)})") from None
        cls._check_schema(db, path)
        return cls(db, fingerprint, writable=True)

    @classmethod
    def open_read(cls, paths: Paths) -> Journal | None:
        """Open the journal read-only; None when keyroll has never written here."""
        path = paths.journal
        _refuse_foreign_state(paths)
        if not path.exists():
            return None
        fingerprint = Fingerprinter.load(paths.fingerprint_key, create=False)
        db = None
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
            db.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            raise JournalError(f"{path}: cannot read the journal ({_explain(exc, path)})") from None
        cls._check_schema(db, path)
        return cls(db, fingerprint, writable=False)

    @staticmethod
    def _check_schema(db: sqlite3.Connection, path: Path) -> None:
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            raise JournalError(
                f"{path}: the journal was never completed; any writing command (keyroll recover) completes it"
            )
        if int(row[0]) > SCHEMA_VERSION:
            raise JournalError(f"{path}: written by a newer keyroll (schema {row[0]})")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One durable transaction (BEGIN IMMEDIATE ... COMMIT, fsynced); a database
        error (a full disk, a damaged file) is a JournalError naming the journal."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # (SQLite may have rolled back already: a full disk)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise JournalError(
                f"the journal could not be written ({exc}); once that is fixed, `keyroll recover` "
                "finishes or undoes whatever this left in flight"
            ) from None

    # --- fingerprints -----------------------------------------------------------------

    @property
    def can_fingerprint(self) -> bool:
        return self._fingerprint is not None

    def fingerprint(self, value: str) -> str:
        if self._fingerprint is None:
            raise JournalError("the fingerprint key is missing from the state folder")
        return self._fingerprint(value)

    # --- secrets ----------------------------------------------------------------------

    def records(self) -> dict[str, SecretRecord]:
        rows = self._db.execute(
            "SELECT name, kind, version, created, rotated, fingerprint, previous_fingerprint FROM secrets"
        )
        return {row[0]: SecretRecord(*row) for row in rows}

    def record(self, name: str) -> SecretRecord | None:
        return self.records().get(name)

    # --- in flight --------------------------------------------------------------------

    def _to_blob(self, value: str | None) -> bytes | None:
        if value is None:
            return None
        raw = value.encode("utf-8")
        return self.seal(raw) if self.seal else raw

    def _from_blob(self, blob: bytes | None, sealed: int) -> str | None:
        if blob is None:
            return None
        if sealed:
            if self.unseal is None:
                raise JournalError("an in-flight value is encrypted and no age identity is available to read it")
            blob = self.unseal(blob)
        value = bytes(blob).decode("utf-8")
        hold(value)  # (a program's output holding part of it is then withheld)
        return value

    def inflight(self) -> dict[str, InFlight]:
        rows = self._db.execute(
            "SELECT name, txid, op, phase, pending, old, sealed, target, started, updated, error, emergency "
            "FROM inflight ORDER BY started, name"
        ).fetchall()
        result = {}
        for name, txid, op, phase, pending, old, sealed, target, started, updated, error, emergency in rows:
            result[name] = InFlight(
                name,
                txid,
                op,
                phase,
                self._from_blob(pending, sealed) or "",
                self._from_blob(old, sealed),
                target,
                started,
                updated,
                error,
                bool(emergency),
            )
        return result

    def inflight_names(self) -> dict[str, str]:
        """Name -> phase of every rotation in flight, without reading any value."""
        return dict(self._db.execute("SELECT name, phase FROM inflight").fetchall())

    def inflight_txids(self) -> dict[str, str]:
        """Name -> transaction id of every rotation in flight, without reading any value."""
        return dict(self._db.execute("SELECT name, txid FROM inflight").fetchall())

    def begin(
        self,
        txid: str,
        entries: Iterable[tuple[str, str, str, str | None, str | None]],
        *,
        emergency: bool = False,
        replacing: Iterable[str] = (),
    ) -> None:
        """Record pending values durably: (name, op, pending, old, target) each.  The
        unresolved rotations of `replacing` (a `keyroll set` settles them) end in the
        same transaction, so they are kept if this one never begins."""
        now = to_iso(utcnow())
        sealed = 1 if self.seal else 0
        with self.transaction() as db:
            for name in replacing:
                db.execute("DELETE FROM inflight WHERE name = ?", (name,))
                db.execute(
                    "INSERT INTO history (txid, name, op, outcome, at, detail) VALUES (?, ?, 'recover', 'abandoned', ?, ?)",
                    (txid, name, now, "settled by keyroll set"),
                )
            db.executemany(
                "INSERT INTO inflight (name, txid, op, phase, pending, old, sealed, target, started, updated, emergency) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        name,
                        txid,
                        op,
                        CREATED,
                        self._to_blob(pending),
                        self._to_blob(old),
                        sealed,
                        target,
                        now,
                        now,
                        emergency,
                    )
                    for name, op, pending, old, target in entries
                ],
            )

    def advance(self, names: Iterable[str], phase: str, error: str | None = None) -> None:
        now = to_iso(utcnow())
        with self.transaction() as db:
            db.executemany(
                "UPDATE inflight SET phase = ?, updated = ?, error = ? WHERE name = ?",
                [(phase, now, error, name) for name in names],
            )

    def note_error(self, name: str, error: str) -> None:
        """Keep an unresolved rotation in flight, with why it could not be resolved."""
        with self.transaction() as db:
            db.execute("UPDATE inflight SET error = ?, updated = ? WHERE name = ?", (error, to_iso(utcnow()), name))

    def complete(self, txid: str, completions: Iterable[Completion]) -> None:
        """End rotations in one transaction: new metadata, history, pending values erased."""
        now = to_iso(utcnow())
        with self.transaction() as db:
            for c in completions:
                if c.value is not None:
                    self._put_record(db, c, now)
                # Only this transaction's own entry: another's (left unresolved) stays.
                db.execute("DELETE FROM inflight WHERE name = ? AND txid = ?", (c.name, txid))
                db.execute(
                    "INSERT INTO history (txid, name, op, outcome, at, detail, exit_code) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (txid, c.name, c.op, c.outcome, now, c.detail, c.exit_code),
                )
        self.erase_freed_pages()

    def _put_record(self, db: sqlite3.Connection, c: Completion, now: str) -> None:
        assert c.value is not None and c.kind is not None
        fingerprint = self.fingerprint(c.value)
        row = db.execute(
            "SELECT version, fingerprint, created, previous_fingerprint FROM secrets WHERE name = ?", (c.name,)
        ).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO secrets VALUES (?, ?, 1, ?, ?, ?, NULL)",
                (c.name, c.kind, c.created or c.rotated or now, c.rotated or now, fingerprint),
            )
            return
        version, old_fingerprint, created, previous = row
        changed = old_fingerprint != fingerprint
        db.execute(
            "UPDATE secrets SET kind = ?, version = ?, rotated = ?, fingerprint = ?, previous_fingerprint = ?, created = ? "
            "WHERE name = ?",
            (
                c.kind,
                version + 1 if changed else version,
                c.rotated or now,
                fingerprint,
                old_fingerprint if changed else previous,
                c.created or created,
                c.name,
            ),
        )

    def erase_freed_pages(self) -> None:
        """Make sure erased pending values leave no copy in the WAL file, and give the
        pages they took back to the file system (incremental vacuum: a large value
        does not leave the journal large).  When that cannot be done now (a full disk),
        the committed transaction stands: a warning, and the next write's checkpoint
        erases them."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if self._db.execute("PRAGMA freelist_count").fetchone()[0]:
                self._db.executescript("PRAGMA incremental_vacuum;")  # (execute() would free one page per step)
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            import logging

            logging.getLogger("keyroll.journal").warning(
                "the journal's write-ahead log could not be emptied (%s); the next write empties it", exc
            )

    # --- history ----------------------------------------------------------------------

    def add_history(self, txid: str, name: str, op: str, outcome: str, detail: str = "") -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO history (txid, name, op, outcome, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (txid, name, op, outcome, to_iso(utcnow()), detail),
            )

    def _history_columns(self) -> str:
        """The columns of a HistoryEntry; a journal opened read-only that an older keyroll
        wrote has no exit codes (None: the reader cannot tell a temporary failure)."""
        if self._exit_column is None:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(history)")}
            self._exit_column = "exit_code" if "exit_code" in columns else "NULL"
        return f"txid, name, op, outcome, at, detail, {self._exit_column}"

    def history(self, name: str | None = None, limit: int | None = None) -> list[HistoryEntry]:
        query = f"SELECT {self._history_columns()} FROM history"
        args: tuple[object, ...] = ()
        if name:
            query += " WHERE name = ?"
            args = (name,)
        query += " ORDER BY id DESC"
        if limit:
            query += f" LIMIT {int(limit)}"
        return [HistoryEntry(*row) for row in self._db.execute(query, args)]

    def last_outcomes(self) -> dict[str, HistoryEntry]:
        """The newest history entry of each secret."""
        rows = self._db.execute(
            f"SELECT {self._history_columns()} FROM history WHERE id IN (SELECT max(id) FROM history GROUP BY name)"
        )
        return {row[1]: HistoryEntry(*row) for row in rows}

    # --- small facts (when each secret was last reminded about, ...) ---------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, values: dict[str, str]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    # --- retirement of old credentials ------------------------------------------------

    def queue_retirement(self, name: str, target: str, credential: str, not_before: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO retire VALUES (?, ?, ?, ?)", (name, target, credential, to_iso(not_before))
            )

    def retirements(self) -> list[Retirement]:
        return [Retirement(*row) for row in self._db.execute("SELECT name, target, credential, not_before FROM retire")]

    def retired(self, name: str, credential: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM retire WHERE name = ? AND credential = ?", (name, credential))
