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
(`ahocorasick_rs`, imported only here), over chunks that overlap by the
longest pattern, so a value that contains another, two values in one blob and
a value across a read boundary are all found, and a string that is only a
prefix of a value is not.

The scan only reads: git runs with GIT_OPTIONAL_LOCKS=0 and commands that
never write (no index refresh).  A finding never carries the value, nor a hash
of it.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import os
import queue
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from hashlib import sha1
from pathlib import Path
from urllib.parse import quote

from keyroll.errors import KeyrollError, UsageError
from keyroll.fsutil import describe_os_error
from keyroll.records import field, record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from typing import Any

MIN_LENGTH = 12  # shorter values match by chance: not searched for
CHUNK = 4 << 20  # bytes read from git (or a file) at a time
DFA_ABOVE = 32 << 20  # bytes to read above which the automaton is built as a DFA
PREFIX = 16  # bytes of each pattern in the automaton (the rest is compared in place)
PARALLEL_ABOVE = 1 << 20  # bytes above which one read is matched on two threads
BINARY_PROBE = 8000  # git's own test: a NUL in the first 8000 bytes makes a blob binary
INSTALL_HINT = "pip install 'keyroll[leaks]'"
LIVE, RETIRED = "live", "retired"
# Variables that would point git at another repository, index or object store than the one scanned.
_GIT_LOCATION = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CEILING_DIRECTORIES",
)
# Never write: no optional locks (index refresh), no fsmonitor daemon, no untracked cache, no auto gc.
_GIT_READ_ONLY = (
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
)
_ZERO_OID = "0" * 40


class LeakScanError(KeyrollError):
    """A path that cannot be scanned (unreadable, or refused by git): exit 2."""

    exit_code = 2


class Needle:
    """One value to look for, with the secret it belongs to and whether it is live.
    (Not a record: its repr never shows the value.)"""

    __slots__ = ("live", "secret", "state", "value")

    def __init__(self, secret: str, value: str, live: bool, state: str) -> None:
        self.secret = secret
        self.value = value
        self.live = live
        self.state = state

    def __repr__(self) -> str:
        return f"Needle({self.secret!r}, {self.state!r})"


@record(frozen=True)
class CommitPath:
    """A commit that adds or changes a path to a blob that holds a value."""

    commit: str
    path: str
    date: str


@record
class Finding:
    """One managed value found in one place.  Never the value, never a hash of it."""

    secret: str
    status: str  # live | retired
    state: str  # current, pending, previous (not yet retired), retired
    encoding: str  # raw, base64, base64url, url, hex, HEX
    repository: str  # the repository or folder scanned
    source: str  # object | work tree | git dir | file | staged
    where: str  # refs | stash | reflog only | unreachable | index | work tree | git dir | staged | file
    object: str | None = None
    object_type: str | None = None  # blob | tree | commit | tag
    path: str | None = None
    lines: list[int] = field(default_factory=list)
    binary: bool = False
    refs: list[str] = field(default_factory=list)
    commits: list[CommitPath] = field(default_factory=list)
    first_commit: str | None = None
    last_commit: str | None = None
    removed_in: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.status == LIVE


@record
class Scanned:
    """One path given to the scan, and how much was read there."""

    path: str
    kind: str  # repository | bare repository | folder | file | staged
    objects: int = 0
    files: int = 0
    bytes: int = 0


@record
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    scanned: list[Scanned] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line each: a path or file that could not be read
    values: int = 0  # distinct values searched for
    patterns: int = 0  # byte patterns (values and their encodings)
    seconds: float = 0.0

    @property
    def live(self) -> list[Finding]:
        return [f for f in self.findings if f.live]

    @property
    def retired(self) -> list[Finding]:
        return [f for f in self.findings if not f.live]


# --- patterns ------------------------------------------------------------------------------


