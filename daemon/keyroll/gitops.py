"""GitOps: every change lands in the fleet's git repository as one commit of
encrypted files, inside the rotation transaction.

The engine behind `[gitops]`.  After the targets accepted the new values and
the store holds them, `Publisher.publish` copies the published files (the SOPS
bundle exactly as the store has it) into `repo/path`, refuses anything that
looks like plaintext, stages only those paths, makes one commit for the whole
command and, when `push` is set, pushes it: a push rejected because the remote
moved on is fetched and the commit rebased on top (never a merge commit, never
a force-push); a remote change to the published files themselves is a
conflict.  Each step is written to the journal (the commit's id, whether it
was pushed) before the next begins, so recovery after a SIGKILL knows which
way to go: once pushed, forward; before, back (the local commit undone by a
new commit).

Git runs with options that make it independent of the user's and the
system's git configuration where it matters (no hooks: keyroll's commits are
machine commits of ciphertext, and a hook in a clone could be hostile or wait
for input; no signing prompts, no editor, no terminal prompts); the transport
(ssh keys, credential helpers) is still configured as the user has it.

keyroll runs git as root in a repository others may have written, so it trusts
a repository only as it trusts a config file (`keyroll.trust`): the work tree,
its git folder and every git configuration file git reads must be changeable by
root and the running user only.  Even then, no program named by the
repository's configuration for what keyroll runs is started: every filter
driver (`filter.*.clean/smudge/process`, which `git add` would run), merge
driver is overridden (GIT_CONFIG_KEY_n, not `-c`, which would split a name holding "="),
and push and fetch name the standard receive-pack and upload-pack (ignoring
`remote.*.receivepack/uploadpack`).
`ext::` remotes are refused.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote_plus

from keyroll import trust
from keyroll.errors import ConfigError, KeyrollError, ServiceUnavailable, UsageError
from keyroll.fsutil import write_files_atomically
from keyroll.gitenv import git_environment, git_message
from keyroll.records import field, record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from keyroll.config.policy import Policy
    from keyroll.journal import Journal
    from keyroll.store import Store

KUBERNETES_FOLDER = "kubernetes"  # under gitops.path: the Secret manifests, for Flux
PUBLISH_KEY = "gitops.publish"  # journal meta: the publish in progress (JSON, never a value)
CONVERGE_KEY = "gitops.converging"  # journal meta: secrets whose old credential waits for the fleet
TRAILER = "Keyroll-Transaction"
PUSH_TRIES = 3
NETWORK_TIMEOUT = 120.0
LOCAL_TIMEOUT = 60.0
# In place of anything in the user's or system's git configuration that could change
# what keyroll commits or make git wait for a person.
GIT_OPTIONS = (
    "core.hooksPath=/dev/null",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "push.gpgSign=false",
    "core.editor=true",
    "sequence.editor=true",
    "core.autocrlf=false",
    "core.fsmonitor=false",
    "core.safecrlf=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "rebase.autoSquash=false",
    "rebase.updateRefs=false",
    "rebase.abbreviateCommands=false",
    "push.followTags=false",
    "push.recurseSubmodules=no",
    "fetch.recurseSubmodules=false",  # (a submodule's own git config would steer that fetch)
    "submodule.recurse=false",
    "user.useConfigOnly=false",
    "advice.detachedHead=false",
    "protocol.ext.allow=never",
)
# Configuration that names a program git would run for keyroll's commands: each is
# overridden (see Git.overrides), whoever wrote it.
_PROGRAM_KEYS = r"^(filter|merge)\..+\.[a-z]+$|^core\.sshcommand$"
# (remote.*.receivepack/uploadpack may hold several values, so `-c` cannot replace them:
# push and fetch name the standard programs on their command line instead.)
RECEIVE_PACK = "--receive-pack=git-receive-pack"
UPLOAD_PACK = "--upload-pack=git-upload-pack"
_IN_PROGRESS = {
    "MERGE_HEAD": "merge",
    "rebase-merge": "rebase",
    "rebase-apply": "rebase (or git am)",
    "CHERRY_PICK_HEAD": "cherry-pick",
    "REVERT_HEAD": "revert",
}


class GitError(KeyrollError):
    """Git refused an operation keyroll needed (exit 1)."""


class GitConflict(GitError):
    """The remote changed the published files too, or kept refusing the push (exit 1)."""


class GitUnreachable(ServiceUnavailable):
    """The remote cannot be reached: retry later (exit 75)."""


class RepoNotReady(UsageError):
    """The repository cannot take a commit now (not a work tree, a merge or rebase in
    progress, uncommitted changes in the published files): exit 2, nothing changed."""


class PlaintextRefused(GitError):
    """A file about to be published does not look encrypted: it is never staged."""


@record
class PublishState:
    """What the journal knows about the publish in progress (never a value)."""

    txid: str
    op: str
    names: list[str]
    files: list[str]  # paths inside the repository
    phase: str = "write"  # write -> commit -> push -> pushed
    base: str = ""  # HEAD before keyroll wrote anything ("" for an unborn branch)
    shas: list[str] = field(default_factory=list)  # each commit that held the change, newest last

    def dump(self) -> str:
        return json.dumps(
            {k: getattr(self, k) for k in ("txid", "op", "names", "files", "phase", "base", "shas")}, sort_keys=True
        )

    @classmethod
    def load(cls, text: str | None) -> PublishState | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(**data)
        except (ValueError, TypeError):
            return None


@record(frozen=True)
class Published:
    """The outcome of one publish: the commit (None when the repository already held
    these files) and whether it reached the remote."""

    sha: str | None
    pushed: bool
    files: tuple[str, ...] = ()
    seconds: float = 0.0


@record(frozen=True)
class RepoState:
    """What `status` says about the repository (no value, no network)."""

    repo: str
    files: tuple[str, ...]
    in_step: bool | None  # None: cannot tell
    detail: str


PLAINTEXT_MIN_LENGTH = 8  # shorter stored values are not looked for in the files published


def plaintext_problem(name: str, data: bytes, values: Collection[str]) -> str | None:
    """Why `data` must not be committed: no SOPS metadata, or a stored value in it
    (raw, base64 at any alignment, hex, or URL-encoded: keyroll.leaks.patterns'
    encodings, and the form-encoded one); None when it looks properly encrypted."""
    from keyroll.leaks.patterns import encodings  # (not on `status`'s path: no matcher, no ahocorasick)

    text = data.decode("utf-8", errors="replace")
    has_metadata = any(line.startswith("sops:") for line in text.splitlines()) or '"sops": {' in text
    if not has_metadata or "ENC[" not in text or "mac" not in text:
        return f"{name}: no SOPS metadata: it does not look encrypted, so it is not committed"
    forms: set[str] = set()
    for value in values:
        if len(value) >= PLAINTEXT_MIN_LENGTH:
            forms.update(pattern.decode("utf-8") for _, pattern in encodings(value))
            forms.add(quote_plus(value))
    if _found_in(text, forms):
        return f"{name}: holds a stored value in the clear (or merely encoded), so it is not committed"
    return None


_TOKEN_CHARS = "A-Za-z0-9+/=_%.~-"  # every character of a hex, base64 or URL-encoded form (and of most values)


def _found_in(text: str, forms: set[str]) -> bool:
    """Whether any of `forms` occurs in `text`.  Forms made of token characters only
    can occur only inside a run of them: each run is cut into windows of each form
    length and looked up in a set (a SOPS bundle is mostly short runs, so this is
    some 20 times quicker than one substring search per form); the rest are searched."""
    import re

    plain = re.compile(f"[{_TOKEN_CHARS}]+")
    by_length: dict[int, set[str]] = {}
    for form in forms:
        if plain.fullmatch(form):
            by_length.setdefault(len(form), set()).add(form)
        elif form in text:
            return True
    if not by_length:
        return False
    shortest = min(by_length)
    for run in re.findall(f"[{_TOKEN_CHARS}]{{{shortest},}}", text):
        for length, wanted in by_length.items():
            if length <= len(run) and not wanted.isdisjoint(run[i : i + length] for i in range(len(run) - length + 1)):
                return True
    return False


class Git:
    """Runs git in one work tree, independent of user git configuration that could
    change what is committed (see GIT_OPTIONS), never prompting."""

    def __init__(self, repo: Path, env: Mapping[str, str], author: str = "keyroll <keyroll@localhost>") -> None:
        self.repo = repo
        name, _, email = author.partition(" <")
        self.env = {
            **git_environment(env),
            "GIT_EDITOR": "true",
            "GIT_SEQUENCE_EDITOR": "true",
            "GIT_AUTHOR_NAME": name.strip(),
            "GIT_AUTHOR_EMAIL": email.rstrip(">"),
            "GIT_COMMITTER_NAME": name.strip(),
            "GIT_COMMITTER_EMAIL": email.rstrip(">"),
        }
        for variable in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
            self.env.pop(variable, None)
        for variable in list(self.env):  # (git needs its transport's settings, never keyroll's own credentials)
            if variable.startswith(("SOPS_", "PG", "KEYROLL_")) or variable == "CREDENTIALS_DIRECTORY":
                del self.env[variable]
        self._batch_ssh = "GIT_SSH_COMMAND" not in self.env and "GIT_SSH" not in self.env
        if self._batch_ssh:  # (unless core.sshCommand names the user's own: see overrides)
            self.env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
        for variable in list(self.env):  # (config given to an outer git: keyroll's own overrides go last)
            if variable.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")) or variable in (
                "GIT_CONFIG_COUNT",
                "GIT_CONFIG_PARAMETERS",
            ):
                del self.env[variable]
        self._overrides: dict[str, str] | None = None

    def overrides(self) -> dict[str, str]:
        """Config (key -> value, given last) that neutralises every program the repository's (or any) git
        configuration names for the commands keyroll runs: filter drivers (run by
        `add`, `status`, `checkout`) and merge drivers (`rebase`)."""
        if self._overrides is None:
            self._overrides = {}
            done = self.run("config", "--null", "--get-regexp", _PROGRAM_KEYS, check=False)
            options: dict[str, str] = {}
            for entry in done.stdout.decode("utf-8", errors="replace").split("\0"):
                key = entry.partition("\n")[0]
                if key == "core.sshcommand" and self._batch_ssh:
                    del self.env["GIT_SSH_COMMAND"]  # (the environment would win over the deploy key set there)
                    self._batch_ssh = False
                    continue
                section, _, rest = key.partition(".")
                name = rest.rpartition(".")[0]
                if not name:
                    continue
                if section == "filter":
                    for variable, value in (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false")):
                        options[f"filter.{name}.{variable}"] = value
                elif section == "merge":
                    options[f"merge.{name}.driver"] = "false"  # (a conflict, never a program)
            self._overrides = options  # (given as GIT_CONFIG_KEY_n: a name may hold "=", which `-c` would split)
        return self._overrides

    def config_files(self) -> list[Path]:
        """Every git configuration file git reads here (system, global, the repository's,
        and whatever they include)."""
        done = self.run("config", "--list", "--show-origin", "--null", check=False)
        files: dict[Path, None] = {}
        fields = done.stdout.decode("utf-8", errors="replace").split("\0")
        for origin in fields[::2]:
            if origin.startswith("file:"):
                files[self.repo / origin[len("file:") :]] = None
        return list(files)

    def run(
        self, *args: str, check: bool = True, timeout: float = LOCAL_TIMEOUT, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """`git ARGS` in the work tree; GitError (one line) when it fails and `check`."""
        argv = ["git", *(item for option in GIT_OPTIONS for item in ("-c", option)), *args]
        overrides = self.overrides() if self._overrides is not None or args[0] != "config" else {}
        env = dict(self.env, GIT_CONFIG_COUNT=str(len(overrides))) if overrides else self.env
        for index, (key, value) in enumerate(overrides.items()):
            env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
        try:
            done = subprocess.run(
                argv,
                cwd=self.repo,
                env=env,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise GitError("git is not installed (needed by [gitops])") from None
        except NotADirectoryError:
            raise RepoNotReady(f"gitops.repo: {self.repo} is not a folder") from None
        except subprocess.TimeoutExpired:
            raise GitUnreachable(f"{self.repo}: git {args[0]} did not finish within {timeout:.0f} s") from None
        except OSError as exc:
            raise RepoNotReady(f"gitops.repo: {self.repo}: {exc.strerror or exc}") from None
        if check and done.returncode != 0:
            raise GitError(f"{self.repo}: git {args[0]} failed: {git_message(done.stderr)}")
        return done

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.decode("utf-8", errors="replace").strip()

    def head(self) -> str:
        done = self.run("rev-parse", "-q", "--verify", "HEAD^{commit}", check=False)
        return done.stdout.decode().strip() if done.returncode == 0 else ""

    def in_progress(self) -> str | None:
        """The operation a person (or a killed git) left in progress, if any."""
        for marker, what in _IN_PROGRESS.items():
            if (self.repo / self.out("rev-parse", "--git-path", marker)).exists():
                return what
        return None

    def committed(self, path: str, commit: str = "HEAD") -> bytes | None:
        """The bytes of `path` in `commit`, None when it is not there."""
        done = self.run("cat-file", "blob", f"{commit}:{path}", check=False)
        return done.stdout if done.returncode == 0 else None


def _secrets_shown(names: Sequence[str]) -> str:
    """The secrets a commit message names: each, or their number when more than four."""
    return ", ".join(names) if len(names) <= 4 else f"{len(names)} secrets"


def _undo_message(op: str, names: Sequence[str], txid: str, why: str) -> bytes:
    """The message of a commit that puts the previous values back."""
    text = f"keyroll: undo the {op} of {_secrets_shown(names)}\n\n{why}\n\n{TRAILER}: {txid}-undo\n"
    return text.encode("utf-8")


class Publisher:
    """The [gitops] side of one writing command."""

    def __init__(self, policy: Policy, store: Store, journal: Journal | None) -> None:
        assert policy.gitops is not None and policy.gitops_repo is not None
        self.policy = policy
        self.config = policy.gitops
        self.store = store
        self.journal = journal
        self.given = policy.gitops_repo
        self.git = Git(self.given, policy.env, self.config.author)
        self._top: Path | None = None
        remote, _, branch = self.config.push.partition(" ")
        self.remote, self.branch = remote.strip(), branch.strip()

    # --- where things go ----------------------------------------------------------------

    @property
    def top(self) -> Path:
        """The work tree's top folder; RepoNotReady when `repo` is not a git work tree."""
        if self._top is None:
            if not self.given.is_dir():
                raise RepoNotReady(f"gitops.repo: {self.given} is not a folder (clone the fleet repository there)")
            trust.refuse(trust.check_folder(self.given, "gitops.repo"))
            done = self.git.run("rev-parse", "--show-toplevel", "--absolute-git-dir", check=False)
            if done.returncode != 0:
                raise RepoNotReady(f"gitops.repo: {self.given} is not a git work tree ({git_message(done.stderr)})")
            top, _, git_dir = done.stdout.decode().strip().partition("\n")
            self.git.repo = Path(top)
            found = trust.check_folder(Path(top), "gitops.repo")
            found += trust.check_folder(Path(git_dir), "git folder of gitops.repo")
            for path in self.git.config_files():
                found += trust.check_file(path, "git configuration of gitops.repo")
            trust.refuse(found)  # (someone else could make git run a program of theirs, as keyroll's user)
            self._top = Path(top)
        return self._top

    def folder(self) -> Path:
        """`repo/path`, refused when it (or a folder on the way) is a symlink or leaves the repository."""
        top = self.top
        relative = self.config.path.strip("/")
        current = top
        for part in [p for p in relative.split("/") if p and p != "."]:
            current = current / part
            if current.is_symlink():
                raise RepoNotReady(f"gitops.path: {current} is a symlink; keyroll writes only into real folders")
        return current

    def _prefix(self) -> str:
        """`gitops.path` inside the repository, as the start of a repository path."""
        relative = self.folder().relative_to(self.top).as_posix()
        return "" if relative == "." else relative + "/"

    def _is_manifest(self, path: str, name: str) -> bool:
        return path == f"{self._prefix()}{KUBERNETES_FOLDER}/{name}"

    def file_names(self) -> dict[str, str]:
        """Repository path -> what it publishes: the store's bundle file, and under
        `kubernetes/` one encrypted Secret manifest per mapped Kubernetes Secret."""
        prefix = self._prefix()
        names: dict[str, str] = {}
        if "bundle" in self.config.publish:
            names[f"{prefix}{self.store.location.name}"] = self.store.location.name
        if "kubernetes" in self.config.publish:
            from keyroll.kube.manifests import secret_manifests

            for name in secret_manifests(self.policy, dict.fromkeys(self.policy.secrets, "-")):
                names[f"{prefix}{KUBERNETES_FOLDER}/{name}"] = name
        return names

    def contents(self) -> dict[str, bytes]:
        """Repository path -> bytes, as the store has them now (manifests encrypted anew)."""
        names = self.file_names()
        files: dict[str, bytes] = {}
        if "bundle" in self.config.publish:
            read = getattr(self.store, "read_ciphertext", None)
            data = read() if callable(read) else None
            if data is None:
                raise GitError(f"{self.store.location}: no bundle to publish")
            files.update({path: data for path, name in names.items() if name == self.store.location.name})
        if "kubernetes" in self.config.publish:
            files.update(self._manifests(names))
        return files

    def _manifests(self, names: Mapping[str, str]) -> dict[str, bytes]:
        """Each mapped Kubernetes Secret as a manifest SOPS-encrypts it for Flux (data only,
        to the age recipients of the store's .sops.yaml)."""
        from keyroll.kube.manifests import encrypted_manifests
        from keyroll.store.sops import sops_config_recipients

        try:
            recipients = sops_config_recipients(self.policy, "the Secret manifests are encrypted to its recipients")
        except ConfigError as exc:
            raise GitError(str(exc)) from None
        values, errors = self.store.read_all(list(self.policy.secrets))
        if errors:
            raise GitError(next(iter(errors.values())))
        by_name = {name: path for path, name in names.items()}
        encrypted = encrypted_manifests(self.policy, values, recipients, lambda name: self.top / by_name[name])
        return {by_name[name]: data for name, data in encrypted.items()}

    def _write(self, files: Mapping[str, bytes]) -> None:
        """Each file into its folder of the work tree, atomically (folders made as needed)."""
        folders: dict[Path, dict[str, bytes]] = {}
        for path, data in files.items():
            folders.setdefault(self.top / Path(path).parent, {})[Path(path).name] = data
        for folder, batch in folders.items():
            if folder.is_symlink():
                raise RepoNotReady(f"gitops.path: {folder} is a symlink; keyroll writes only into real folders")
            folder.mkdir(parents=True, exist_ok=True)
            write_files_atomically(folder, batch, mode=0o644)

    # --- before any change ----------------------------------------------------------------

    def check_ready(self) -> None:
        """Refuse (exit 2, one line) a repository that cannot take keyroll's commit now:
        not a work tree, no branch checked out, a merge, rebase or cherry-pick in
        progress, uncommitted changes in the published files, or (with `push`)
        commits not on the remote that keyroll did not make."""
        top = self.top
        if (what := self.git.in_progress()) is not None:
            raise RepoNotReady(f"gitops.repo: {top}: a {what} is in progress; finish or abort it first")
        if self.git.run("symbolic-ref", "-q", "HEAD", check=False).returncode != 0:
            raise RepoNotReady(f"gitops.repo: {top}: no branch is checked out (detached HEAD)")
        if self.remote and self.git.run("remote", "get-url", "--", self.remote, check=False).returncode != 0:
            raise RepoNotReady(f"gitops.push: {top} has no remote named {self.remote!r} (git remote -v)")
        if self.remote and (foreign := self.foreign_commits()):
            raise RepoNotReady(
                f"gitops.repo: {top}: {len(foreign)} commit(s) not on {self.remote} {self.branch} are not keyroll's "
                f"(first: {foreign[-1]}); push or drop them first: keyroll pushes only its own commits"
            )
        paths = list(self.file_names())
        dirty = self.git.run("status", "--porcelain=v1", "--untracked-files=all", "--", *paths).stdout
        if dirty.strip():
            raise RepoNotReady(f"gitops.repo: {top}/{paths[0]}: has uncommitted changes; commit or discard them first")

    def foreign_commits(self) -> list[str]:
        """The commits ("SHA subject", newest first) a push of HEAD would take to the remote
        branch that keyroll did not make (a person's unpushed work, another branch's).  Judged
        by the remote-tracking branch as last fetched; without one, by every branch of the remote."""
        tracking = f"refs/remotes/{self.remote}/{self.branch}"
        if self.git.run("rev-parse", "-q", "--verify", tracking, check=False).returncode == 0:
            scope = [f"{tracking}..HEAD"]
        else:
            scope = ["HEAD", "--not", f"--remotes={self.remote}"]
        done = self.git.run("log", "--format=%h %s", "--invert-grep", f"--grep=^{TRAILER}: ", *scope, "--", check=False)
        return done.stdout.decode("utf-8", errors="replace").splitlines() if done.returncode == 0 else []

    def planned(self) -> list[str]:
        """The files a change would commit (for `rotate --dry-run`)."""
        return [str(self.given / path) if self._top is None else str(self.top / path) for path in self.file_names()]

    # --- the publish --------------------------------------------------------------------

    def _save(self, state: PublishState | None) -> None:
        if self.journal is not None:
            self.journal.set_meta({PUBLISH_KEY: state.dump() if state else ""})

    def state(self) -> PublishState | None:
        return PublishState.load(self.journal.get_meta(PUBLISH_KEY) if self.journal else None)

    def publish(
        self,
        txid: str,
        op: str,
        names: list[str],
        values: Collection[str],
        failpoint: Callable[[str], None] = lambda step: None,
    ) -> Published:
        """Write, check, commit and (with `push`) push the store's files: one commit.
        Journals each step first.  GitConflict (1), GitUnreachable (75), GitError (1)."""
        import time

        started = time.perf_counter()
        state = self.state()
        if state is not None and state.txid == txid and state.phase == "pushed":
            # Recovery driving forward what already reached the remote: the fleet may be deploying
            # it, so nothing is published again (the store may hold the same values encrypted anew).
            return Published(None, True, tuple(state.files), time.perf_counter() - started)
        files = self.contents()
        paths = list(files)
        if state is None or state.txid != txid:
            state = PublishState(txid, op, sorted(names), paths, base=self.git.head())
        else:  # (recovery driving forward: the same transaction publishes again)
            state.names = sorted(set(state.names) | set(names))
        journaled = state
        sha = self._commit(
            files, self._message(state), values, before_write=lambda: self._save(journaled), failpoint=failpoint
        )
        if sha is not None:
            state.phase, state.shas = "commit", [*state.shas, sha]
            self._save(state)
            failpoint("git-commit")
        pushed = False
        if self.remote:
            self._push(state)
            pushed = True
            failpoint("git-push")
        if self.journal is not None and (sha or pushed):
            where = f"pushed to {self.remote} {self.branch}" if pushed else "not pushed (no gitops.push)"
            detail = f"commit {sha or self.git.head()} in {self.top}, {where}"
            self.journal.add_history(txid, "gitops", op, "published", detail)
        return Published(sha, pushed, tuple(paths), time.perf_counter() - started)

    def _commit(
        self,
        files: Mapping[str, bytes],
        message: bytes,
        values: Collection[str],
        *,
        before_write: Callable[[], None] = lambda: None,
        failpoint: Callable[[str], None] = lambda step: None,
    ) -> str | None:
        """Refuse `files` if any looks like plaintext (PlaintextRefused: nothing written),
        then write them into the work tree, stage exactly them and commit them with
        `message`; the new commit's id, None when the repository already held them."""
        for path, data in files.items():
            if problem := plaintext_problem(path, data, values):
                raise PlaintextRefused(problem)
        before_write()
        self._write(files)
        failpoint("git-write")
        paths = list(files)
        self.git.run("add", "--", *paths)
        if self.git.run("diff", "--cached", "--quiet", "--", *paths, check=False).returncode == 0:
            return None
        self.git.run("commit", "--no-verify", "--quiet", "--only", "-F", "-", "--", *paths, input=message)
        return self.git.head()

    def _message(self, state: PublishState) -> bytes:
        verb = {"rotate": "rotate", "set": "set", "restore": "restore", "rollback": "roll back", "init": "create"}
        lines = [
            f"keyroll: {verb.get(state.op, state.op)} {_secrets_shown(state.names)}",
            "",
            f"By `keyroll {state.op}` on {socket.gethostname()}; the files hold encrypted values only.",
            "",
            "Secrets:",
            *(f"- {name}" for name in state.names),
            "",
            f"{TRAILER}: {state.txid}",
        ]
        return ("\n".join(lines) + "\n").encode("utf-8")

    def _push(self, state: PublishState, record: bool = True) -> None:
        """Push HEAD to the remote branch; on a rejection, fetch and rebase onto it, a few
        times.  With `record`, each commit id is journaled before it is pushed."""
        refspec = f"HEAD:refs/heads/{self.branch}"
        for attempt in range(PUSH_TRIES):
            state.phase = "push"
            head = self.git.head()
            if head and head not in state.shas:
                state.shas.append(head)
            if record:
                self._save(state)
            done = self.git.run(
                "push",
                "--porcelain",
                "--no-verify",
                RECEIVE_PACK,
                self.remote,
                refspec,
                check=False,
                timeout=NETWORK_TIMEOUT,
            )
            if done.returncode == 0:
                state.phase = "pushed"
                if record:
                    self._save(state)
                return
            report = done.stdout.decode("utf-8", errors="replace")
            if not any(line.startswith("!") for line in report.splitlines()):
                raise GitUnreachable(f"gitops.push: {self.remote} cannot be reached ({git_message(done.stderr)})")
            if "remote rejected" in report:
                raise GitConflict(f"gitops.push: {self.remote} refused the push ({git_message(done.stdout)})")
            if attempt == PUSH_TRIES - 1:
                break
            self._rebase_onto_remote()
        raise GitConflict(f"gitops.push: {self.remote} {self.branch} still refused the push after {PUSH_TRIES} tries")

    def fetch(self) -> str:
        """Fetch the remote branch; its commit id ("" when the branch does not exist yet)."""
        done = self.git.run(
            "fetch", "--quiet", "--no-tags", UPLOAD_PACK, self.remote, self.branch, check=False, timeout=NETWORK_TIMEOUT
        )
        if done.returncode != 0:
            if b"couldn't find remote ref" in done.stderr:
                return ""
            raise GitUnreachable(f"gitops.push: {self.remote} cannot be reached ({git_message(done.stderr)})")
        return self.git.out("rev-parse", "FETCH_HEAD")

    def _rebase_onto_remote(self) -> None:
        """Put keyroll's commit(s) on top of what the remote has: a rebase, never a merge.
        A conflict (the remote changed the published files too) is aborted: GitConflict."""
        upstream = self.fetch()
        if not upstream:
            return
        base = self.git.run("merge-base", "HEAD", upstream, check=False).stdout.decode().strip()
        paths = list(self.file_names())
        if base:  # (a change to the published files is a conflict even where git could merge the text)
            changed = self.git.out("diff", "--name-only", base, upstream, "--", *paths).split()
            if changed:
                raise GitConflict(
                    f"gitops.push: {self.remote} {self.branch} changed what keyroll publishes ({', '.join(changed[:3])}); "
                    "resolve it in the repository, then rotate again"
                )
        done = self.git.run("rebase", "--autostash", "--no-verify", upstream, check=False)
        if done.returncode == 0:
            return
        conflicted = self.git.out("diff", "--name-only", "--diff-filter=U").split()
        if self.git.in_progress():
            self.git.run("rebase", "--abort", check=False)
        shown = ", ".join(conflicted[:3]) or git_message(done.stderr)
        raise GitConflict(
            f"gitops.push: {self.remote} {self.branch} changed what keyroll publishes ({shown}); "
            "resolve it in the repository, then rotate again"
        )

    # --- undoing -------------------------------------------------------------------------

    def ours_in_head(self, state: PublishState) -> bool:
        """Whether HEAD's history holds this transaction's commit."""
        if not self.git.head():
            return False
        found = self.git.run("rev-list", "-n1", "-F", f"--grep={TRAILER}: {state.txid}", "HEAD", check=False)
        return bool(found.stdout.strip())

    def republish(self, names: list[str], op: str, values: Collection[str]) -> str | None:
        """After a rollback that came after the push: a new commit with the store's
        current files (the previous values), pushed like any publish.  Returns its id."""
        files = self.contents()
        state = self.state() or PublishState("-", op, sorted(names), list(files))
        why = "Their consumers failed after the change; the files hold the previous values again (encrypted)."
        sha = self._commit(files, _undo_message(op, names, state.txid, why), values)
        if sha is None:
            return None
        if self.remote:
            undo = PublishState(state.txid, op, sorted(names), list(files), base=sha, shas=[sha])
            self._push(undo, record=False)  # (the journal keeps saying the rotation itself was pushed)
        return sha

    def unpublish(self, reason: str, values: Collection[str]) -> str | None:
        """After the store went back to the old values: take the change back out of the
        repository.  A commit already made is undone by a new commit (never a reset,
        never a force-push; it is not pushed now; refused like any commit when a file
        holds one of `values` in the clear); files written but not committed are
        restored.  Returns the undo commit's id, if one was made."""
        state = self.state()
        if state is None:
            return None
        if self.git.in_progress() == "rebase":
            self.git.run("rebase", "--abort", check=False)
        sha = None
        if self.ours_in_head(state):
            why = f"{reason[:300]}\nThe files hold the previous values again (encrypted)."
            sha = self._commit(self.contents(), _undo_message(state.op, state.names, state.txid, why), values)
        else:
            for path in state.files:
                self.git.run("reset", "--quiet", "--", path, check=False)
                if self.git.committed(path) is not None:
                    self.git.run("checkout", "--", path, check=False)
                else:
                    (self.top / path).unlink(missing_ok=True)
        self._save(None)
        return sha

    def done(self) -> None:
        """The transaction ended: forget the publish."""
        self._save(None)

    # --- recovery -------------------------------------------------------------------------

    def direction(self, txids: Collection[str]) -> dict[str, str]:
        """For recovery of the transactions `txids` still in flight: txid -> "forward"
        (the commit reached the remote: the fleet may be deploying it) or "back" (it
        did not, or there is no remote); GitUnreachable when it cannot be told."""
        state = self.state()
        if state is None:
            return {}
        if state.txid not in txids:
            self._save(None)  # (the transaction ended; only forgetting it was interrupted)
            return {}
        if state.phase == "pushed":
            return {state.txid: "forward"}
        if state.phase == "push" and state.shas:
            upstream = self.fetch()
            for sha in state.shas:
                if upstream and self.git.run("merge-base", "--is-ancestor", sha, upstream, check=False).returncode == 0:
                    if self.git.in_progress() == "rebase":
                        self.git.run("rebase", "--abort", check=False)
                    state.phase = "pushed"
                    self._save(state)
                    return {state.txid: "forward"}
        return {state.txid: "back"}

    # --- status ----------------------------------------------------------------------------

    def repo_state(
        self,
        values: Mapping[str, str | None],
        decrypt: Callable[[bytes, str, str], Mapping[str, object]] | None = None,
    ) -> RepoState:
        """Whether the repository's last commit holds the store's current `values` (as
        `status` read them), and what is not pushed; never encrypting anything.  The
        bundle: the store's bytes, or (with `decrypt(bytes, format, where)`) the same
        values; each Secret manifest (with `decrypt`): decrypted, the Secret holding them."""
        from keyroll.kube.manifests import holds_data, secret_data

        try:
            top = self.top
            names = self.file_names()
            expected: dict[str, tuple[str, str, dict[str, str]]] = {}
            if "kubernetes" in self.config.publish:
                wanted = secret_data(self.policy, values)
                expected = {
                    path: wanted[name]
                    for path, name in names.items()
                    if name in wanted and self._is_manifest(path, name)
                }
            bundle: tuple[str, bytes] | None = None
            if "bundle" in self.config.publish:
                read = getattr(self.store, "read_ciphertext", None)
                data = read() if callable(read) else None
                if data is None:
                    raise GitError(f"{self.store.location}: no bundle to publish")
                bundle = (self._prefix() + self.store.location.name, data)
        except KeyrollError as exc:
            return RepoState(str(self.given), (), None, str(exc))
        behind = []
        if bundle is not None:
            path, data = bundle
            committed = self.git.committed(path)
            if committed != data and not (
                committed is not None and decrypt is not None and self._holds(decrypt, committed, path, values)
            ):
                behind.append(path)
        for path, (namespace, name, data) in expected.items():
            committed = self.git.committed(path)
            try:
                if (
                    committed is not None
                    and decrypt is not None
                    and holds_data(decrypt(committed, "yaml", path), namespace, name, data)
                ):
                    continue
            except KeyrollError:
                pass
            behind.append(path)
        detail = "holds the store's current values" if not behind else f"{', '.join(behind)} differ from the store"
        unpushed = ""
        if self.remote:
            tracking = f"refs/remotes/{self.remote}/{self.branch}"
            done = self.git.run("rev-list", "--count", f"{tracking}..HEAD", check=False)
            if done.returncode == 0:
                count = int(done.stdout.strip() or 0)
                unpushed = f"; {count} commit(s) not pushed to {self.remote} {self.branch}" if count else "; pushed"
        files = (*((bundle[0],) if bundle else ()), *expected)
        return RepoState(str(top), files, not behind, detail + unpushed)

    def _holds(
        self,
        decrypt: Callable[[bytes, str, str], Mapping[str, object]],
        committed: bytes,
        path: str,
        values: Mapping[str, str | None],
    ) -> bool:
        """Whether a committed bundle, decrypted, holds `values` (each secret of the policy)."""
        try:
            held = decrypt(committed, getattr(self.store, "format", "yaml"), f"the committed bundle {path}")
        except KeyrollError:
            return False
        return all(held.get(name) == values.get(name) for name in self.policy.secrets)


