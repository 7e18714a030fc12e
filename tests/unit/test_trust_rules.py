"""keyroll.trust: the StrictModes-like rules, on real folders, files, symlinks and
PATH lookups under tmp_path (a private folder of root's or the test user's)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from keyroll import trust
from keyroll.errors import UnsafePath
from tests_helpers import in_ci

STRANGER = 4242  # a uid with no account: chown to it needs root


def needs_root() -> None:
    if os.geteuid() != 0:
        message = "needs root: gives files to another uid"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def texts(found: list[trust.Unsafe]) -> str:
    return "\n".join(map(str, found))


def test_a_private_folder_and_a_missing_one_under_it_pass(tmp_path: Path) -> None:
    assert trust.check_folder(tmp_path, "x") == []
    assert trust.check_folder(tmp_path / "a" / "b", "x") == []


def test_a_folder_open_to_all_is_named_with_its_mode_and_fix(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    found = trust.check_folder(folder, "backup folder")
    assert len(found) == 1
    assert str(found[0]).startswith(f"unsafe backup folder: {folder} is owned by ")
    assert f"mode 0777; `chmod 0700 {folder}`" in str(found[0])
    # and the same folder as a parent of another one (not sticky)
    assert f"its parent {folder}" in texts(trust.check_folder(folder / "inner", "x"))


def test_a_sticky_folder_is_a_fine_parent_but_never_the_folder(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    assert trust.check_folder(shared / "mine", "x") == []
    assert "mode 1777" in texts(trust.check_folder(shared, "x"))


def test_a_symlink_is_followed_and_its_target_checked(tmp_path: Path) -> None:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    (open_folder / "real").mkdir()
    link = tmp_path / "link"
    link.symlink_to(open_folder / "real")
    found = texts(trust.check_folder(link, "x"))
    assert f"{link}: its parent {open_folder}" in found
    # a relative symlink and '..' resolve the way the kernel does
    (tmp_path / "private").mkdir()
    rel = tmp_path / "private" / "rel"
    rel.symlink_to("../open/real")
    assert f"its parent {open_folder}" in texts(trust.check_folder(rel, "x"))
    assert f"its parent {open_folder}" in texts(trust.check_folder(tmp_path / "private" / ".." / "open" / "x", "x"))


def test_files_and_symlinks_of_another_uid_are_named(tmp_path: Path) -> None:
    needs_root()
    program = tmp_path / "prog"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o644)
    os.chown(program, STRANGER, STRANGER)
    assert f"{program} is owned by uid {STRANGER}, mode 0644; `chown root {program}`" in texts(
        trust.check_file(program, "x")
    )
    mine = tmp_path / "mine"
    mine.write_text("")
    link = tmp_path / "link"
    link.symlink_to(mine)
    os.chown(link, STRANGER, STRANGER, follow_symlinks=False)
    assert f"{link} leads through the symlink {link}, which is owned by uid {STRANGER}" in texts(
        trust.check_file(link, "x")
    )


def test_a_program_is_found_on_the_path_keyroll_hands_on(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tool").write_text("#!/bin/sh\n")
    (bin_dir / "tool").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    assert trust.check_program(["tool", "--flag"], "p", env) == []
    assert trust.check_program(["no-such-tool-here"], "p", env) == []  # (reported as missing elsewhere)
    assert trust.check_program(["sh", "-c", "true"], "p", env) == []  # root's /bin/sh: fine
    bin_dir.chmod(0o777)
    assert f"{bin_dir / 'tool'}: its parent {bin_dir}" in texts(trust.check_program(["tool"], "p", env))


def test_an_interpreter_s_script_and_env_s_program_are_checked(tmp_path: Path) -> None:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    script = open_folder / "check.py"
    script.write_text("")
    open_folder.chmod(0o777)
    env = {"PATH": "/usr/bin:/bin"}
    for argv in (["sh", str(script)], ["/bin/sh", "-e", str(script)], ["python3", str(script)]):
        assert f"{script}: its parent {open_folder}" in texts(trust.check_program(argv, "p", env)), argv
    assert trust.check_program(["cat", str(script)], "p", env) == []  # a data argument, not a program
    for argv in (
        ["python3", "-W", "ignore", str(script)],
        ["perl", "-I", str(open_folder), "/dev/null"],
        ["node", f"--require={script}", "/dev/null"],
    ):
        assert f"{open_folder} is owned by root (uid 0), mode 0777" in texts(trust.check_program(argv, "p", env)), argv
    (tmp_path / "safe.py").write_text("")
    assert (
        trust.check_program(["python3", str(tmp_path / "safe.py"), str(script)], "p", env) == []
    )  # (the script's own argument)
    (open_folder / "prog").write_text("")
    (open_folder / "prog").chmod(0o755)
    found = texts(trust.check_program(["env", "-i", "A=1", str(open_folder / "prog")], "p", env))
    assert f"its parent {open_folder}" in found
    found = texts(trust.check_program(["env", f"PATH={open_folder}:/usr/bin", "prog"], "p", env))
    assert f"{open_folder / 'prog'}: its parent {open_folder}" in found  # (found on the PATH env sets)
    found = texts(trust.check_program(["env", f"LD_PRELOAD={script}", "true"], "p", env))
    assert f"unsafe LD_PRELOAD of p: {script}: its parent {open_folder}" in found


def test_path_folders_searched_before_the_program_are_checked(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
    (second / "tool").write_text("#!/bin/sh\n")
    (second / "tool").chmod(0o755)
    first.chmod(0o777)  # anyone may add a `tool` here, found before the real one
    found = texts(trust.check_program(["tool"], "p", {"PATH": f"{first}:{second}"}))
    assert f"PATH folder searched for `tool` (p): {first} is owned by root (uid 0), mode 0777" in found
    assert f"take {first} off keyroll's PATH" in found
    assert trust.check_program(["tool"], "p", {"PATH": f"{second}:{first}"}) == []  # never searched
    assert f"{first} is owned" in texts(trust.check_program(["no-such-tool"], "p", {"PATH": f"{first}:{second}"}))
    assert trust.check_program([str(second / "tool")], "p", {"PATH": f"{first}"}) == []  # a full path: no search


def test_the_programs_of_a_shell_command_string_are_checked(tmp_path: Path) -> None:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    program = open_folder / "reload"
    program.write_text("")
    program.chmod(0o755)
    open_folder.chmod(0o777)
    env = {"PATH": "/usr/bin:/bin"}
    for command in (
        f"{program} now",
        f"A=1 exec {program}",
        f"true && {program}",
        f"echo x | {program}; true",
        f"env B=2 {program}",
    ):
        for flags in (["-c"], ["-ec"], ["-e", "-c"], ["--login", "-c"]):
            found = texts(trust.check_program(["sh", *flags, command], "p", env))
            assert f"its parent {open_folder}" in found, (flags, command)
    assert trust.check_program(["sh", "-c", "true && echo 'a b' | cat"], "p", env) == []
    assert trust.check_program(["sh", "-c", "unbalanced 'quote"], "p", env) == []  # (reported by the config check)


def test_the_program_a_wrapper_runs_is_checked(tmp_path: Path) -> None:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    program = open_folder / "reload"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    open_folder.chmod(0o777)
    env = {"PATH": "/usr/bin:/bin"}
    for argv in (
        ["timeout", "10", str(program)],
        ["nice", "-n", "5", str(program), "now"],
        ["/usr/bin/setsid", "-f", str(program)],
        ["timeout", "5", "sh", "-c", f"exec {program}"],
    ):
        assert f"its parent {open_folder}" in texts(trust.check_program(argv, "p", env)), argv
    assert trust.check_program(["timeout", "10", "true"], "p", env) == []
    assert trust.check_program(["flock", str(tmp_path), "true"], "p", env) == []  # (a folder: not the program)


def test_files_a_program_is_made_to_load_are_checked(tmp_path: Path) -> None:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    (open_folder / "evil.so").write_text("")
    open_folder.chmod(0o777)
    for name in ("LD_PRELOAD", "PYTHONPATH", "BASH_ENV", "LD_LIBRARY_PATH"):
        env = {"PATH": "/usr/bin", name: f"/usr/lib:{open_folder / 'evil.so'}"}
        found = texts(trust.check_loaded_files(env, "targets.x.argv"))
        assert f"unsafe {name} of targets.x.argv: {open_folder / 'evil.so'}: its parent {open_folder}" in found
    assert trust.check_loaded_files({"PATH": "/usr/bin", "LANG": "C", "PYTHONPATH": "/usr/lib"}, "t") == []


def test_state_files_must_be_own_regular_files_never_followed(tmp_path: Path) -> None:
    mine = tmp_path / "journal.sqlite3"
    mine.write_bytes(b"")
    mine.chmod(0o600)
    assert trust.state_file_problem(mine) is None
    link = tmp_path / "writer.lock"
    link.symlink_to(mine)
    problem = trust.state_file_problem(link)
    assert problem is not None and "is a symlink" in str(problem)
    with pytest.raises(OSError) as caught:
        trust.open_state_file(link, os.O_RDONLY)
    assert caught.value.errno == errno.ELOOP
    fd = trust.open_state_file(tmp_path / "fresh.lock", os.O_RDWR | os.O_CREAT)
    os.close(fd)
    assert (tmp_path / "fresh.lock").stat().st_mode & 0o777 == 0o600


def test_a_state_file_of_another_uid_is_refused_after_opening_it(tmp_path: Path) -> None:
    needs_root()
    lock = tmp_path / "writer.lock"
    lock.write_text("")
    os.chown(lock, STRANGER, STRANGER)
    with pytest.raises(UnsafePath, match=f"writer.lock is owned by uid {STRANGER}"):
        trust.open_state_file(lock, os.O_RDWR | os.O_CREAT)


def test_refuse_names_the_first_and_counts_the_rest(tmp_path: Path) -> None:
    trust.refuse([])
    one = trust.Unsafe(tmp_path, "x", "a problem", "a fix")
    with pytest.raises(UnsafePath) as caught:
        trust.refuse([one, one, one])
    assert str(caught.value) == "unsafe x: a problem; a fix (and 2 more: `keyroll validate` lists them)"
    assert caught.value.exit_code == 2


def test_ensure_dir_creates_private_folders_and_refuses_open_ones(tmp_path: Path) -> None:
    from keyroll.fsutil import ensure_dir

    ensure_dir(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").stat().st_mode & 0o7777 == 0o700
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    with pytest.raises(UnsafePath, match=f"unsafe rendered folder: {open_folder} is owned by .* mode 0777"):
        ensure_dir(open_folder, enforce=True, purpose="rendered folder")
    assert open_folder.stat().st_mode & 0o7777 == 0o777  # refused, not changed behind the user's back
    with pytest.raises(UnsafePath, match=f"its parent {open_folder}"):
        ensure_dir(open_folder / "inner")
    assert not (open_folder / "inner").exists()


def test_a_folder_made_by_someone_else_while_keyroll_creates_it_is_never_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a shared sticky folder, another user may create the missing part of a
    path between keyroll's check and its mkdir: a symlink of hers to a folder of
    root's must not get that folder chmodded, a folder of hers must not be entered."""
    needs_root()
    from keyroll import fsutil

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim"
    (victim / "state").mkdir(parents=True)
    (victim / "state").chmod(0o755)
    real_mkdir = os.mkdir

    def planted(kind: str):  # type: ignore[no-untyped-def]
        def mkdir(path, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
            target = shared / "kr"
            if not os.path.lexists(target):  # (her move, just before keyroll's mkdir)
                if kind == "symlink":
                    target.symlink_to(victim)
                else:
                    real_mkdir(target, 0o755)
                os.chown(target, STRANGER, STRANGER, follow_symlinks=False)
            return real_mkdir(path, mode, dir_fd=dir_fd)

        return mkdir

    for kind in ("symlink", "folder"):
        monkeypatch.setattr(os, "mkdir", planted(kind))
        with pytest.raises(UnsafePath) as refused:
            fsutil.ensure_dir(shared / "kr" / "state", purpose="state folder")
        monkeypatch.setattr(os, "mkdir", real_mkdir)
        assert oct((victim / "state").stat().st_mode & 0o7777) == oct(0o755), kind  # never chmodded
        assert f"unsafe state folder: {shared / 'kr'} appeared while keyroll was creating it" in str(refused.value)
        if kind == "symlink":
            (shared / "kr").unlink()
        else:
            assert os.listdir(shared / "kr") == []  # nothing made inside hers
            (shared / "kr").rmdir()


def test_a_fifo_in_place_of_a_state_file_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "fingerprint.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(UnsafePath, match="is not a regular file"):
        trust.open_state_file(fifo, os.O_RDONLY)


def test_a_relative_program_is_looked_for_where_programs_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Programs run in `/`: `command:bin/x` found only under keyroll's current folder
    is reported missing (it would not be found when run)."""
    from keyroll.consumers import missing_program

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "x").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "x").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert missing_program("command:bin/x") == "bin/x: not found or not executable"
    assert missing_program(f"command:{tmp_path / 'bin' / 'x'}") is None
    assert trust.resolve_program("bin/x", {}) is None


def test_a_parent_of_another_user_is_left_to_her(tmp_path: Path) -> None:
    """A folder of hers on the way (her home): the fix is to choose a place outside
    it, not to take it from her; a non-file state entry still names owner and mode."""
    needs_root()
    hers = tmp_path / "her-home"
    (hers / "bin").mkdir(parents=True)
    hers.chmod(0o755)
    os.chown(hers, STRANGER, STRANGER)
    found = texts(trust.check_folder(hers / "bin", "x"))
    assert (
        f"its parent {hers} is owned by uid {STRANGER}, mode 0755; choose a place outside it (or `chown root" in found
    )
    os.mkfifo(tmp_path / "journal.sqlite3")
    problem = trust.state_file_problem(tmp_path / "journal.sqlite3")
    assert problem is not None and "is not a regular file, owned by root (uid 0), mode 0" in str(problem)


def test_the_interpreter_a_script_names_on_its_first_line_is_checked(tmp_path: Path) -> None:
    """A root-owned script whose `#!` line names a python of someone else's (a venv in
    an open folder): that python runs as root."""
    open_folder = tmp_path / "venv"
    (open_folder / "bin").mkdir(parents=True)
    python = open_folder / "bin" / "python"
    python.write_text("")
    python.chmod(0o755)
    open_folder.chmod(0o777)
    script = tmp_path / "reload"
    env = {"PATH": "/usr/bin:/bin"}
    for line in (f"#!{python}\n", f"#! {python} -u\n"):
        script.write_text(line + "print('reloaded')\n")
        script.chmod(0o755)
        assert f"its parent {open_folder}" in texts(trust.check_program([str(script)], "p", env)), line
    script.write_text("#!/usr/bin/env python\nprint('reloaded')\n")  # (found on the PATH keyroll hands on)
    found = texts(trust.check_program([str(script)], "p", {"PATH": f"{open_folder / 'bin'}:/usr/bin"}))
    assert f"{python}: its parent {open_folder}" in found
    script.write_text(f"#!{script}\n")  # (a loop: the kernel refuses it, the check ends)
    assert trust.check_program([str(script)], "p", env) == []
    script.write_text("#!/bin/sh\nexit 0\n")
    assert trust.check_program([str(script)], "p", env) == []
    script.write_text("#!/usr/bin/env sh\nexit 0\n")
    assert trust.check_program([str(script)], "p", env) == []