def base64_cores(raw: bytes) -> list[bytes]:
    """For each of the three byte alignments a value can start at in a base64 stream,
    the base64 characters that depend on the value's bytes alone."""
    cores = []
    for skip in range(3):
        text = base64.b64encode(b"\0" * skip + raw + b"\0\0")
        first = -(-8 * skip // 6)  # the first character whose six bits all fall in the value
        end = (8 * (skip + len(raw)) - 6) // 6 + 1  # one past the last such character
        cores.append(text[first:end])
    return cores


def encodings(value: str) -> list[tuple[str, bytes]]:
    """The byte patterns of a value: raw, base64 (three alignments; URL-safe too where it
    differs), URL-encoded (where it differs), hex in lower and upper case."""
    raw = value.encode("utf-8")
    found = [("raw", raw)]
    for core in base64_cores(raw):
        found.append(("base64", core))
        urlsafe = core.replace(b"+", b"-").replace(b"/", b"_")
        if urlsafe != core:
            found.append(("base64url", urlsafe))
    url = quote(value, safe="").encode("ascii")
    if url != raw:
        found.append(("url", url))
    found.append(("hex", raw.hex().encode("ascii")))
    found.append(("HEX", raw.hex().upper().encode("ascii")))
    return found


class Matcher:
    """Every pattern of every needle, in one Aho-Corasick automaton (overlapping matches).

    The automaton holds each pattern's first PREFIX bytes only (a third of the states
    of the whole patterns: four times faster to build as a DFA, and faster to run where
    random text keeps it away from its root); each prefix match is then checked against
    the whole patterns that start with it, in place."""

    def __init__(self, needles: Sequence[Needle]) -> None:
        try:
            import ahocorasick_rs
        except ImportError:
            raise UsageError(f"ahocorasick-rs is not installed (needed by `keyroll leaks`): {INSTALL_HINT}") from None
        self.needles = list(needles)
        owners: dict[bytes, list[tuple[int, str]]] = {}
        for index, needle in enumerate(self.needles):
            for encoding, pattern in encodings(needle.value):
                entries = owners.setdefault(pattern, [])
                if (index, encoding) not in entries:
                    entries.append((index, encoding))
        self.patterns = list(owners)
        self.owners = [owners[p] for p in self.patterns]
        self.longest = max((len(p) for p in self.patterns), default=1)
        by_prefix: dict[bytes, list[int]] = {}
        for index, pattern in enumerate(self.patterns):
            by_prefix.setdefault(pattern[:PREFIX], []).append(index)
        self._prefixes = list(by_prefix)
        self._whole = [[(i, self.patterns[i]) for i in by_prefix[p]] for p in self._prefixes]
        self._library = ahocorasick_rs
        self._automaton: Any = None
        self._fast = False
        self._pool: Any = None

    def prepare(self, expected_bytes: int) -> None:
        """Build the automaton for about this much data: a DFA (slower to build, about
        twice as fast to run) once there are tens of megabytes to read."""
        fast = expected_bytes > DFA_ABOVE
        if not self.patterns or (self._automaton is not None and self._fast >= fast):
            return
        kinds = self._library.Implementation
        implementation = kinds.DFA if fast else kinds.ContiguousNFA
        self._automaton = self._library.BytesAhoCorasick(self._prefixes, implementation=implementation)
        self._fast = fast

    def _find_in(self, data: Any) -> list[tuple[int, int, int]]:
        """Whole patterns found in `data` (a pattern running past its end is not)."""
        size = len(data)
        found = []
        for prefix, start, _ in self._automaton.find_matches_as_indexes(data, overlapping=True):
            for index, pattern in self._whole[prefix]:
                end = start + len(pattern)
                if end <= size and (end - start <= PREFIX or data[start:end] == pattern):
                    found.append((index, start, end))
        return found

    def find(self, data: Any) -> list[tuple[int, int, int]]:
        """(pattern, start, end) of every occurrence in `data`, overlapping ones included.
        Big data is cut in parts matched on two threads (the matcher releases the GIL):
        each part reaches a pattern's length into the next, and keeps only the matches
        that start in its own part, so each is found once."""
        if self._automaton is None:
            if not self.patterns:
                return []
            self.prepare(0)
        size = len(data)
        view = memoryview(data)
        if size < PARALLEL_ABOVE:
            return self._find_in(view)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(2, thread_name_prefix="keyroll-leaks")
        half = size // 2
        first = self._pool.submit(self._find_in, view[: half + self.longest - 1])
        second = self._find_in(view[half:])
        found = [m for m in first.result() if m[1] < half]
        found.extend((pattern, start + half, end + half) for pattern, start, end in second)
        return found


# --- git -----------------------------------------------------------------------------------


def git_env(*, keep_location: bool = False) -> dict[str, str]:
    """The environment for git: C locale, no prompts, no optional locks (no write into the
    scanned repository); without `keep_location`, none of the variables that point git
    at another repository than the path given (a pre-commit hook keeps them)."""
    env = dict(os.environ)
    if not keep_location:
        for name in _GIT_LOCATION:
            env.pop(name, None)
    env.update(GIT_OPTIONAL_LOCKS="0", LC_ALL="C", LANG="C", GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat")
    env["GIT_NO_LAZY_FETCH"] = "1"  # a partial clone never fetches (git 2.44+; older ones read no blob here)
    return env


def _git_argv(git_dir: Path | None, args: Sequence[str], work_tree: Path | None = None) -> list[str]:
    argv = ["git", *_GIT_READ_ONLY]
    if git_dir is not None:
        argv += ["--git-dir", str(git_dir)]
        if work_tree is not None:
            argv += ["--work-tree", str(work_tree)]
    return argv + list(args)


def git_error(stderr: bytes | str) -> str:
    """git's own message, as one line (the first `fatal:`/`error:` line, or the first line)."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[0] if lines else "git failed"


def run_git(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    git_dir: Path | None = None,
    env: dict[str, str],
    stdin: bytes | None = None,
    what: str,
) -> bytes:
    """Run a read-only git command; its stdout, or LeakScanError with git's message."""
    try:
        done = subprocess.run(
            _git_argv(git_dir, args),
            cwd=cwd,
            env=env,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise LeakScanError("git is not installed: it is needed to scan a repository") from None
    if done.returncode != 0:
        raise LeakScanError(f"{what}: {git_error(done.stderr)}")
    return done.stdout


@record(frozen=True)
class Repository:
    """A repository found at a path: its git folder and (unless bare) its work tree."""

    given: Path
    git_dir: Path
    work_tree: Path | None


def locate(path: Path, env: dict[str, str]) -> Repository | None:
    """The repository `path` is (or lies in): None for a plain folder; LeakScanError with
    git's own message when git refuses it (another user's repository, safe.directory)."""
    try:
        done = subprocess.run(
            [*_git_argv(None, ["rev-parse", "--absolute-git-dir", "--is-bare-repository", "--is-inside-git-dir"])],
            cwd=path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        if (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir()):
            raise LeakScanError(f"{path}: git is not installed: it is needed to scan a repository") from None
        return None
    except OSError as exc:
        raise LeakScanError(describe_os_error(path, exc)) from None
    if done.returncode != 0:
        message = git_error(done.stderr)
        if "not a git repository" in message:
            return None
        raise LeakScanError(f"{path}: git refuses to read this repository: {message}")
    git_dir_text, bare, inside_git_dir = done.stdout.decode("utf-8", "surrogateescape").splitlines()[:3]
    git_dir = Path(git_dir_text)
    work_tree: Path | None = None
    if bare != "true":
        if inside_git_dir == "true":
            work_tree = git_dir.parent if git_dir.name == ".git" else None
        else:
            top = run_git(["rev-parse", "--show-toplevel"], cwd=path, env=env, what=str(path))
            work_tree = Path(top.decode("utf-8", "surrogateescape").strip())
    return Repository(path, git_dir, work_tree)


# --- reading streams ---------------------------------------------------------------------


def _pipe_reader(stream: Any, chunks: queue.Queue[bytes | BaseException | None]) -> None:
    """Read `stream` in big chunks on a thread of its own, so that git keeps writing
    while the matcher works on the previous chunk (both release the GIL)."""
    try:
        while True:
            data = stream.read(CHUNK)
            if not data:
                break
            chunks.put(data)
    except BaseException as exc:  # handed to the consumer
        chunks.put(exc)
    chunks.put(None)


def _chunks_from(stream: Any) -> Iterator[bytes]:
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
    reader = threading.Thread(target=_pipe_reader, args=(stream, chunks), daemon=True)
    reader.start()
    while True:
        item = chunks.get()
        if item is None:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    reader.join()


@record
class _ObjectHit:
    oid: str
    kind: str
    offset: int  # in the object's content
    pattern: int


def scan_batch(
    matcher: Matcher,
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path | None = None,
    stdin: bytes | None = None,
    what: str,
) -> tuple[list[_ObjectHit], int, int]:
    """Run `git cat-file --batch` (argv) and match its whole output stream; a match counts
    only inside one object's content.  Returns the hits, the object count and bytes."""
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError:
        raise LeakScanError("git is not installed: it is needed to scan a repository") from None
    assert proc.stdout is not None and proc.stderr is not None
    if stdin is not None:
        assert proc.stdin is not None
        feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True)
        feeder.start()
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    drain.start()
    hits: list[_ObjectHit] = []
    starts: list[int] = []  # content start of each object, in stream offsets
    ends: list[int] = []
    names: list[tuple[str, str]] = []
    carry = b""  # the end of the previous chunk still needed (a header, or a pattern's length)
    base = 0  # stream offset of data[0]
    searched = 0  # stream offset up to which every match has been found
    next_header = 0  # stream offset of the next object's header
    total = 0
    keep = matcher.longest - 1
    try:
        for chunk in _chunks_from(proc.stdout):
            data = carry + chunk if carry else chunk
            # Object headers ("<oid> <type> <size>\n") in this data.
            while True:
                rel = next_header - base
                if rel >= len(data):
                    break
                newline = data.find(b"\n", rel)
                if newline < 0:
                    break
                header = data[rel:newline].split()
                if len(header) == 3:
                    size = int(header[2])
                    content = base + newline + 1
                    starts.append(content)
                    ends.append(content + size)
                    names.append((header[0].decode("ascii"), header[1].decode("ascii")))
                    next_header = content + size + 1
                    total += size
                else:  # "<oid> missing": no content follows
                    next_header = base + newline + 1
            for pattern, start, end in matcher.find(data):
                if base + end <= searched:
                    continue  # found in the previous chunk already
                at = base + start
                index = bisect.bisect_right(starts, at) - 1
                if index >= 0 and base + end <= ends[index]:
                    oid, kind = names[index]
                    hits.append(_ObjectHit(oid, kind, at - starts[index], pattern))
            searched = base + len(data)
            cut = min(max(len(data) - keep, 0), max(next_header - base, 0))
            carry = data[cut:]
            base += cut
    finally:
        proc.stdout.close()
        code = proc.wait()
        drain.join()
    if code != 0:
        raise LeakScanError(f"{what}: {git_error(b''.join(errors))}")
    return hits, len(starts), total


def _feed(pipe: Any, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError):
        try:
            pipe.write(data)
        finally:
            pipe.close()


def scan_bytes_stream(matcher: Matcher, chunks: Iterable[bytes]) -> list[tuple[int, int]]:
    """(offset, pattern) of every match in a stream of chunks (overlapping by the longest
    pattern, so a match across a chunk boundary is found once)."""
    found: list[tuple[int, int]] = []
    carry = b""
    base = 0
    searched = 0
    keep = matcher.longest - 1
    for chunk in chunks:
        data = carry + chunk if carry else chunk
        for pattern, start, end in matcher.find(data):
            if base + end > searched:
                found.append((base + start, pattern))
        searched = base + len(data)
        cut = max(len(data) - keep, 0)
        carry = data[cut:]
        base += cut
    return found


def _file_chunks(fd: int) -> Iterator[bytes]:
    while True:
        data = os.read(fd, CHUNK)
        if not data:
            return
        yield data


def line_numbers(data: bytes, offsets: Iterable[int]) -> list[int]:
    """1-based line numbers of byte offsets in `data`."""
    return sorted({data.count(b"\n", 0, offset) + 1 for offset in offsets})


# --- the scan --------------------------------------------------------------------------------


class Scanner:
    """Scans paths for the needles; collects findings and one-line errors."""

    def __init__(self, needles: Sequence[Needle], *, staged: bool = False) -> None:
        self.matcher = Matcher(needles)
        self.staged = staged
        self.env = git_env(keep_location=staged)
        self.report = ScanReport(values=len(needles), patterns=len(self.matcher.patterns))
        self.found_needles: set[int] = set()  # (for the rewrite file: which values were found)

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
        self.report.seconds = round(time.monotonic() - began, 3)
        return self.report

    def _scan_path(self, path: Path) -> None:
        try:
            info = path.stat()
        except OSError as exc:
            raise LeakScanError(describe_os_error(path, exc)) from None
        if not stat.S_ISDIR(info.st_mode):
            if self.staged:
                raise LeakScanError(f"{path}: not a folder; --staged scans a repository")
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
            data = b"".join(_file_chunks(fd))
        except OSError as exc:
            self.report.errors.append(describe_os_error(shown, exc))
            return
        finally:
            os.close(fd)
        binary = b"\0" in data[:BINARY_PROBE]
        for pattern, offsets in self._group(hits).items():
            lines = [] if binary else line_numbers(data, offsets)
            self.report.findings += self._finding(
                pattern, repository, source, where, path=shown, lines=lines, binary=binary
            )

    def _scan_folder(self, folder: Path, *, skip: Callable[[Path], bool] | None = None) -> None:
        scanned = Scanned(str(folder), "folder")
        self.report.scanned.append(scanned)
        for file in _walk(folder, self.report.errors, skip):
            self._scan_file(file, str(file), scanned, "file", "file", str(folder))

    # -- repositories

    def _git(self, repository: Repository, args: Sequence[str], stdin: bytes | None = None) -> bytes:
        return run_git(args, git_dir=repository.git_dir, env=self.env, stdin=stdin, what=str(repository.given))

    def _scan_repository(self, repository: Repository) -> None:
        kind = "repository" if repository.work_tree is not None else "bare repository"
        scanned = Scanned(str(repository.given), kind)
        self.report.scanned.append(scanned)
        shown = str(repository.given)
        pending = _History.start(self, repository)
        try:
            self.matcher.prepare(self._object_bytes(repository))
            argv = _git_argv(repository.git_dir, ["cat-file", "--batch-all-objects", "--batch"])
            hits, objects, size = scan_batch(self.matcher, argv, env=self.env, what=shown)
            scanned.objects, scanned.bytes = objects, size
            index = self._index_entries(repository)
            if hits:
                self._object_findings(repository, hits, index, pending)
        finally:
            pending.close()
        if repository.work_tree is not None:
            self._scan_work_tree(repository, index, scanned)
        git_dir = repository.git_dir
        for file in _walk(git_dir, self.report.errors, _skip_in_git_dir(git_dir)):
            relative = file.relative_to(git_dir)
            self._scan_file(file, str(relative), scanned, "git dir", "git dir", shown)

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

    def _scan_work_tree(self, repository: Repository, index: dict[str, str], scanned: Scanned) -> None:
        """Tracked and untracked files that are not ignored; a file whose content is the
        index's blob was scanned as that blob already."""
        assert repository.work_tree is not None
        top = repository.work_tree
        try:
            out = run_git(
                ["--work-tree", str(top), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                git_dir=repository.git_dir,
                cwd=top,
                env=self.env,
                what=str(repository.given),
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
            if blob is not None and info.st_size < 256 << 20 and _blob_id(file) == blob:
                continue
            self._scan_file(file, relative, scanned, "work tree", "work tree", str(repository.given))

    def _object_findings(
        self, repository: Repository, hits: list[_ObjectHit], index: dict[str, str], pending: _PendingLog
    ) -> None:
        """Findings for objects: lines (or binary), commits and paths, refs, or where else."""
        by_object: dict[str, list[_ObjectHit]] = {}
        for hit in hits:
            by_object.setdefault(hit.oid, []).append(hit)
        contents = self._read_objects(repository, list(by_object))
        kinds = {hit.oid: hit.kind for hit in hits}
        history = None
        if any(k in ("blob", "commit") for k in kinds.values()):
            try:
                history = _History.load(self, repository, pending)
            except LeakScanError as exc:  # the findings stand; where they are is not known
                self.report.errors.append(f"{exc} (commits and refs of the findings not known)")
        tag_refs = self._tag_refs(repository) if "tag" in kinds.values() else {}
        in_index: dict[str, list[str]] = {}
        for path, blob in index.items():
            in_index.setdefault(blob, []).append(path)
        shown = str(repository.given)
        for oid, object_hits in by_object.items():
            kind = kinds[oid]
            data = contents.get(oid, b"")
            binary = kind == "blob" and b"\0" in data[:BINARY_PROBE]
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
            grouped: dict[int, list[int]] = {}
            for hit in object_hits:
                grouped.setdefault(hit.pattern, []).append(hit.offset)
            for pattern, offsets in grouped.items():
                lines = line_numbers(data, offsets) if kind == "blob" and data and not binary else []
                self.report.findings += self._finding(pattern, shown, "object", where, lines=lines, **details)

    def _blob_details(
        self, oid: str, history: _History | None, in_index: dict[str, list[str]], details: dict[str, Any]
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

    def _read_objects(self, repository: Repository, oids: list[str]) -> dict[str, bytes]:
        """The content of each object (for line numbers and the binary test)."""
        out = self._git(repository, ["cat-file", "--batch"], stdin=("\n".join(oids) + "\n").encode("ascii"))
        contents: dict[str, bytes] = {}
        at = 0
        while at < len(out):
            newline = out.index(b"\n", at)
            header = out[at:newline].split()
            at = newline + 1
            if len(header) != 3:
                continue
            size = int(header[2])
            contents[header[0].decode("ascii")] = out[at : at + size]
            at += size + 1
        return contents

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
            if len(parts) >= 4 and parts[1] != b"160000" and parts[3].decode("ascii") != _ZERO_OID:
                blobs.setdefault(parts[3].decode("ascii"), path.decode("utf-8", "surrogateescape"))
        if not blobs:
            return
        argv = _git_argv(None, ["cat-file", "--batch"])
        stdin = ("\n".join(blobs) + "\n").encode("ascii")
        hits, scanned.objects, scanned.bytes = scan_batch(
            self.matcher, argv, env=self.env, cwd=repository.work_tree or repository.given, stdin=stdin, what=shown
        )
        if not hits:
            return
        contents = self._read_staged(repository, {hit.oid for hit in hits})
        grouped: dict[tuple[str, int], list[int]] = {}
        for hit in hits:
            grouped.setdefault((hit.oid, hit.pattern), []).append(hit.offset)
        for (oid, pattern), offsets in grouped.items():
            data = contents.get(oid, b"")
            binary = b"\0" in data[:BINARY_PROBE]
            lines = [] if binary else line_numbers(data, offsets)
            self.report.findings += self._finding(
                pattern, shown, "staged", "staged", object=oid, object_type="blob", path=blobs[oid],
                lines=lines, binary=binary,
            )  # fmt: skip

    def _read_staged(self, repository: Repository, oids: set[str]) -> dict[str, bytes]:
        out = run_git(
            ["cat-file", "--batch"],
            cwd=repository.work_tree or repository.given,
            env=self.env,
            stdin=("\n".join(oids) + "\n").encode("ascii"),
            what=str(repository.given),
        )
        contents: dict[str, bytes] = {}
        at = 0
        while at < len(out):
            newline = out.index(b"\n", at)
            header = out[at:newline].split()
            at = newline + 1
            if len(header) == 3:
                size = int(header[2])
                contents[header[0].decode("ascii")] = out[at : at + size]
                at += size + 1
        return contents


class _PendingLog:
    """A `git log` running into a temporary file."""

    def __init__(self, proc: subprocess.Popen[bytes], output: Any, errors: Any) -> None:
        self.proc, self.output, self.errors = proc, output, errors

    def result(self, what: str) -> bytes:
        try:
            code = self.proc.wait()
            if code != 0:
                self.errors.seek(0)
                raise LeakScanError(f"{what}: {git_error(self.errors.read())}")
            self.output.seek(0)
            return bytes(self.output.read())
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.output.close()
        self.errors.close()


class _History:
    """Which commits add each blob (and at which path), and which refs reach each
    commit, from one `git log --all --reflog -m --raw` pass plus the stash reflog."""

    def __init__(self) -> None:
        self.blob_commits: dict[str, list[CommitPath]] = {}
        self.blob_removed: dict[str, set[str]] = {}
        self.parents: dict[str, list[str]] = {}
        self.order: dict[str, int] = {}  # topological position (children first)
        self.bits: dict[str, int] = {}  # commit -> refs reaching it, as bits of self.ref_names
        self.direct: dict[str, int] = {}  # a non-commit object a ref points at directly (a tagged blob)
        self.ref_names: list[str] = []

    LOG = (
        "log",
        "--all",
        "--reflog",
        "-m",
        "--raw",
        "--no-abbrev",
        "--no-renames",
        "--topo-order",
        "-z",
        "--format=%x01%H %ct %P",
        "--stdin",  # (with no ref and no reflog, nothing to list rather than a usage error)
    )

    @classmethod
    def start(cls, scanner: Scanner, repository: Repository) -> _PendingLog:
        """Start the history pass now, into an unnamed temporary file (outside the
        repository): it runs on another core while the automaton is built and the
        objects are read, and is read back only if a blob or commit holds a value."""
        import tempfile

        output = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _PendingLog)
        errors = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                _git_argv(repository.git_dir, cls.LOG),
                env=scanner.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=errors,
            )
        except OSError:
            output.close()
            errors.close()
            raise LeakScanError("git is not installed: it is needed to scan a repository") from None
        return _PendingLog(proc, output, errors)

    @classmethod
    def load(cls, scanner: Scanner, repository: Repository, pending: _PendingLog | None = None) -> _History:
        history = cls()
        if pending is None:
            pending = cls.start(scanner, repository)
        history._parse_log(pending.result(str(repository.given)))
        history._load_refs(scanner, repository)
        history._propagate()
        return history

    def _parse_log(self, log: bytes) -> None:
        seen: set[tuple[str, str, str]] = set()
        for record_ in log.split(b"\x01")[1:]:
            head, _, raw = record_.partition(b"\n")
            words = head.rstrip(b"\0").decode("ascii").split()
            commit, date, parents = words[0], words[1], words[2:]
            if commit not in self.order:
                self.order[commit] = len(self.order)
                self.parents[commit] = parents
            fields = raw.split(b"\0")
            i = 0
            while i < len(fields):
                meta = fields[i]
                if not meta.startswith(b":"):
                    i += 1
                    continue
                path = fields[i + 1].decode("utf-8", "surrogateescape") if i + 1 < len(fields) else ""
                i += 2
                parts = meta[1:].split()
                if len(parts) < 5:
                    continue
                old, new = parts[2].decode("ascii"), parts[3].decode("ascii")
                if new != _ZERO_OID and (new, commit, path) not in seen:
                    seen.add((new, commit, path))
                    self.blob_commits.setdefault(new, []).append(CommitPath(commit, path, _iso(date)))
                if old != _ZERO_OID and old != new:
                    self.blob_removed.setdefault(old, set()).add(commit)

    def _ref_bit(self, name: str) -> int:
        self.ref_names.append(name)
        return 1 << (len(self.ref_names) - 1)

    def _mark(self, oid: str, bit: int) -> None:
        if oid in self.parents:
            self.bits[oid] = self.bits.get(oid, 0) | bit
        else:
            self.direct[oid] = self.direct.get(oid, 0) | bit

    def _load_refs(self, scanner: Scanner, repository: Repository) -> None:
        out = scanner._git(repository, ["for-each-ref", "--format=%(objectname) %(*objectname) %(refname)"])
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            parts = line.split(" ")
            oid, peeled, name = parts[0], parts[1], " ".join(parts[2:])
            if name == "refs/stash":
                continue  # every stash entry is marked below
            self._mark(peeled or oid, self._ref_bit(name))
        head = repository.git_dir / "HEAD"
        try:
            detached = head.read_text().strip()
        except OSError:
            detached = ""
        if len(detached) == 40 and detached in self.parents:
            self._mark(detached, self._ref_bit("HEAD (detached)"))
        if (repository.git_dir / "logs" / "refs" / "stash").exists() or (
            repository.git_dir / "refs" / "stash"
        ).exists():
            stashes = scanner._git(repository, ["log", "-g", "--format=%H", "refs/stash", "--"])
            for number, oid in enumerate(stashes.decode("ascii").split()):
                self._mark(oid, self._ref_bit(f"stash@{{{number}}}"))
        reflog = scanner._git(repository, ["rev-list", "--no-walk", "--reflog", "--stdin"], stdin=b"")
        bit = self._ref_bit("reflog")
        for oid in reflog.decode("ascii").split():
            self._mark(oid, bit)

    def _propagate(self) -> None:
        """Children come before parents (topological order): pass each commit's refs on."""
        bits = self.bits
        for commit in sorted(self.order, key=self.order.__getitem__):
            mine = bits.get(commit, 0)
            if mine:
                for parent in self.parents[commit]:
                    bits[parent] = bits.get(parent, 0) | mine

    def refs_of(self, commits: Iterable[str]) -> int:
        found = 0
        for commit in commits:
            found |= self.bits.get(commit, 0)
        return found

    def reach(self, bits: int) -> tuple[list[str], str]:
        """(refs, where) for a set of ref bits: where is refs, stash, reflog only or unreachable."""
        names = [self.ref_names[i] for i in range(len(self.ref_names)) if bits >> i & 1]
        refs = [n for n in names if n != "reflog" and not n.startswith("stash@")]
        if refs:
            return refs, "refs"
        stashes = [n for n in names if n.startswith("stash@")]
        if stashes:
            return stashes, "stash"
        if "reflog" in names:
            return [], "reflog only"
        return [], "unreachable"


def _iso(epoch: str) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _blob_id(file: Path) -> str | None:
    """git's id for the file's content as a blob (to skip files the index already holds)."""
    try:
        data = file.read_bytes()
    except OSError:
        return None
    digest = sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def _skip_in_git_dir(git_dir: Path) -> Callable[[Path], bool]:
    """In a git folder, objects/ is read through git (loose objects are compressed) and
    modules/ holds other repositories; every other file is read as it is."""
    skipped = {git_dir / "objects", git_dir / "modules"}
    return lambda folder: folder in skipped


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