# --- waiting for the fleet ------------------------------------------------------------


def held(journal: Journal) -> dict[str, str]:
    """Secrets whose old credential stays until the fleet converges: name -> since."""
    try:
        data = json.loads(journal.get_meta(CONVERGE_KEY) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def hold(journal: Journal, names: Collection[str], since: str) -> None:
    current = held(journal)
    current.update(dict.fromkeys(names, since))
    journal.set_meta({CONVERGE_KEY: json.dumps(current, sort_keys=True)})


def release(journal: Journal, names: Collection[str]) -> None:
    current = {k: v for k, v in held(journal).items() if k not in names}
    journal.set_meta({CONVERGE_KEY: json.dumps(current, sort_keys=True)})


class FleetWait:
    """Waits for secrets' `converge` checks, with one deadline shared by the whole
    command (the fleet deploys one commit, not one per secret)."""

    def __init__(
        self,
        timeout: float,
        check: Callable[[tuple[str, ...], str, float], Sequence[object]],
        failpoint: Callable[[str], None] = lambda step: None,
        builtin: Callable[[str, str], str | None] = lambda name, spec: None,
    ) -> None:
        self.timeout = timeout
        self._check = check
        self._failpoint = failpoint
        self._builtin = builtin  # (name, spec) -> why not yet: the checks keyroll runs itself (sessions:previous)
        self._deadline: float | None = None

    def wait(self, name: str, specs: tuple[str, ...]) -> str | None:
        """None once every check passes; else why the fleet is not there yet (one line)."""
        import time

        if not specs:
            return None
        if self._deadline is None:
            self._deadline = time.monotonic() + self.timeout
        self._failpoint("converge")
        own = [spec for spec in specs if spec == "sessions:previous"]
        while own:
            problems = [f"{spec}: {problem}" for spec in own if (problem := self._builtin(name, spec))]
            if not problems:
                break
            if time.monotonic() + 0.5 > self._deadline:
                return f"the fleet has not caught up within {self.timeout:g}s (converge check {problems[0]})"
            time.sleep(0.5)
        rest = tuple(spec for spec in specs if spec not in own)
        failures = self._check(rest, name, max(0.0, self._deadline - time.monotonic())) if rest else []
        if not failures:
            return None
        return f"the fleet has not caught up within {self.timeout:g}s (converge check {failures[0]})"


def fleet_warnings(policy: Policy) -> list[tuple[str, str]]:
    """(key path, warning) for each published secret whose consumers on other hosts
    fail from the rotation until they are deployed: no target, or a target with one
    valid credential at a time (`single`)."""
    if policy.gitops is None:
        return []
    from keyroll.targets import open_target

    found = []
    for secret in policy.secrets.values():
        if not secret.target or secret.target not in policy.targets:
            found.append(
                (
                    f"secrets.{secret.name}",
                    "published by [gitops] with no target: services on other hosts use the old value "
                    "until they are deployed, and nothing checks it",
                )
            )
        elif not open_target(policy, secret.target, secret.name, lambda name: None).keeps_old:  # (connects nowhere)
            found.append(
                (
                    f"secrets.{secret.name}",
                    f"published by [gitops] and [targets.{secret.target}] keeps one credential at a time: "
                    "consumers on other hosts fail from the rotation until they are deployed "
                    '(use a target that keeps two: Redis ACL, PostgreSQL strategy = "alternating", '
                    'MariaDB strategy = "dual")',
                )
            )
    return found
