"""Reading a repository with git, never writing into it: where it is, every object
(`git cat-file --batch-all-objects --batch`, matched as it streams), and which
commits, paths and refs hold each blob (one `git log --all --reflog -m --raw` pass)."""

from __future__ import annotations

import bisect
import contextlib
import os
import queue
import subprocess
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from keyroll.fsutil import describe_os_error
from keyroll.gitenv import git_environment, git_message
from keyroll.leaks.patterns import LineCounter, Matcher
from keyroll.leaks.report import CommitPath, LeakScanError
from keyroll.records import record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    GitRunner = Callable[[list[str], bytes | None], bytes]  # git args, stdin -> stdout

CHUNK = 4 << 20  # bytes read from git (or a file) at a time
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


def is_zero(oid: str) -> bool:
    """git's "no object" id (40 zeros, or 64 in a SHA-256 repository)."""
    return not oid.strip("0")


def git_env(*, keep_location: bool = False) -> dict[str, str]:
    """The environment for git (keyroll.gitenv: C locale, no prompts, and without
    `keep_location` nothing pointing git at another repository than the path given),
    with no optional locks (no write into the scanned repository), no pager, no lazy fetch."""
    env = git_environment(os.environ, keep_location=keep_location)
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_PAGER="cat")
    env["GIT_NO_LAZY_FETCH"] = "1"  # a partial clone never fetches (git 2.44+; older ones read no blob here)
    return env


def git_argv(git_dir: Path | None, args: Sequence[str], work_tree: Path | None = None) -> list[str]:
    """A read-only git command line for `args`, on `git_dir` (and `work_tree`) when given."""
    argv = ["git", *_GIT_READ_ONLY]
    if git_dir is not None:
        argv += ["--git-dir", str(git_dir)]
        if work_tree is not None:
            argv += ["--work-tree", str(work_tree)]
    return argv + list(args)


def run_git(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    git_dir: Path | None = None,
    env: dict[str, str],
    stdin: bytes | None = None,
    what: str,
    warnings: list[str] | None = None,
) -> bytes:
    """Run a read-only git command; its stdout, or LeakScanError with git's message.
    git's `warning:` lines (a folder it could not open, ...) go to `warnings` when given."""
    try:
        done = subprocess.run(
            git_argv(git_dir, args),
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
        raise LeakScanError(f"{what}: {git_message(done.stderr)}")
    if warnings is not None:
        text = done.stderr.decode("utf-8", "replace")
        warnings += [f"{what}: {line.strip()}" for line in text.splitlines() if line.startswith("warning:")]
    return done.stdout


@record(frozen=True)
class Repository:
    """A repository found at a path: its git folder and (unless bare) its work tree."""

    given: Path
    git_dir: Path
    work_tree: Path | None
    common_dir: Path | None = None  # the main git folder of a linked work tree (objects, config, refs); else git_dir

    @property
    def shared_dir(self) -> Path:
        """The git folder that holds the objects, config and refs (a linked work tree's main one)."""
        return self.common_dir or self.git_dir


def locate(path: Path, env: dict[str, str]) -> Repository | None:
    """The repository `path` is (or lies in): None for a plain folder; LeakScanError with
    git's own message when git refuses it (another user's repository, safe.directory)."""
    try:
        done = subprocess.run(
            git_argv(
                None,
                [
                    "rev-parse",
                    "--absolute-git-dir",
                    "--is-bare-repository",
                    "--is-inside-git-dir",
                    "--git-common-dir",  # (relative to `path` at times: --path-format needs git 2.31)
                ],
            ),
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
        message = git_message(done.stderr)
        if "not a git repository" in message:
            return None
        raise LeakScanError(f"{path}: git refuses to read this repository: {message}")
    git_dir_text, bare, inside_git_dir, common_text = done.stdout.decode("utf-8", "surrogateescape").splitlines()[:4]
    git_dir = Path(git_dir_text)
    common_dir = Path(os.path.normpath(os.path.join(os.path.abspath(path), common_text)))
    work_tree: Path | None = None
    if bare != "true":
        if inside_git_dir == "true":
            work_tree = git_dir.parent if git_dir.name == ".git" else None
        else:
            top = run_git(["rev-parse", "--show-toplevel"], cwd=path, env=env, what=str(path))
            work_tree = Path(top.decode("utf-8", "surrogateescape").strip())
    linked = os.path.realpath(common_dir) != os.path.realpath(git_dir)
    return Repository(path, git_dir, work_tree, common_dir if linked else None)


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
class ObjectHit:
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
) -> tuple[list[ObjectHit], int, int]:
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
    hits: list[ObjectHit] = []
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
                    hits.append(ObjectHit(oid, kind, at - starts[index], pattern))
            searched = base + len(data)
            cut = min(max(len(data) - keep, 0), max(next_header - base, 0))
            carry = data[cut:]
            base += cut
    finally:
        proc.stdout.close()
        code = proc.wait()
        drain.join()
    if code != 0:
        raise LeakScanError(f"{what}: {git_message(b''.join(errors))}")
    return hits, len(starts), total


def object_lines(
    argv: list[str], wanted: dict[str, list[int]], *, env: dict[str, str], cwd: Path | None = None, what: str
) -> dict[str, LineCounter]:
    """For each object in `wanted` (id -> byte offsets of matches): the lines of those
    offsets and whether it is binary, read with `git cat-file --batch` (argv) one chunk at
    a time, so that no object is held whole, however big."""
    import tempfile

    counters = {oid: LineCounter(offsets) for oid, offsets in wanted.items()}
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors
            )
        except FileNotFoundError:
            raise LeakScanError("git is not installed: it is needed to scan a repository") from None
        assert proc.stdin is not None and proc.stdout is not None
        feeder = threading.Thread(target=_feed, args=(proc.stdin, ("\n".join(wanted) + "\n").encode("ascii")))
        feeder.daemon = True
        feeder.start()
        try:
            while True:
                header = proc.stdout.readline().split()
                if not header:
                    break
                if len(header) != 3:
                    continue  # "<oid> missing"
                counter = counters.get(header[0].decode("ascii"))
                remaining = int(header[2])
                while remaining > 0:
                    data = proc.stdout.read(min(CHUNK, remaining))
                    if not data:
                        break
                    remaining -= len(data)
                    if counter is not None:
                        counter.feed(data)
                proc.stdout.read(1)  # the newline after the content
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code != 0:
            errors.seek(0)
            raise LeakScanError(f"{what}: {git_message(errors.read())}")
    return counters


