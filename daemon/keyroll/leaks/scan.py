"""Exact scan for known values in git repositories and folders (`keyroll leaks scan`).

keyroll knows the exact values it manages, so it looks for those, not for
things that look like secrets.  A repository is read through its whole object
database (`git cat-file --batch-all-objects --batch`: every blob, tree, commit
and tag, packed or loose, reachable or not), plus its work tree (tracked and
untracked files that are not ignored), and the files of its git folder
(`config` with remote URLs, reflogs, `lfs/objects`, ...).  Any other path is
read as a folder of files.

Each value is searched raw and in the encodings people commit: base64 at the
three byte alignments (the part of the base64 text that depends on the value
alone, so a value inside a Kubernetes Secret manifest is found wherever it
starts), URL-encoded, and hex.  Matching is exact and overlapping
(`ahocorasick_rs`, imported only when a matcher is built), over chunks that overlap by the
longest pattern, so a value that contains another, two values in one blob and
a value across a read boundary are all found, and a string that is only a
prefix of a value is not.

The scan only reads: git runs with GIT_OPTIONAL_LOCKS=0 and commands that
never write (no index refresh).  A finding never carries the value, nor a hash
of it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from keyroll.fsutil import describe_os_error
from keyroll.leaks import git as git_reading
from keyroll.leaks.git import (
    History,
    ObjectHit,
    PendingLog,
    Repository,
    git_argv,
    git_env,
    is_zero,
    locate,
    object_lines,
    run_git,
    scan_batch,
)
from keyroll.leaks.patterns import LineCounter, Matcher, Needle, scan_bytes_stream
from keyroll.leaks.report import LIVE, RETIRED, CommitPath, Finding, LeakScanError, Scanned, ScanReport

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from typing import Any


class Scanner:
    """Scans paths for the needles; collects findings and one-line errors."""

    def __init__(
        self, needles: Sequence[Needle], *, staged: bool = False, own: Mapping[Path, str] | None = None
    ) -> None:
        """`own`: keyroll's own folders (the store, backups, state: where the values belong),
        each with what it is; a folder scan leaves them out and says so."""
        self.matcher = Matcher(needles)
        self.staged = staged
        self.own = {os.path.realpath(folder): what for folder, what in (own or {}).items()}
        self.env = git_env(keep_location=staged)
        self.report = ScanReport(values=len(needles), patterns=len(self.matcher.patterns))
        self.found_needles: set[int] = set()  # (for the rewrite file: which values were found)
        self._repositories: set[str] = set()  # git folders scanned (a submodule or work tree once)
        self.masked_refs = False  # a ref reaching a finding is named with a value

    # -- results

    def _finding(self, pattern: int, repository: str, source: str, where: str, **details: Any) -> list[Finding]:
        found = []
        for index, encoding in self.matcher.owners[pattern]:
            needle = self.matcher.needles[index]
            self.found_needles.add(index)
            status = LIVE if needle.live else RETIRED
            found.append(Finding(needle.secret, status, needle.state, encoding, repository, source, where, **details))
        return found

    def _group(self, hits: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
        """pattern -> offsets."""
        grouped: dict[int, list[int]] = {}
        for offset, pattern in hits:
            grouped.setdefault(pattern, []).append(offset)
        return grouped

    # -- entry points

    def scan(self, paths: Sequence[Path]) -> ScanReport:
        """Scan every path (each a repository, a folder or a file)."""
        began = time.monotonic()
        for path in paths:
            try:
                self._scan_path(path)
            except LeakScanError as exc:
                self.report.errors.append(str(exc))
        self._mask_names()
        self.report.seconds = round(time.monotonic() - began, 3)
        return self.report

    def _masked(self, text: str) -> str:
        """`text` with every managed value (in any encoding) in it replaced by `***`: a file,
        folder or branch can be named with a value, and the output never shows one."""
        data = text.encode("utf-8", "surrogateescape")
        spans = sorted((start, end) for _, start, end in self.matcher.find(data))
        if not spans:
            return text
        out, at = [], 0
        for start, end in spans:
            if end <= at:
                continue
            out.append(data[at : max(start, at)] + b"***")
            at = end
        out.append(data[at:])
        return b"".join(out).decode("utf-8", "surrogateescape")

    def _mask_names(self) -> None:
        """Mask values in every name the report shows: paths, refs, repositories, errors."""
        mask = self._masked
        for finding in self.report.findings:
            finding.repository = mask(finding.repository)
            finding.path = mask(finding.path) if finding.path is not None else None
            refs = [mask(ref) for ref in finding.refs]
            self.masked_refs = self.masked_refs or refs != finding.refs
            finding.refs = refs
            finding.commits = [CommitPath(c.commit, mask(c.path), c.date) for c in finding.commits]
        for scanned in self.report.scanned:
            scanned.path = mask(scanned.path)
        self.report.errors = [mask(error) for error in self.report.errors]
        self.report.notes = [mask(note) for note in self.report.notes]

    def _own(self, path: Path | str, shown: Path | str) -> bool:
        """Whether `path` is in one of keyroll's own folders (then noted, and not scanned)."""
        real = os.path.realpath(path)
        for folder, what in self.own.items():
            if real == folder or real.startswith(folder.rstrip("/") + "/"):
                self.report.notes.append(f"{shown}: in keyroll's {what} (where the values belong): not scanned")
                return True
        return False

    def _not_plain(self, folder: Path) -> bool:
        """In a folder scan: a repository inside it is scanned as a repository (its objects
        are compressed: read as files, they would hide every value in its history), and
        keyroll's own folders are left out.  True when the walk is not to go in."""
        if (folder / ".git").exists() or ((folder / "HEAD").is_file() and (folder / "objects").is_dir()):
            try:
                repository = locate(folder, self.env)
            except LeakScanError as exc:
                self.report.errors.append(str(exc))
                return True
            if repository is not None:
                self._scan_repository(repository)
                return True
        return self._own(folder, folder)

    def _scan_path(self, path: Path) -> None:
        try:
            info = path.stat()
        except OSError as exc:
            raise LeakScanError(describe_os_error(path, exc)) from None
        if not stat.S_ISDIR(info.st_mode):
            if not self.staged and self._own(path, path):
                return
            if self.staged:
                raise LeakScanError(f"{path}: not a folder; --staged scans a repository")
            if not stat.S_ISREG(info.st_mode):  # (a pipe or a device: nothing that can be read whole)
                raise LeakScanError(f"{path}: not a regular file, a folder or a repository: not read")
            scanned = Scanned(str(path), "file")
            self.report.scanned.append(scanned)
            real = Path(os.path.realpath(path))  # (a symlink given by name is followed; none found inside is)
            self._scan_file(real, str(path), scanned, "file", "file", str(path))
            return
        if not os.access(path, os.R_OK | os.X_OK):
            raise LeakScanError(f"{path}: permission denied")
        repository = locate(path, self.env)
        if repository is None:
            if self.staged:
                raise LeakScanError(f"{path}: not a git repository; --staged scans what is about to be committed")
            if not self._own(path, path):
                self._scan_folder(path)
        elif self.staged:
            self._scan_staged(repository)
        else:
            self._scan_repository(repository)

    # -- plain files

    def _scan_file(self, file: Path, shown: str, scanned: Scanned, source: str, where: str, repository: str) -> None:
        try:
            fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            self.report.errors.append(describe_os_error(shown, exc))
            return
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return
            hits = scan_bytes_stream(self.matcher, _file_chunks(fd))
            scanned.files += 1
            scanned.bytes += info.st_size
            if not hits:
                return
            os.lseek(fd, 0, os.SEEK_SET)
            counter = LineCounter(offset for offset, _ in hits)
            for data in _file_chunks(fd):
                counter.feed(data)
        except OSError as exc:
            self.report.errors.append(describe_os_error(shown, exc))
            return
        finally:
            os.close(fd)
        for pattern, offsets in self._group(hits).items():
            self.report.findings += self._finding(
                pattern, repository, source, where, path=shown, lines=counter.lines_of(offsets), binary=counter.binary
            )

    def _scan_name(self, name: str, repository: str, source: str, where: str, **details: Any) -> None:
        """A value in a file's name (its content is scanned apart): the name enters a tree
        object when committed.  The name is shown with the value masked."""
        for pattern in {pattern for pattern, _, _ in self.matcher.find(name.encode("utf-8", "surrogateescape"))}:
            self.report.findings += self._finding(pattern, repository, source, where, path=name, name=True, **details)

    def _scan_folder(self, folder: Path, *, skip: Callable[[Path], bool] | None = None) -> None:
        scanned = Scanned(str(folder), "folder")
        self.report.scanned.append(scanned)
        for file in _walk(folder, self.report.errors, skip or self._not_plain):
            self._scan_name(str(file.relative_to(folder)), str(folder), "file", "file")
            self._scan_file(file, str(file), scanned, "file", "file", str(folder))

    # -- repositories

    def _git(self, repository: Repository, args: Sequence[str], stdin: bytes | None = None) -> bytes:
        return run_git(args, git_dir=repository.git_dir, env=self.env, stdin=stdin, what=str(repository.given))

    def _scan_repository(self, repository: Repository) -> None:
        """Every object; the work trees (this one and every linked one, `git worktree add`)
        with their indexes; the files of the git folder; then each submodule's repository
        (in `modules/`) as a repository of its own."""
        shared = repository.shared_dir
        if os.path.realpath(shared) in self._repositories:
            return  # (a submodule or work tree given twice, or reached again)
        self._repositories.add(os.path.realpath(shared))
        kind = "repository" if repository.work_tree is not None else "bare repository"
        scanned = Scanned(str(repository.given), kind)
        self.report.scanned.append(scanned)
        shown = str(repository.given)
        self._notes(repository)
        pending = History.start(self.env, repository)
        try:
            self._unreadable_objects(shared)
            self.matcher.prepare(self._object_bytes(repository))
            argv = git_argv(repository.git_dir, ["cat-file", "--batch-all-objects", "--batch"])
            hits, objects, size = scan_batch(self.matcher, argv, env=self.env, what=shown)
            scanned.objects, scanned.bytes = objects, size
            work_trees = self._work_trees(repository)
            index: dict[str, str] = {}  # path (shown) -> blob, over every work tree's index
            indexes = []
            for tree, label in work_trees:
                entries = self._index_entries(tree)
                indexes.append(entries)
                index.update({label + path: blob for path, blob in entries.items()})
            if hits:
                self._object_findings(repository, hits, index, pending)
        finally:
            pending.close()
        for (tree, label), entries in zip(work_trees, indexes, strict=True):
            if tree.work_tree is not None:
                self._scan_work_tree(tree, entries, scanned, label)
        for file in _walk(shared, self.report.errors, _skip_in_git_dir(shared)):
            relative = file.relative_to(shared)
            self._scan_file(file, str(relative), scanned, "git dir", "git dir", shown)
        for module in _module_git_dirs(shared / "modules"):
            try:
                found = locate(module, self.env)
                if found is not None:  # shown by its work tree's path when checked out
                    given = found.work_tree if found.work_tree is not None else module
                    self._scan_repository(Repository(given, found.git_dir, found.work_tree, found.common_dir))
            except LeakScanError as exc:
                self.report.errors.append(str(exc))

    def _unreadable_objects(self, git_dir: Path) -> None:
        """git skips a folder of loose objects it cannot open without a word: say so."""
        objects = git_dir / "objects"
        try:
            folders = [entry for entry in os.scandir(objects) if entry.is_dir(follow_symlinks=False)]
        except OSError as exc:
            self.report.errors.append(describe_os_error(objects, exc))
            return
        for entry in sorted(folders, key=lambda e: e.name):
            if not os.access(entry.path, os.R_OK | os.X_OK):
                self.report.errors.append(f"{entry.path}: permission denied (the objects there are not scanned)")

    def _notes(self, repository: Repository) -> None:
        """What this repository cannot hold: history beyond a shallow clone's boundary,
        blobs a partial clone never fetched (the scan never fetches them)."""
        shown = str(repository.given)
        if (repository.shared_dir / "shallow").is_file():
            self.report.notes.append(
                f"{shown}: a shallow clone: commits before its boundary (and their values) are not here, "
                "and a value there shows as added in the oldest commit here; scan a full clone"
            )
        try:
            promisor = self._git(
                repository, ["config", "--get-regexp", r"^(extensions\.partialclone|remote\..*\.promisor)$"]
            )
        except LeakScanError:
            promisor = b""  # (none set: git config exits 1)
        if promisor.strip():
            self.report.notes.append(
                f"{shown}: a partial clone: objects it never fetched are not here and are not fetched by the scan; "
                "scan the repository it was cloned from"
            )

    def _work_trees(self, repository: Repository) -> list[tuple[Repository, str]]:
        """This repository's work tree first, then its other ones (`git worktree list`),
        each with the prefix its paths are shown with ("" for the one given)."""
        trees: list[tuple[Repository, str]] = [(repository, "")]
        seen = {os.path.realpath(repository.work_tree)} if repository.work_tree is not None else set()
        try:
            out = self._git(repository, ["worktree", "list", "--porcelain"])  # (-z needs git 2.36)
        except LeakScanError:
            return trees
        for item in out.split(b"\n"):
            if not item.startswith(b"worktree "):
                continue
            path = Path(item[len(b"worktree ") :].decode("utf-8", "surrogateescape"))
            if os.path.realpath(path) in seen or not path.is_dir():
                continue
            try:
                other = locate(path, self.env)
            except LeakScanError as exc:
                self.report.errors.append(str(exc))
                continue
            if other is None or other.work_tree is None or os.path.realpath(other.work_tree) in seen:
                continue  # (a submodule's git folder is listed as its work tree: the same one)
            seen.add(os.path.realpath(other.work_tree))
            if other.shared_dir == repository.shared_dir:
                trees.append((other, f"{other.work_tree}/"))
        return trees

    def _object_bytes(self, repository: Repository) -> int:
        """About how many bytes the object database holds (compressed, so at least)."""
        try:
            out = self._git(repository, ["count-objects", "-v"]).decode("ascii", "replace")
        except LeakScanError:
            return 0
        sizes = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
        return sum(int(sizes.get(key, "0") or 0) for key in ("size", "size-pack")) * 1024

    def _index_entries(self, repository: Repository) -> dict[str, str]:
        """path -> blob id of every index entry (none for a bare repository)."""
        if repository.work_tree is None and not (repository.git_dir / "index").exists():
            return {}
        try:
            out = self._git(repository, ["ls-files", "--stage", "-z"])
        except LeakScanError:
            return {}
        entries: dict[str, str] = {}
        for item in out.split(b"\0"):
            if not item:
                continue
            meta, _, path = item.partition(b"\t")
            parts = meta.split()
            if len(parts) == 3 and parts[0] != b"160000":
                entries[path.decode("utf-8", "surrogateescape")] = parts[1].decode("ascii")
        return entries

    def _scan_work_tree(self, repository: Repository, index: dict[str, str], scanned: Scanned, label: str) -> None:
        """Tracked and untracked files that are not ignored; a file whose content is the
        index's blob was scanned as that blob already.  Paths are shown after `label`."""
        assert repository.work_tree is not None
        top = repository.work_tree
        try:
            out = run_git(
                ["--work-tree", str(top), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                git_dir=repository.git_dir,
                cwd=top,
                env=self.env,
                what=str(repository.given),
                warnings=self.report.errors,  # (a folder git could not open: its files are not read)
            )
        except LeakScanError as exc:
            self.report.errors.append(str(exc))
            return
        for raw in dict.fromkeys(out.split(b"\0")):
            if not raw:
                continue
            relative = raw.decode("utf-8", "surrogateescape")
            file = top / relative
            try:
                info = file.lstat()
            except FileNotFoundError:
                continue  # deleted in the work tree (the index still has it)
            except OSError as exc:
                self.report.errors.append(describe_os_error(relative, exc))
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            blob = index.get(relative)
            if blob is None:  # (an untracked file: a name in the index or a commit is read there)
                self._scan_name(label + relative, str(repository.given), "work tree", "work tree")
            elif _blob_id(file, sha256=len(blob) == 64) == blob:
                continue
            self._scan_file(file, label + relative, scanned, "work tree", "work tree", str(repository.given))

    def _object_findings(
        self, repository: Repository, hits: list[ObjectHit], index: dict[str, str], pending: PendingLog
    ) -> None:
        """Findings for objects: lines (or binary), commits and paths, refs, or where else."""
        by_object: dict[str, list[ObjectHit]] = {}
        for hit in hits:
            by_object.setdefault(hit.oid, []).append(hit)
        argv = git_argv(repository.git_dir, ["cat-file", "--batch"])
        wanted = {oid: [hit.offset for hit in object_hits] for oid, object_hits in by_object.items()}
        contents = object_lines(argv, wanted, env=self.env, what=str(repository.given))
        kinds = {hit.oid: hit.kind for hit in hits}
        history = None
        if any(k in ("blob", "commit") for k in kinds.values()):
            try:
                history = History.load(lambda args, stdin: self._git(repository, args, stdin), repository, pending)
            except LeakScanError as exc:  # the findings stand; where they are is not known
                self.report.errors.append(f"{exc} (commits and refs of the findings not known)")
        tag_refs = self._tag_refs(repository) if "tag" in kinds.values() else {}
        in_index: dict[str, list[str]] = {}
        for path, blob in index.items():
            in_index.setdefault(blob, []).append(path)
        shown = str(repository.given)
        borrowed = _borrowed(repository.shared_dir, list(by_object))
        for oid, object_hits in by_object.items():
            kind = kinds[oid]
            counter = contents[oid]
            binary = kind == "blob" and counter.binary
            details: dict[str, Any] = {"object": oid, "object_type": kind, "binary": binary}
            where = "unreachable"
            if kind == "blob":
                where = self._blob_details(oid, history, in_index, details)
            elif kind == "commit" and history is not None:
                details["refs"], where = history.reach(history.refs_of([oid]))
                details["first_commit"] = details["last_commit"] = oid
            elif kind == "tag":
                details["refs"] = tag_refs.get(oid, [])
                where = "refs" if details["refs"] else "unreachable"
            elif kind == "tree":
                where = "tree"
            if where == "unreachable" and oid in borrowed:
                where = "alternate"  # another repository's object, unreachable from this one
            grouped: dict[int, list[int]] = {}
            for hit in object_hits:
                grouped.setdefault(hit.pattern, []).append(hit.offset)
            for pattern, offsets in grouped.items():
                lines = counter.lines_of(offsets) if kind in ("blob", "commit", "tag") else []
                self.report.findings += self._finding(pattern, shown, "object", where, lines=lines, **details)

    def _blob_details(
        self, oid: str, history: History | None, in_index: dict[str, list[str]], details: dict[str, Any]
    ) -> str:
        commits = history.blob_commits.get(oid, []) if history else []
        if commits:
            ordered = sorted(commits, key=lambda c: (c.date, history.order.get(c.commit, 0) if history else 0))
            details["commits"] = ordered
            details["first_commit"], details["last_commit"] = ordered[0].commit, ordered[-1].commit
            details["path"] = ordered[0].path
            details["removed_in"] = sorted(history.blob_removed.get(oid, set())) if history else []
        refs: list[str] = []
        where = "unreachable"
        if history is not None and commits:
            refs, where = history.reach(history.refs_of([c.commit for c in commits]) | history.direct.get(oid, 0))
        elif history is not None and oid in history.direct:
            refs, where = history.reach(history.direct[oid])
        if where in ("unreachable", "reflog only") and oid in in_index:
            where = "index" if where == "unreachable" else where
            details.setdefault("path", in_index[oid][0])
        details["refs"] = refs
        return where

    def _tag_refs(self, repository: Repository) -> dict[str, list[str]]:
        out = self._git(repository, ["for-each-ref", "--format=%(objectname) %(refname)", "refs/tags"])
        refs: dict[str, list[str]] = {}
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            oid, _, name = line.partition(" ")
            refs.setdefault(oid, []).append(name)
        return refs

    # -- staged changes (a pre-commit hook)

    def _scan_staged(self, repository: Repository) -> None:
        """Only the blobs the next commit would add or change (`git diff --cached`)."""
        shown = str(repository.given)
        scanned = Scanned(shown, "staged")
        self.report.scanned.append(scanned)
        out = run_git(
            ["diff", "--cached", "--raw", "-z", "--no-abbrev", "--no-renames", "--no-ext-diff", "--diff-filter=d"],
            cwd=repository.work_tree or repository.given,
            env=self.env,
            what=shown,
        )
        fields = out.split(b"\0")
        blobs: dict[str, str] = {}
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            parts = meta.split()
            if len(parts) >= 4 and not is_zero(parts[3].decode("ascii")):
                name = path.decode("utf-8", "surrogateescape")
                self._scan_name(name, shown, "staged", "staged")  # (a submodule's name too)
                if parts[1] != b"160000":
                    blobs.setdefault(parts[3].decode("ascii"), name)
        if not blobs:
            return
        argv = git_argv(None, ["cat-file", "--batch"])
        stdin = ("\n".join(blobs) + "\n").encode("ascii")
        hits, scanned.objects, scanned.bytes = scan_batch(
            self.matcher, argv, env=self.env, cwd=repository.work_tree or repository.given, stdin=stdin, what=shown
        )
        if not hits:
            return
        wanted: dict[str, list[int]] = {}
        grouped: dict[tuple[str, int], list[int]] = {}
        for hit in hits:
            wanted.setdefault(hit.oid, []).append(hit.offset)
            grouped.setdefault((hit.oid, hit.pattern), []).append(hit.offset)
        contents = object_lines(argv, wanted, env=self.env, cwd=repository.work_tree or repository.given, what=shown)
        for (oid, pattern), offsets in grouped.items():
            counter = contents[oid]
            self.report.findings += self._finding(
                pattern, shown, "staged", "staged", object=oid, object_type="blob", path=blobs[oid],
                lines=counter.lines_of(offsets), binary=counter.binary,
            )  # fmt: skip


def _blob_id(file: Path, *, sha256: bool = False) -> str | None:
    """git's id for the file's content as a blob (to skip files the index already holds);
    `sha256` for a repository with that object format."""
    try:
        with file.open("rb") as stream:
            header = b"blob %d\0" % os.fstat(stream.fileno()).st_size
            digest = hashlib.sha256(header) if sha256 else hashlib.sha1(header, usedforsecurity=False)
            while data := stream.read(git_reading.CHUNK):
                digest.update(data)
    except OSError:
        return None
    return digest.hexdigest()


def _skip_in_git_dir(git_dir: Path) -> Callable[[Path], bool]:
    """In a git folder, objects/ is read through git (loose objects are compressed) and
    modules/ holds other repositories; every other file is read as it is."""
    skipped = {git_dir / "objects", git_dir / "modules"}
    return lambda folder: folder in skipped


def _borrowed(git_dir: Path, oids: list[str]) -> set[str]:
    """The objects (of `oids`) that this repository does not hold itself but reads from
    another repository's object folder (`objects/info/alternates`, `git clone --shared`)."""
    objects = git_dir / "objects"
    if not oids or not (objects / "info" / "alternates").is_file():
        return set()
    wanted = {bytes.fromhex(oid): oid for oid in oids if len(oid) == 40}
    local = {oid for oid in wanted.values() if (objects / oid[:2] / oid[2:]).is_file()}
    for idx in sorted((objects / "pack").glob("*.idx")):
        try:
            data = idx.read_bytes()
        except OSError:
            continue
        if data[:8] != b"\377tOc\0\0\0\2":
            continue  # (not a version 2 index: read as local)
        count = int.from_bytes(data[8 + 255 * 4 : 8 + 256 * 4], "big")
        table = data[8 + 256 * 4 : 8 + 256 * 4 + 20 * count]
        names = {table[i : i + 20] for i in range(0, len(table), 20)}
        local |= {oid for raw, oid in wanted.items() if raw in names}
    return set(wanted.values()) - local


def _module_git_dirs(modules: Path) -> list[Path]:
    """The git folders of the submodules under a repository's `modules/` (each one's own
    submodules are in its own `modules/`)."""
    found: list[Path] = []
    if not modules.is_dir():
        return found
    for folder, dirs, files in os.walk(modules):
        if "HEAD" in files and "objects" in dirs:
            found.append(Path(folder))
            dirs[:] = []
        dirs.sort()
    return found


def _walk(top: Path, errors: list[str], skip: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Regular files under `top`, never through a symlink; unreadable folders noted."""

    def failed(exc: OSError) -> None:
        errors.append(describe_os_error(exc.filename or top, exc))

    for folder, dirs, files in os.walk(top, onerror=failed):
        here = Path(folder)
        if skip is not None:
            dirs[:] = [d for d in dirs if not skip(here / d)]
        dirs.sort()
        for name in sorted(files):
            file = here / name
            try:
                if stat.S_ISREG(file.lstat().st_mode):  # (a symlink is never followed)
                    yield file
            except OSError as exc:
                failed(exc)


def _file_chunks(fd: int) -> Iterator[bytes]:
    while True:
        data = os.read(fd, git_reading.CHUNK)
        if not data:
            return
        yield data
