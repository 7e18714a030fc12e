"""Who may steer keyroll: only root and the user keyroll runs as.

keyroll runs with every credential in hand, so it trusts a folder, a file or a
program only when nobody else can change it (OpenSSH's StrictModes, sudo's
checks of sudoers, git's safe.directory):

- a folder keyroll keeps data in, and a file it reads or runs, must be owned by
  root or the running user and be writable by nobody else;
- every folder on the way from `/` (and every symlink met on the way, followed
  to its target) must be owned by root or the running user and not writable by
  group or others, unless it has the sticky bit (`/tmp` is fine on the way to
  a folder, never as the folder itself);
- a state file (journal, key, locks, notes) must be a regular file owned by the
  running user, and is opened without following symlinks.

Checks return `Unsafe` findings (one line each: the path, its owner and mode,
and the fix); `refuse` turns the first into `UnsafePath` (exit 2).  This module
sits beside fsutil and paths: it imports only errors, records and paths.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from keyroll.errors import UnsafePath
from keyroll.hardening import PROGRAM_CWD
from keyroll.paths import DAEMON_LOCK_FILE, FINGERPRINT_KEY_FILE, JOURNAL_FILE, WRITER_LOCK_FILE, Paths
from keyroll.records import record

# Files keyroll keeps in its state folder: the journal with SQLite's side files (what
# SQLite opens; the fingerprint key is checked as it is opened, by open_state_file).
JOURNAL_FILES = (
    JOURNAL_FILE,
    JOURNAL_FILE + "-wal",
    JOURNAL_FILE + "-shm",
    JOURNAL_FILE + "-journal",
)
STATE_FILES = (*JOURNAL_FILES, FINGERPRINT_KEY_FILE, WRITER_LOCK_FILE, DAEMON_LOCK_FILE)
RUNNING_NOTES = "command-*.running"

# Programs that run the file named by an argument: that file is checked too.
INTERPRETERS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "busybox", "python", "python3", "perl", "ruby"}
    | {"node", "nodejs", "php", "lua", "tclsh", "awk", "gawk", "mawk", "Rscript", "pwsh", "deno", "bun"}
)
# The shells whose `-c STRING` is a command line: its programs are checked too.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "busybox"})
# Programs that run the program named by a later argument: that program is checked too.
WRAPPERS = frozenset(
    {"timeout", "nice", "nohup", "setsid", "ionice", "chrt", "taskset", "stdbuf", "flock", "time", "xargs"}
    | {"sudo", "doas", "runuser", "setpriv", "chroot", "unshare", "nsenter", "systemd-run"}
)
# Variables of a program's environment that name files it loads or runs.
LOADED_FROM = frozenset(
    {"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "BASH_ENV", "ENV", "GCONV_PATH", "PYTHONPATH", "PYTHONHOME"}
    | {"PYTHONSTARTUP", "PERL5LIB", "PERLLIB", "PERL5OPT", "RUBYLIB", "RUBYOPT", "NODE_PATH", "NODE_OPTIONS"}
)
_MAX_LINKS = 40


@record(frozen=True)
class Unsafe:
    """One path keyroll must not trust, and what to do about it (one line)."""

    path: Path
    purpose: str  # what keyroll uses it for: "the secrets folder", "targets.x.argv", ...
    problem: str  # "owned by bob (uid 1000), mode 0755" ...
    fix: str

    def __str__(self) -> str:
        return f"unsafe {self.purpose}: {self.problem}; {self.fix}"


def running_user() -> int:
    return os.geteuid()


def trusted_owners() -> frozenset[int]:
    """The owners keyroll trusts: root and the user it runs as."""
    return frozenset({0, running_user()})


@functools.cache
def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def owner_text(info: os.stat_result) -> str:
    """How the owner and mode of `info` read in a finding: `owned by NAME (uid N), mode 0NNN`."""
    name = user_name(info.st_uid)
    owner = name if name.startswith("uid ") else f"{name} (uid {info.st_uid})"
    return f"owned by {owner}, mode {stat.S_IMODE(info.st_mode):04o}"


def _who() -> str:
    return "root" if running_user() == 0 else f"root or {user_name(running_user())}"


def _writable_by_others(mode: int, path: Path | None = None) -> bool:
    """Group or others may write it (a read-only mount counts as written by nobody)."""
    if not mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    try:
        return path is None or not os.statvfs(path).f_flag & os.ST_RDONLY
    except OSError:
        return True


def foreign(info: os.stat_result, path: Path | None = None) -> bool:
    """Someone but root or the running user owns it, or group or others may write it
    (on a read-only mount, when `path` is given, nobody does)."""
    return info.st_uid not in trusted_owners() or _writable_by_others(info.st_mode, path)


class _Walk:
    """Checks every folder and symlink on the way to a path, following symlinks to
    their targets (and checking those ways too)."""

    def __init__(self, purpose: str) -> None:
        self.purpose = purpose
        self.owners = trusted_owners()
        self.found: list[Unsafe] = []
        self.links = 0
        self.subject: Path | None = None  # the path asked about (findings name it first)

    @property
    def me(self) -> str:
        """The running user's name (looked up when a finding needs it)."""
        return user_name(running_user())

    def add(self, path: Path, info: os.stat_result, problem: str, fix: str) -> None:
        self.found.append(Unsafe(path, self.purpose, f"{problem} is {owner_text(info)}", fix))

    def walk(self, path: Path, final: bool) -> tuple[Path, os.stat_result | None]:
        """The real path `path` leads to and its stat (None when it does not exist);
        records every problem on the way (and of the final object, when `final`)."""
        if self.subject is None:
            self.subject = path
        subject = self.subject
        current = Path("/")
        info = os.stat(current)
        self._check_parent(current, info, subject)
        full = path if path.is_absolute() else Path(os.getcwd()) / path
        parts = [p for p in full.parts[1:] if p not in ("", ".")]
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "..":
                current = current.parent
                info = os.stat(current)
                continue
            candidate = current / part
            try:
                info = os.lstat(candidate)
            except (FileNotFoundError, NotADirectoryError):
                return current.joinpath(*parts[index:]), None
            if stat.S_ISLNK(info.st_mode):
                self.links += 1
                if self.links > _MAX_LINKS:
                    self.add(candidate, info, "a chain of too many symlinks", "choose a plain path")
                    return candidate, None
                if info.st_uid not in self.owners:
                    self.add(
                        candidate,
                        info,
                        f"{subject} leads through the symlink {candidate}, which",
                        f"remove it, or use a path free of it ({_who()} must own every symlink on the way)",
                    )
                target = Path(os.readlink(candidate))
                real, info_or_none = self.walk(target if target.is_absolute() else current / target, final and last)
                if info_or_none is None:
                    return real.joinpath(*parts[index + 1 :]), None
                current, info = real, info_or_none
                continue
            current = candidate
            if last and final:
                self._check_final(current, info, subject)
            elif stat.S_ISDIR(info.st_mode):
                self._check_parent(current, info, subject)
        return current, info

    def _check_parent(self, folder: Path, info: os.stat_result, subject: Path) -> None:
        intro = f"{subject}: its parent {folder}"
        if info.st_uid not in self.owners:  # (her home, say: moving out is the fix, not taking it)
            self.add(
                folder,
                info,
                intro,
                f"choose a place outside it (or `chown {self.me} {folder}` if it should be {self.me}'s)",
            )
        elif _writable_by_others(info.st_mode, folder) and not info.st_mode & stat.S_ISVTX:
            self.add(folder, info, intro, f"`chmod go-w {folder}`, or choose another place")

    def _check_final(self, path: Path, info: os.stat_result, subject: Path) -> None:
        intro = f"{subject}" if path == subject else f"{subject} (really {path})"
        if info.st_uid not in self.owners:
            self.add(path, info, intro, f"`chown {self.me} {path}`, or choose another place")
        elif _writable_by_others(info.st_mode, path):
            mode = "0700" if stat.S_ISDIR(info.st_mode) else "go-w"
            self.add(path, info, intro, f"`chmod {mode} {path}`, or choose another place")