def _feed(pipe: Any, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError):
        try:
            pipe.write(data)
        finally:
            pipe.close()


class PendingLog:
    """A `git log` running into a temporary file."""

    def __init__(self, proc: subprocess.Popen[bytes], output: Any, errors: Any) -> None:
        self.proc, self.output, self.errors = proc, output, errors

    def result(self, what: str) -> bytes:
        try:
            code = self.proc.wait()
            if code != 0:
                self.errors.seek(0)
                raise LeakScanError(f"{what}: {git_message(self.errors.read())}")
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


class History:
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
    def start(cls, env: dict[str, str], repository: Repository) -> PendingLog:
        """Start the history pass now, into an unnamed temporary file (outside the
        repository): it runs on another core while the automaton is built and the
        objects are read, and is read back only if a blob or commit holds a value."""
        import tempfile

        output = tempfile.TemporaryFile()  # noqa: SIM115 (closed by PendingLog)
        errors = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                git_argv(repository.git_dir, cls.LOG),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=errors,
            )
        except OSError:
            output.close()
            errors.close()
            raise LeakScanError("git is not installed: it is needed to scan a repository") from None
        return PendingLog(proc, output, errors)

    @classmethod
    def load(cls, run: GitRunner, repository: Repository, pending: PendingLog) -> History:
        """The history from a pass started with `start`; `run` runs other git commands."""
        history = cls()
        history._parse_log(pending.result(str(repository.given)))
        history._load_refs(run, repository)
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
                if not is_zero(new) and (new, commit, path) not in seen:
                    seen.add((new, commit, path))
                    self.blob_commits.setdefault(new, []).append(CommitPath(commit, path, _iso(date)))
                if not is_zero(old) and old != new:
                    self.blob_removed.setdefault(old, set()).add(commit)

    def _ref_bit(self, name: str) -> int:
        self.ref_names.append(name)
        return 1 << (len(self.ref_names) - 1)

    def _mark(self, oid: str, bit: int) -> None:
        if oid in self.parents:
            self.bits[oid] = self.bits.get(oid, 0) | bit
        else:
            self.direct[oid] = self.direct.get(oid, 0) | bit

    def _load_refs(self, run: GitRunner, repository: Repository) -> None:
        out = run(["for-each-ref", "--format=%(objectname) %(*objectname) %(refname)"], None)
        stash_tip = None
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            parts = line.split(" ")
            oid, peeled, name = parts[0], parts[1], " ".join(parts[2:])
            if name == "refs/stash":
                stash_tip = oid
                continue  # every stash entry is marked below
            self._mark(peeled or oid, self._ref_bit(name))
        shared = repository.shared_dir
        heads = [(shared / "HEAD", "HEAD (detached)")]  # every work tree's HEAD, the linked ones' too
        if (shared / "worktrees").is_dir():
            heads += [
                (linked / "HEAD", f"HEAD (detached) of work tree {_work_tree_name(linked)}")
                for linked in sorted((shared / "worktrees").iterdir())
            ]
        for head, label in heads:
            try:
                detached = head.read_text().strip()
            except OSError:
                continue
            if detached in self.parents:  # (a symbolic HEAD reads `ref: ...`)
                self._mark(detached, self._ref_bit(label))
        if stash_tip is not None:
            # Each entry of the stash's reflog; a stash without one (a mirror clone, a packed
            # ref copied elsewhere) still has its tip.
            entries = run(["log", "-g", "--format=%H", "refs/stash", "--"], None).decode("ascii").split()
            for number, oid in enumerate(entries or [stash_tip]):
                self._mark(oid, self._ref_bit(f"stash@{{{number}}}"))
        reflog = run(["rev-list", "--no-walk", "--reflog", "--stdin"], b"")
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
        """The refs that reach any of `commits`, as a bit set (one bit per ref)."""
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


def _work_tree_name(linked: Path) -> str:
    """A linked work tree's path, from its `gitdir` file (its name when that is gone)."""
    try:
        return str(Path((linked / "gitdir").read_text().strip()).parent)
    except OSError:
        return linked.name


def _iso(epoch: str) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
