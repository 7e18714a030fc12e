"""[gitops] in a repository others may have configured.

keyroll runs git (often as root) in a clone of the fleet repository: a program
named by that clone's git configuration (a filter driver `git add` would run, a
receive-pack a push would start, a merge driver, a hook) must never run, and a
clone another user can write (its folder, its git folder, a git config file it
reads) is refused before any change, as keyroll refuses any file others can
change.  Real git, real sops, a bare repository as the remote (the `fleet` fixture,
tests/fleet.py)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from fleet import Fleet, colleague_pushes, git, init


def _program(root: Path, name: str) -> tuple[str, Path]:
    """A program that leaves a mark when it runs (and passes its input through)."""
    marker = root / f"ran-{name}"
    script = root / f"program-{name}"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\ncat\n")
    script.chmod(0o755)
    return str(script), marker


def test_no_program_named_by_the_clones_git_configuration_ever_runs(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    marks: dict[str, Path] = {}
    for key in (
        "filter.crypt.clean",
        "filter.crypt.smudge",
        "filter.lfsish.process",
        "remote.origin.receivepack",
        "remote.origin.uploadpack",
        "merge.ours.driver",
        "core.fsmonitor",
        "core.hooksPath",
        "core.editor",
        "sequence.editor",
        "core.pager",
        "gpg.program",
    ):
        program, marks[key] = _program(fleet.root, key)
        git(fleet.repo, "config", key, program)
    git(fleet.repo, "config", "filter.lfsish.required", "true")
    program, marks["filter.a=b.smudge"] = _program(fleet.root, "filter-with-equals")
    git(fleet.repo, "config", "filter.a=b.smudge", program)  # (`-c filter.a=b.smudge=` would not reach it)
    git(fleet.repo, "config", "commit.gpgSign", "true")
    attributes = "*.yaml filter=crypt merge=ours\n*.nix filter=lfsish\n*.md filter=a=b\n"
    (fleet.repo / ".git" / "info" / "attributes").write_text(attributes)
    hooks = fleet.repo / ".git" / "hooks"
    for hook in ("pre-commit", "post-commit", "commit-msg", "pre-push", "reference-transaction", "post-rewrite"):
        program, marks[hook] = _program(fleet.root, hook)
        (hooks / hook).write_text(Path(program).read_text())
        (hooks / hook).chmod(0o755)
    colleague_pushes(fleet, "hosts/db.nix", "{ db = true; }\n")  # (a fetch and a rebase, with a checkout)
    colleague_pushes(fleet, "README.md", "fleet, by a colleague\n")

    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 0, result.both
    assert kr(*fleet.cfg, "status").code == 0
    assert not [name for name, mark in marks.items() if mark.exists()]
    assert fleet.remote_file() == fleet.bundle.read_bytes()  # (no clean filter changed what was committed)
    assert fleet.remote_log()[:3] == ["keyroll: rotate db_password", "colleague: README.md", "colleague: hosts/db.nix"]
    assert fleet.accepted() == [fleet.values()["db_password"]]


def test_a_clone_someone_else_can_change_is_refused_before_any_change(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    before, head = fleet.values(), git(fleet.repo, "rev-parse", "HEAD")
    backups = sorted(os.listdir(fleet.root / "backups"))
    config = fleet.repo / ".git" / "config"
    other = fleet.root / "shared.gitconfig"
    other.write_text("[user]\n\tname = x\n")
    other.chmod(0o666)
    cases = [
        (lambda: config.chmod(0o664), lambda: config.chmod(0o644), f"git configuration of gitops.repo: {config}"),
        (lambda: (fleet.repo / ".git").chmod(0o777), lambda: (fleet.repo / ".git").chmod(0o755), "git folder"),
        (lambda: os.chown(fleet.repo, 65534, 65534), lambda: os.chown(fleet.repo, 0, 0), "gitops.repo"),
        (
            lambda: git(fleet.repo, "config", "include.path", str(other)),
            lambda: git(fleet.repo, "config", "--unset", "include.path"),
            str(other),
        ),
    ]
    for spoil, mend, named in cases:
        spoil()
        result = kr(*fleet.cfg, "rotate", "db_password")
        assert result.code == 2, result.both
        assert len(result.err.strip().splitlines()) == 1 and "unsafe" in result.err and named in result.err, result.both
        mend()
    assert fleet.values() == before and git(fleet.repo, "rev-parse", "HEAD") == head
    assert sorted(os.listdir(fleet.root / "backups")) == backups  # not even a backup
    assert kr(*fleet.cfg, "rotate", "db_password").code == 0


def test_commits_of_someone_elses_that_are_not_on_the_remote_are_never_pushed(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    before, remote_head = fleet.values(), git(fleet.remote, "rev-parse", "main")
    backups = sorted(os.listdir(fleet.root / "backups"))
    (fleet.repo / "hosts" / "wip.nix").write_text('{ password = "not for the fleet yet"; }\n')
    git(fleet.repo, "add", "hosts/wip.nix")
    git(fleet.repo, "commit", "--quiet", "-m", "wip: not reviewed")  # (a person's, never pushed)
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 2, result.both
    assert (
        len(result.err.strip().splitlines()) == 1 and "gitops.repo:" in result.err and "wip: not reviewed" in result.err
    )
    assert git(fleet.remote, "rev-parse", "main") == remote_head and fleet.values() == before
    assert sorted(os.listdir(fleet.root / "backups")) == backups  # not even a backup
    # A branch other than the one keyroll pushes to is the same: its commits would land on main.
    git(fleet.repo, "reset", "--quiet", "--hard", "origin/main")
    git(fleet.repo, "checkout", "--quiet", "-b", "feature")
    git(fleet.repo, "commit", "--quiet", "--allow-empty", "-m", "feature: half done")
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 2 and "feature: half done" in result.err, result.both
    git(fleet.repo, "checkout", "--quiet", "main")
    assert kr(*fleet.cfg, "rotate", "db_password").code == 0
    assert git(fleet.remote, "log", "--format=%s", "main").splitlines()[0] == "keyroll: rotate db_password"
    assert "wip: not reviewed" not in git(fleet.remote, "log", "--format=%s", "--all")


def test_a_detached_head_stops_before_any_change(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    backups = sorted(os.listdir(fleet.root / "backups"))
    git(fleet.repo, "checkout", "--quiet", "--detach")
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 2 and "gitops.repo:" in result.err and "detached HEAD" in result.err, result.both
    assert sorted(os.listdir(fleet.root / "backups")) == backups


def test_a_git_or_a_converge_check_others_can_change_is_refused(kr, fleet: Fleet, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    before = fleet.values()
    shared = fleet.root / "shared-bin"
    shared.mkdir()
    shared.chmod(0o777)
    check = shared / "fleet-runs-commit"
    check.write_text("#!/bin/sh\nexit 0\n")
    check.chmod(0o755)
    fleet.write_config(secrets_extra=f'converge = ["command:{check}"]')
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 2 and "secrets.db_password.converge" in result.err and str(shared) in result.err, result.both
    fleet.write_config()
    wrapper = shared / "git"
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/git "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shared}:{os.environ['PATH']}")
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 2 and "program of gitops" in result.err and str(shared) in result.err, result.both
    assert fleet.values() == before


def test_the_remote_only_ever_moves_forward(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    """Never a force-push, never a merge commit: the remote's own reflog shows each update
    of its branch as a fast-forward, through a rebase, a conflict and an unreachable spell."""
    git(fleet.remote, "config", "core.logAllRefUpdates", "always")
    init(kr, fleet)
    colleague_pushes(fleet, "hosts/db.nix", "{ db = true; }\n")
    assert kr(*fleet.cfg, "rotate", "all").code == 0
    colleague_pushes(fleet, "secrets/secrets.sops.yaml", "colleague\n")
    assert kr(*fleet.cfg, "rotate", "db_password").code == 1
    git(fleet.repo, "fetch", "--quiet", "origin")
    git(fleet.repo, "reset", "--quiet", "--keep", "origin/main")  # (docs/gitops.md: after a conflict)
    assert kr(*fleet.cfg, "rotate", "db_password").code == 0
    moved = fleet.remote.with_name("remote-away.git")
    fleet.remote.rename(moved)
    assert kr(*fleet.cfg, "rotate", "db_password").code == 75
    moved.rename(fleet.remote)
    assert kr(*fleet.cfg, "rotate", "db_password").code == 0
    updates = git(fleet.remote, "reflog", "show", "--format=%H %gs", "main").splitlines()
    assert len(updates) >= 6 and all(line.endswith(" push") for line in updates[:-1]), updates
    shas = [line.split()[0] for line in updates]
    for newer, older in itertools.pairwise(shas):
        git(fleet.remote, "merge-base", "--is-ancestor", older, newer)  # (a fast-forward each time)
    assert git(fleet.remote, "rev-list", "--merges", "main") == ""
    assert fleet.remote_file() == fleet.bundle.read_bytes()


def test_recovery_waits_for_the_fleet_once_not_twice(kr, krp, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    """Killed while waiting for the fleet: `recover` drives the rotation forward, which
    waits up to converge_timeout; the same secret is not waited for a second time."""
    import time

    flag = fleet.root / "deployed"
    fleet.write_config(gitops='converge_timeout = "3s"', secrets_extra=f'converge = ["command:test -f {flag}"]')
    init(kr, fleet)
    killed = krp(*fleet.cfg, "rotate", "db_password", env={"KEYROLL_FAILPOINT": "converge"})
    assert killed.code == -9, killed.both
    started = time.monotonic()
    result = krp(*fleet.cfg, "recover")
    took = time.monotonic() - started
    assert result.code == 75, result.both
    assert len([line for line in result.out.splitlines() if "the fleet has not caught up" in line]) == 1, result.out
    assert took < 5.5, f"recover waited {took:.1f}s for a 3s converge_timeout"
    flag.touch()
    assert kr(*fleet.cfg, "recover").code == 0


def test_core_sshcommand_of_the_clone_is_used_for_the_push(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    """A deploy key set with `git config core.sshCommand "ssh -i KEY"` (trusted: root's
    clone) is the transport: keyroll's batch-mode default must not replace it."""
    init(kr, fleet)
    log = fleet.root / "ssh.log"
    ssh = fleet.root / "fleet-ssh"  # (plays ssh: runs the remote command here, as sshd would)
    ssh.write_text(f'#!/bin/sh\necho "$@" >> {log}\nfor last; do :; done\nexec sh -c "$last"\n')
    ssh.chmod(0o755)
    git(fleet.repo, "config", "core.sshCommand", str(ssh))
    git(fleet.repo, "remote", "set-url", "origin", f"ssh://fleet.invalid{fleet.remote}")
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 0, result.both
    assert "fleet.invalid" in log.read_text() and fleet.remote_file() == fleet.bundle.read_bytes()