def check_folder(path: Path, purpose: str) -> list[Unsafe]:
    """The folder (when it exists) and its parents up to `/`; a missing folder is
    checked as far as it exists (keyroll creates the rest with its own owner)."""
    walk = _Walk(purpose)
    try:
        walk.walk(path, final=True)
    except OSError as exc:
        return [Unsafe(path, purpose, f"{path}: cannot be checked ({exc.strerror or exc})", "choose another place")]
    return list({str(u): u for u in walk.found}.values())


def check_file(path: Path, purpose: str) -> list[Unsafe]:
    """A file keyroll reads or runs (config, credential file, program): it and the
    way to it, symlinks followed.  A missing file is no finding here."""
    return check_folder(path, purpose)


def check_backup(path: Path) -> list[Unsafe]:
    """A backup about to be read (restored or verified): the folder, the way to it and
    every file in it (a backup another user can change brings back values she chose)."""
    found = check_folder(path, "backup")
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return found  # (reported as such where the backup is read)
    for name in names:
        found += check_file(path / name, "backup")
    first: dict[Path, Unsafe] = {}
    for unsafe in found:
        first.setdefault(unsafe.path, unsafe)
    return list(first.values())


def check_state(paths: Paths, names: Sequence[str] = STATE_FILES, *, running_notes: bool = True) -> list[Unsafe]:
    """The state folder and the state files in it (`names`, and with `running_notes`
    the notes about running programs): each a regular file (never a symlink) owned
    by the running user."""
    found = check_folder(paths.state_dir, "state folder")
    try:
        names = [n for n in names if os.path.lexists(paths.state_dir / n)]
        if running_notes:
            names += sorted(p.name for p in paths.state_dir.glob(RUNNING_NOTES))
    except OSError:
        return found
    for name in names:
        problem = state_file_problem(paths.state_dir / name)
        if problem is not None:
            found.append(problem)
    return found


def state_file_problem(path: Path, info: os.stat_result | None = None) -> Unsafe | None:
    """Why `path` (a state file) is not keyroll's own, or None."""
    try:
        info = info or os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Unsafe(path, "state file", f"{path}: cannot be checked ({exc.strerror or exc})", "remove it")
    if stat.S_ISLNK(info.st_mode):
        return Unsafe(path, "state file", f"{path} is a symlink, {owner_text(info)}", "remove it")
    if not stat.S_ISREG(info.st_mode):
        return Unsafe(path, "state file", f"{path} is not a regular file, {owner_text(info)}", "remove it")
    if info.st_uid != running_user():
        return Unsafe(
            path,
            "state file",
            f"{path} is {owner_text(info)}",
            f"remove it, or `chown {user_name(running_user())} {path}` if it is yours",
        )
    if _writable_by_others(info.st_mode):
        return Unsafe(path, "state file", f"{path} is {owner_text(info)}", f"`chmod 0600 {path}`")
    return None


def open_state_file(path: Path, flags: int, mode: int = 0o600) -> int:
    """os.open for a state file: never through a symlink, and the file must be the
    running user's own regular file (else UnsafePath, and the descriptor is closed).
    Never pass O_TRUNC (it would act before the check): truncate the descriptor.
    (O_NONBLOCK: a FIFO in its place is refused, not waited on.)"""
    assert not flags & os.O_TRUNC, "open_state_file: truncate after the check"
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    try:
        problem = state_file_problem(path, os.fstat(fd))
    except OSError:
        os.close(fd)
        raise
    if problem is not None:
        os.close(fd)
        raise UnsafePath(str(problem))
    return fd