def test_an_ssh_failure_names_its_cause() -> None:
    from keyroll.gitenv import git_message

    stderr = (
        b"ssh: Could not resolve hostname fleet.invalid: Name or service not known\r\n"
        b"fatal: Could not read from remote repository.\n\n"
        b"Please make sure you have the correct access rights\nand the repository exists.\n"
    )
    assert git_message(stderr) == "ssh: Could not resolve hostname fleet.invalid: Name or service not known"


def test_a_submodules_git_configuration_runs_nothing_either(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    library = fleet.root / "library.git"
    git(fleet.root, "init", "--quiet", "--bare", "-b", "main", str(library))
    seed = fleet.root / "library-seed"
    git(fleet.root, "clone", "--quiet", str(library), str(seed))
    git(seed, "commit", "--quiet", "--allow-empty", "-m", "library: one")
    git(seed, "push", "--quiet", "origin", "main")
    allow = ("-c", "protocol.file.allow=always")
    git(fleet.repo, *allow, "submodule", "--quiet", "add", str(library), "library")
    git(fleet.repo, "commit", "--quiet", "-m", "fleet: the library")
    git(fleet.repo, "push", "--quiet", "origin", "main")
    program, mark = _program(fleet.root, "submodule-uploadpack")
    git(fleet.repo / "library", "config", "remote.origin.uploadpack", program)
    git(fleet.other, "pull", "--quiet", "--rebase", "origin", "main")
    git(fleet.other, *allow, "submodule", "--quiet", "update", "--init")
    git(seed, "commit", "--quiet", "--allow-empty", "-m", "library: two")
    git(seed, "push", "--quiet", "origin", "main")
    git(fleet.other / "library", "pull", "--quiet", "origin", "main")
    git(fleet.other, "commit", "--quiet", "-am", "fleet: library two")
    git(fleet.other, "push", "--quiet", "origin", "main")  # (keyroll's fetch would recurse into library)

    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 0, result.both
    assert not mark.exists()
    assert fleet.remote_log()[:2] == ["keyroll: rotate db_password", "fleet: library two"]


def test_git_variables_of_an_outer_git_never_point_keyroll_elsewhere(tmp_path: Path) -> None:
    """keyroll started from a git hook (or with GIT_OBJECT_DIRECTORY and the like set) still
    writes into the repository of gitops.repo, and only there."""
    from keyroll.gitops import Git

    repo, other = tmp_path / "repo", tmp_path / "other"
    git(tmp_path, "init", "--quiet", "-b", "main", str(repo))
    git(tmp_path, "init", "--quiet", "--bare", str(other))
    outer = {
        **os.environ,
        "GIT_DIR": str(other),
        "GIT_OBJECT_DIRECTORY": str(other / "objects"),
        "GIT_COMMON_DIR": str(other),
        "GIT_INDEX_FILE": str(tmp_path / "index"),
    }
    (repo / "bundle.yaml").write_text("sops: {}\n")
    Git(repo, outer).run("add", "--", "bundle.yaml")
    assert "bundle.yaml" in git(repo, "ls-files")
    assert not (tmp_path / "index").exists() and not any((other / "objects").glob("??/*"))