def resolve_program(program: str, env: Mapping[str, str]) -> str | None:
    """Where `program` is run from: itself when it holds a '/', else the first match
    on the PATH keyroll hands to programs (None when not found)."""
    import shutil

    if "/" in program:
        program = os.path.join(PROGRAM_CWD, program)  # (programs run there)
        return program if os.path.exists(program) else None
    folders = [os.path.join(PROGRAM_CWD, entry or ".") for entry in env.get("PATH", os.defpath).split(os.pathsep)]
    return shutil.which(program, path=os.pathsep.join(folders))


def runnable_program(program: str, env: Mapping[str, str]) -> str | None:
    """Where `program` is run from (see `resolve_program`, with the environment it
    runs with) when a file keyroll may execute is there, else None."""
    where = resolve_program(program, env)
    return where if where is not None and os.path.isfile(where) and os.access(where, os.X_OK) else None


def check_program(argv: Sequence[str], purpose: str, env: Mapping[str, str], depth: int = 0) -> list[Unsafe]:
    """The program `argv` runs (resolved on PATH, symlinks followed) and, for an
    interpreter (`sh x.sh`, `python3 x.py`, `env prog`), the script or program it is
    given: nobody but root or the running user may be able to change them."""
    if not argv:
        return []
    found: list[Unsafe] = []
    where = resolve_program(argv[0], env)
    if "/" not in argv[0]:
        found += check_search_path(argv[0], where, purpose, env)
    if where is None:
        return found  # (not found: reported as such by the callers)
    found += check_file(Path(where), purpose)
    interpreter = _shebang(where)
    if interpreter and depth < 4:  # (`#!/path/to/python`: that one runs too; the kernel nests 4 deep at most)
        found += check_program(interpreter, purpose, env, depth + 1)
    name = Path(os.path.realpath(where)).name
    rest = list(argv[1:])
    if Path(argv[0]).name == "env" or name == "env":
        given = dict(env)  # (`env PATH=... PROG` looks PROG up on that PATH)
        while rest and (rest[0].startswith("-") or "=" in rest[0]):
            option = rest.pop(0)
            if option in ("-i", "--ignore-environment", "-"):
                given = {}
            elif not option.startswith("-"):
                given[option.partition("=")[0]] = option.partition("=")[2]
        loaded = {k: v for k, v in given.items() if k in LOADED_FROM and env.get(k) != v}
        return found + check_loaded_files(loaded, purpose) + check_program(rest, purpose, given)
    names = {name.rstrip("0123456789."), Path(argv[0]).name.rstrip("0123456789.")}
    if names & WRAPPERS:  # (`timeout 10 PROG`, `nice -n 5 PROG`: the first argument that is a program)
        for index, arg in enumerate(rest):
            wrapped = None if arg.startswith("-") else resolve_program(arg, env)
            if wrapped is not None and os.path.isfile(wrapped) and os.access(wrapped, os.X_OK):
                return found + check_program(rest[index:], purpose, env)
        return found
    if names & INTERPRETERS:
        command = _shell_command(rest) if names & SHELLS else None
        if command is not None:
            for words in _shell_programs(command):
                found += check_program(words, purpose, env)
            return found
        found += _check_script(rest, purpose)
    return found


def _shebang(path: str) -> list[str]:
    """The interpreter line of a script (`#!/usr/bin/env python3` -> [/usr/bin/env,
    python3]); [] for a binary or an unreadable file.  (The kernel splits the line
    once: the interpreter, then at most one argument.)"""
    try:
        with open(path, "rb") as file:
            head = file.read(256)
    except OSError:
        return []
    if not head.startswith(b"#!"):
        return []
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    interpreter, _, argument = line.partition(" ")
    if not interpreter.startswith("/"):
        return []
    argument = argument.strip()
    return [interpreter, argument] if argument else [interpreter]


def _check_script(args: Sequence[str], purpose: str) -> list[Unsafe]:
    """An interpreter's script, and what its options name before it: the first
    argument that is a file (`python3 -W ignore x.py`: x.py), and every folder or
    file an earlier argument names (`perl -I DIR x.pl`, `node --require=FILE x.js`)."""
    found: list[Unsafe] = []
    for arg in args:
        value = arg.partition("=")[2] if arg.startswith("-") else arg
        if not value or value.startswith("-"):
            continue
        path = os.path.join(PROGRAM_CWD, value)
        if os.path.isdir(path) and "/" in value:
            found += check_folder(Path(path), purpose)
        elif os.path.isfile(path):
            found += check_file(Path(path), purpose)
            if not arg.startswith("-"):
                break  # (the script: what follows are its own arguments)
    return found


def check_loaded_files(env: Mapping[str, str], purpose: str) -> list[Unsafe]:
    """The files and folders named by the variables of `env` that make a program load
    or run code (LD_PRELOAD, PYTHONPATH, BASH_ENV...): nobody else may change them."""
    found: list[Unsafe] = []
    for name in sorted(LOADED_FROM & set(env)):
        for item in env[name].replace(" ", os.pathsep).split(os.pathsep):
            if item.startswith("/") or item.startswith("."):
                found += check_file(Path(PROGRAM_CWD, item), f"{name} of {purpose}")
    return found


def check_search_path(program: str, where: str | None, purpose: str, env: Mapping[str, str]) -> list[Unsafe]:
    """The PATH folders searched for `program` before the one it is found in (all of
    them when it is not found): another user who can add a file to one of them
    would decide what runs."""
    found: list[Unsafe] = []
    for entry in env.get("PATH", os.defpath).split(os.pathsep):
        folder = os.path.join(PROGRAM_CWD, entry or ".")  # (an empty entry is the current folder)
        for unsafe in check_folder(Path(folder), f"PATH folder searched for `{program}` ({purpose})"):
            fix = f"{unsafe.fix.removesuffix(', or choose another place')}, or take {folder} off keyroll's PATH"
            found.append(Unsafe(unsafe.path, unsafe.purpose, unsafe.problem, fix))
        if where is not None and os.path.join(folder, program) == where:
            break
    return found


def _shell_command(args: Sequence[str]) -> str | None:
    """The command string of `sh -c 'STRING' ...` (options such as `-e -c`, `-ec`), or None."""
    for index, arg in enumerate(args):
        if not arg.startswith("-") or arg == "--":
            return None
        if arg.startswith("--"):  # (bash --login -c, --norc...)
            continue
        if "c" in arg[1:]:
            return args[index + 1] if index + 1 < len(args) else None
    return None


_SHELL_SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", "|&", ";;"})
_SHELL_PREFIXES = frozenset({"exec", "command", "nohup", "then", "do", "else", "!", "{"})


def _shell_programs(command: str) -> list[list[str]]:
    """The simple commands of a shell command string (best effort: words split as the
    shell would at `;`, `&&`, `|`...; leading `VAR=x`, `exec` and the like skipped)."""
    import shlex

    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:
        return []
    commands: list[list[str]] = [[]]
    for word in words:
        if word in _SHELL_SEPARATORS:
            commands.append([])
        elif commands[-1] or not ("=" in word.partition("/")[0] or word in _SHELL_PREFIXES):
            commands[-1].append(word)
    return [c for c in commands if c]


def refuse(found: Iterable[Unsafe], listed_by: str | None = "keyroll validate") -> None:
    """UnsafePath (exit 2) for the first finding, saying how many more there are
    (and which command lists them)."""
    found = list(found)
    if found:
        listed = f": `{listed_by}` lists them" if listed_by else ""
        more = f" (and {len(found) - 1} more{listed})" if len(found) > 1 else ""
        raise UnsafePath(f"{found[0]}{more}")
