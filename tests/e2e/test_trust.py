"""Trust boundaries, attacked as a hostile second user of the machine would: a real
second account (created here, removed after) owns folders, state files, the
config and programs keyroll would use.  keyroll must refuse each one before any
work (exit 2, one line naming the path, its owner and mode, and the fix),
`validate` and `config validate` must report it (exit 1), and nothing the other
user planted may run, fire or be killed for her.  Backups hold declared secrets
only."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest

BACKUP_PREFIX = "secrets_"


def give(path: Path, who: tuple[str, int, int]) -> None:
    os.chown(path, who[1], who[2], follow_symlinks=False)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def backups(home) -> list[Path]:  # type: ignore[no-untyped-def]
    return (
        sorted(p for p in home.backups.iterdir() if p.name.startswith(BACKUP_PREFIX)) if home.backups.exists() else []
    )


COMMAND_CONFIG = """\
[secrets.svc_password]
kind = "password"
target = "svc"
{extra}

[targets.svc]
type = "command"
argv = ["{program}"]
"""

SERVICE = """#!/bin/sh
# A stand-in service that accepts any value, and logs each call.
cat > /dev/null
echo "$KEYROLL_PHASE uid=$(id -u)" >> "{log}"
"""


def command_setup(home, kr, program: Path | None = None, extra: str = "") -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A config with one secret applied by a command target (a value set first)."""
    log = home.root / "service.log"
    if program is None:
        program = home.root / "bin" / "svc"
        program.parent.mkdir(exist_ok=True)
        program.write_text(SERVICE.format(log=log))
        program.chmod(0o755)
    home.write_config(COMMAND_CONFIG.format(program=program, extra=extra))
    result = kr("--config", str(home.config), "set", "svc_password", stdin="A" * 32 + "\n")
    assert result.code == 0, result.both
    return program, log


# --- folders and state files ---------------------------------------------------------------------------


def test_a_state_folder_of_another_user_is_refused_before_anything_is_made(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    home.state.mkdir(mode=0o700)
    give(home.state, other_user)
    result = kr("init")
    assert result.code == 2, result.both
    assert str(home.state) in result.err and other_user[0] in result.err and "mode 0700" in result.err
    assert f"chown root {home.state}" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert os.listdir(home.state) == []
    assert not home.secrets.exists() and not home.backups.exists()


def test_a_journal_planted_by_another_user_is_never_opened(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    """Her journal carries a trigger that copies every pending value into a table of
    hers: keyroll refuses it before SQLite opens it, so the trigger never fires."""
    from keyroll.journal import _SCHEMA

    home.state.mkdir(mode=0o700)
    journal = home.state / "journal.sqlite3"
    db = sqlite3.connect(journal)
    db.executescript(_SCHEMA)
    db.executescript(
        """
        INSERT INTO meta VALUES ('schema', '1');
        CREATE TABLE loot (name TEXT, value BLOB);
        CREATE TRIGGER steal AFTER INSERT ON inflight BEGIN INSERT INTO loot VALUES (NEW.name, NEW.pending); END;
        CREATE TRIGGER steal_too AFTER UPDATE ON inflight BEGIN INSERT INTO loot VALUES (NEW.name, NEW.pending); END;
        """
    )
    db.close()
    give(journal, other_user)
    before = digest(journal)
    for argv in (("init",), ("rotate", "all"), ("recover",), ("status",)):
        result = kr(*argv)
        assert result.code == 2, (argv, result.both)
        assert str(journal) in result.err and other_user[0] in result.err, result.err
    assert digest(journal) == before
    assert sqlite3.connect(journal).execute("SELECT count(*) FROM loot").fetchone() == (0,)
    assert not home.secrets.exists()
    check = kr("validate")
    assert check.code == 1 and str(journal) in check.out and other_user[0] in check.out
    assert digest(journal) == before


def test_a_forged_running_note_never_makes_keyroll_kill(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    """A note that says a command-target program of a dead keyroll still runs, pointing
    at an unrelated root process: that process must survive."""
    command_setup(home, kr)
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started = Path(f"/proc/{victim.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        note = home.state / "command-svc.4194301.running"
        note.write_text(f"{victim.pid} {started} 4194301 12345\n")
        give(note, other_user)
        result = kr("--config", str(home.config), "rotate", "svc_password")
        assert result.code == 2, result.both
        assert str(note) in result.err and other_user[0] in result.err
        time.sleep(0.3)
        assert victim.poll() is None, "keyroll killed a process named by another user's note"
        # Even past the up-front check (a target used directly), her note is ignored.
        from keyroll.config.policy import load_policy
        from keyroll.targets import open_target

        policy = load_policy(str(home.config))
        target = open_target(policy, "svc", "svc_password", lambda name: None)
        target.wait_idle(1.0)  # type: ignore[attr-defined]
        time.sleep(0.3)
        assert victim.poll() is None, "wait_idle killed a process named by another user's note"
    finally:
        victim.kill()
        victim.wait()


def test_a_writer_lock_held_by_another_user_is_a_refusal_not_a_wait(kr, home, other_user, initialized) -> None:  # type: ignore[no-untyped-def]
    lock = home.state / "writer.lock"
    give(lock, other_user)
    fd = os.open(lock, os.O_RDWR)
    holder = subprocess.Popen(
        ["sh", "-c", f"flock -x {fd} && echo 1 && exec sleep 60"],  # (the lock, held on an inherited descriptor)
        pass_fds=(fd,),
        user=other_user[1],
        group=other_user[2],
        extra_groups=[],
        stdout=subprocess.PIPE,
    )
    os.close(fd)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"1\n"
        result = kr("rotate", "all")
        assert result.code == 2, result.both  # (not 3: waiting would never end)
        assert str(lock) in result.err and other_user[0] in result.err
    finally:
        holder.kill()
        holder.wait()


def test_a_secrets_folder_of_another_user_is_refused_and_reported(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    home.secrets.mkdir(mode=0o700)
    give(home.secrets, other_user)
    result = kr("init")
    assert result.code == 2 and "secrets folder" in result.err and other_user[0] in result.err, result.both
    assert os.listdir(home.secrets) == [] and not home.state.exists()
    check = kr("validate")
    assert check.code == 1
    assert f"unsafe secrets folder: {home.secrets} is owned by {other_user[0]}" in check.out
    assert not home.state.exists() and not home.backups.exists(), "validate created something"
    config_check = kr("config", "validate")
    assert config_check.code == 1 and str(home.secrets) in config_check.out


def test_a_backup_folder_open_to_all_is_refused_with_the_fix(kr, home, values, initialized) -> None:  # type: ignore[no-untyped-def]
    home.backups.chmod(0o777)
    before, kept = values(home), backups(home)
    result = kr("rotate", "all")
    assert result.code == 2, result.both
    assert f"{home.backups} is owned by root (uid 0), mode 0777; `chmod 0700 {home.backups}`" in result.err
    assert values(home) == before and backups(home) == kept
    assert stat.S_IMODE(home.backups.stat().st_mode) == 0o777  # (not silently changed: the user decides)
    assert kr("validate").code == 1


def test_a_sticky_shared_folder_is_fine_as_a_parent_not_as_the_folder(kr, home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    shared = home.root / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    monkeypatch.setenv("KEYROLL_SECRETS_DIR", str(shared / "secrets"))
    assert kr("init").code == 0
    assert stat.S_IMODE((shared / "secrets").stat().st_mode) == 0o700
    monkeypatch.setenv("KEYROLL_SECRETS_DIR", str(shared))
    result = kr("rotate", "all")
    assert result.code == 2 and f"mode 1777; `chmod 0700 {shared}`" in result.err, result.both


def test_a_group_writable_parent_is_refused(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.root.chmod(0o775)
    result = kr("init")
    assert result.code == 2, result.both
    assert f"its parent {home.root} is owned by root (uid 0), mode 0775; `chmod go-w {home.root}`" in result.err
    assert not home.secrets.exists()


# --- config, files it names, programs ------------------------------------------------------------------


def test_a_world_writable_config_is_reported_and_refused(kr, home, initialized) -> None:  # type: ignore[no-untyped-def]
    home.write_config('[defaults]\nschedule = "90d"\n')
    home.config.chmod(0o666)
    check = kr("--config", str(home.config), "config", "validate")
    assert check.code == 1 and f"unsafe config file: {home.config} is owned by root (uid 0), mode 0666" in check.out
    assert kr("--config", str(home.config), "validate").code == 1
    result = kr("--config", str(home.config), "rotate", "all")
    assert result.code == 2 and f"`chmod go-w {home.config}`" in result.err, result.both
    home.config.chmod(0o600)
    assert kr("--config", str(home.config), "config", "validate").code == 0


def test_a_credential_file_of_another_user_is_reported(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    urls = home.root / "notify-urls"
    urls.write_text("json://127.0.0.1:9/\n")
    give(urls, other_user)
    home.write_config(f'[notify]\nurls_file = "{urls}"\n')
    check = kr("--config", str(home.config), "config", "validate")
    assert check.code == 1 and "notify.urls_file" in check.out and other_user[0] in check.out, check.out


def test_a_target_program_of_another_user_is_never_run(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    program, log = command_setup(home, kr)
    log.unlink()
    give(program, other_user)  # she can now rewrite it to do anything as root
    check = kr("--config", str(home.config), "validate")
    assert check.code == 1 and f"unsafe program of targets.svc.argv: {program} is owned by {other_user[0]}" in check.out
    assert kr("--config", str(home.config), "config", "validate").code == 1
    result = kr("--config", str(home.config), "rotate", "svc_password")
    assert result.code == 2 and str(program) in result.err, result.both
    assert not log.exists(), "the program ran"


def test_a_program_in_a_world_writable_folder_is_refused(kr, home) -> None:  # type: ignore[no-untyped-def]
    program, log = command_setup(home, kr)
    log.unlink()
    program.parent.chmod(0o777)
    result = kr("--config", str(home.config), "rotate", "svc_password")
    assert result.code == 2, result.both
    assert f"its parent {program.parent} is owned by root (uid 0), mode 0777" in result.err
    assert not log.exists(), "the program ran"


def test_restart_and_health_programs_of_another_user_are_reported(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    tools = home.root / "tools"
    tools.mkdir()
    script = tools / "health.sh"
    script.write_text("exit 0\n")
    give(script, other_user)  # run through an interpreter: the script is what matters
    restart = tools / "reload"
    restart.write_text("#!/bin/sh\nexit 0\n")
    restart.chmod(0o755)
    link = tools / "reload-link"
    link.symlink_to(restart)
    give(restart, other_user)  # reached through a symlink of root's: the target is checked
    extra = f'restart = ["command:{link}"]\nhealth = ["command:sh {script}"]'
    home.write_config(f'[secrets.app_key]\nkind = "api_key"\n{extra}\n')
    check = kr("--config", str(home.config), "config", "validate")
    assert check.code == 1, check.out
    assert f"program of secrets.app_key.restart: {link} (really {restart}) is owned by {other_user[0]}" in check.out
    assert f"program of secrets.app_key.health: {script} is owned by {other_user[0]}" in check.out
    result = kr("--config", str(home.config), "init")
    assert result.code == 2 and "more: `keyroll validate` lists them" in result.err, result.both
    assert not home.secrets.exists()


def test_a_path_folder_of_another_user_before_the_program_is_refused(kr, home, other_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`command:myrestart` is found in a root folder today, but an earlier PATH folder
    is hers: once she drops her own `myrestart` there, it would run as root."""
    system_bin = home.root / "system-bin"
    system_bin.mkdir()
    (system_bin / "myrestart").write_text("#!/bin/sh\nexit 0\n")
    (system_bin / "myrestart").chmod(0o755)
    hers = home.root / "her-bin"
    hers.mkdir()
    give(hers, other_user)
    monkeypatch.setenv("PATH", f"{hers}:{system_bin}:/usr/bin:/bin")
    home.write_config('[secrets.app_key]\nkind = "api_key"\nrestart = ["command:myrestart"]\n')
    check = kr("--config", str(home.config), "config", "validate")
    assert check.code == 1, check.out
    assert (
        f"PATH folder searched for `myrestart` (program of secrets.app_key.restart): {hers} is owned by {other_user[0]}"
        in (check.out)
    )
    result = kr("--config", str(home.config), "init")
    assert result.code == 2 and f"take {hers} off keyroll's PATH" in result.err, result.both
    assert len(result.err.strip().splitlines()) == 1
    assert not home.secrets.exists()
    monkeypatch.setenv("PATH", f"{system_bin}:{hers}:/usr/bin:/bin")  # hers comes after: never searched
    assert "unsafe" not in kr("--config", str(home.config), "config", "validate").out


def test_a_program_named_in_a_sh_c_string_is_checked(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    """`sh -c '... PROGRAM ...'`: the programs of the command string are checked as
    `sh PROGRAM` would be; hers never runs."""
    tools = home.root / "tools"
    tools.mkdir()
    program = tools / "reload"
    ran = home.root / "ran"
    program.write_text(f"#!/bin/sh\ntouch {ran}\n")
    program.chmod(0o755)
    command_setup(home, kr, extra=f"restart = [\"command:sh -ec 'sleep 0; exec {program} now'\"]")
    ran.unlink(missing_ok=True)
    give(program, other_user)
    check = kr("--config", str(home.config), "config", "validate")
    assert check.code == 1 and f"program of secrets.svc_password.restart: {program} is owned by {other_user[0]}" in (
        check.out
    ), check.out
    result = kr("--config", str(home.config), "rotate", "svc_password")
    assert result.code == 2 and str(program) in result.err, result.both
    assert not ran.exists(), "her program ran"


def test_a_target_env_path_is_the_path_checked(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    """A command target's `env = ["PATH=..."]` decides where its program is found:
    that PATH is the one checked."""
    hers = home.root / "her-bin"
    hers.mkdir()
    give(hers, other_user)
    program, _ = command_setup(home, kr)
    home.write_config(
        COMMAND_CONFIG.format(program=program.name, extra="")
        + f'env = ["PATH={hers}:{program.parent}:/usr/bin:/bin"]\n'
    )
    check = kr("--config", str(home.config), "config", "validate")
    assert check.code == 1, check.out
    assert f"PATH folder searched for `{program.name}` (program of targets.svc.argv): {hers} is owned" in check.out


def test_a_wrapped_program_and_a_preloaded_library_of_another_user_are_refused(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    """`timeout 10 HER-PROGRAM` as a restart, `LD_PRELOAD=HER-LIBRARY` in a target's
    env: both would run her code as root."""
    tools = home.root / "tools"
    tools.mkdir()
    reload, library = tools / "reload", tools / "hook.so"
    reload.write_text("#!/bin/sh\nexit 0\n")
    reload.chmod(0o755)
    library.write_text("")
    program, _ = command_setup(home, kr, extra=f'restart = ["command:timeout 10 {reload}"]')
    give(reload, other_user)
    give(library, other_user)
    home.write_config(
        COMMAND_CONFIG.format(program=program, extra=f'restart = ["command:timeout 10 {reload}"]')
        + f'env = ["LD_PRELOAD={library}"]\n'
    )
    check = kr("--config", str(home.config), "config", "validate")
    assert f"program of secrets.svc_password.restart: {reload} is owned by {other_user[0]}" in check.out, check.out
    assert f"LD_PRELOAD of targets.svc.argv: {library} is owned by {other_user[0]}" in check.out, check.out
    result = kr("--config", str(home.config), "rotate", "svc_password")
    assert result.code == 2, result.both


def test_an_http_target_s_ca_and_credential_files_of_another_user_are_reported(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    """An http target's `ca_file` (her CA: she can then pose as the service and take
    the values sent to it) and its `bearer-file:` / `basic-file:` credentials."""
    ca, token = home.root / "ca.pem", home.root / "token"
    ca.write_text("")
    token.write_text("t\n")
    token.chmod(0o600)
    give(ca, other_user)
    give(token, other_user)
    home.write_config(
        '[targets.api]\ntype = "http"\nbase_url = "https://127.0.0.1:1"\n'
        f'ca_file = "{ca}"\n'
        'apply = { method = "PUT", path = "/p", json = { p = "{value}" }, auth = "bearer-file:' + str(token) + '" }\n'
        'verify = { method = "GET", path = "/u", auth = "basic:u:{value}" }\n\n'
        '[secrets.api_password]\nkind = "password"\ntarget = "api"\n'
    )
    check = kr("--config", str(home.config), "config", "validate")
    assert f"unsafe targets.api.ca_file: {ca} is owned by {other_user[0]}" in check.out, check.out
    assert f"unsafe targets.api.apply.auth: {token} is owned by {other_user[0]}" in check.out, check.out
    result = kr("--config", str(home.config), "init")
    assert result.code == 2 and str(ca) in result.err, result.both
    assert not home.secrets.exists()


def test_a_kubeconfig_of_another_user_is_reported(kr, home, other_user) -> None:  # type: ignore[no-untyped-def]
    """The kubeconfig names the API server that receives every value (and may name a
    program to run for credentials): another user's is refused before any contact."""
    kubeconfig = home.root / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    kubeconfig.chmod(0o600)
    give(kubeconfig, other_user)
    home.write_config(
        f'[secrets.app_key]\nkind = "api_key"\nkubernetes = ["app/key"]\n\n[kubernetes]\nkubeconfig = "{kubeconfig}"\n'
    )
    check = kr("--config", str(home.config), "config", "validate")
    assert f"unsafe kubernetes.kubeconfig: {kubeconfig} is owned by {other_user[0]}" in check.out, check.out
    result = kr("--config", str(home.config), "init")
    assert result.code == 2 and str(kubeconfig) in result.err, result.both
    assert not home.secrets.exists()


def test_system_programs_and_a_private_folder_pass(kr, home) -> None:  # type: ignore[no-untyped-def]
    """root-owned programs found on PATH (systemctl for systemd: restarts, sh) and a
    private script are trusted: no false alarm."""
    script = home.root / "check.sh"
    script.write_text("exit 0\n")
    home.write_config(
        '[secrets.app_key]\nkind = "api_key"\n'
        f'restart = ["systemd:app.service", "command:true"]\nhealth = ["command:sh {script}"]\n'
    )
    check = kr("--config", str(home.config), "config", "validate")
    assert "unsafe" not in check.out, check.out


def test_the_daemon_refuses_to_start_on_an_unsafe_folder(krp, home, initialized) -> None:  # type: ignore[no-untyped-def]
    home.backups.chmod(0o777)
    result = krp("daemon", timeout=60)
    assert result.code == 2 and "unsafe backup folder" in result.err, result.both


# --- backups hold declared secrets only ----------------------------------------------------------------


def test_an_undeclared_file_is_warned_about_and_never_backed_up(kr, home, initialized) -> None:  # type: ignore[no-untyped-def]
    stray = home.secrets / "old_dump"
    stray.write_bytes(os.urandom(4 * 1024 * 1024))
    stray.chmod(0o600)
    result = kr("backup")
    assert result.code == 0, result.both
    newest = backups(home)[-1]
    assert not (newest / "old_dump").exists()
    assert (newest / "postgres_password").exists()
    assert sum(p.stat().st_size for p in newest.iterdir()) < 1024 * 1024
    check = kr("validate")
    assert "old_dump" in check.out and "not a secret of the policy" in check.out
    assert kr("list-backups").code == 0


def test_restore_never_brings_back_a_secret_no_longer_declared(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config('[secrets.app_key]\nkind = "api_key"\n[secrets.old_key]\nkind = "api_key"\n')
    assert kr("--config", str(home.config), "init").code == 0
    assert kr("--config", str(home.config), "backup").code == 0
    taken = backups(home)[-1]
    assert (taken / "old_key").exists()
    home.write_config('[secrets.app_key]\nkind = "api_key"\n')
    (home.secrets / "old_key").unlink()
    assert kr("--config", str(home.config), "rotate", "app_key").code == 0
    result = kr("--config", str(home.config), "restore", taken.name)
    assert result.code == 0, result.both
    assert "old_key" in result.out  # (listed as skipped: not in the policy)
    assert not (home.secrets / "old_key").exists()
    assert not (backups(home)[-1] / "old_key").exists()


def test_a_backup_another_user_can_change_is_never_restored(kr, home, values, other_user, initialized) -> None:  # type: ignore[no-untyped-def]
    """A backup folder of hers (given by path, or a file of hers in a backup in the
    backup folder) would bring back values she chose: refused, nothing changed."""
    import shutil

    assert kr("rotate", "all").code == 0
    backup = backups(home)[-1]
    hers = home.root / "her-backup"
    shutil.copytree(backup, hers)
    for path in (hers, *hers.iterdir()):
        give(path, other_user)
    before = values(home)
    result = kr("restore", str(hers))
    assert result.code == 2, result.both
    assert f"unsafe backup: {hers} is owned by {other_user[0]}" in result.err and f"chown root {hers}" in result.err
    assert len(result.err.strip().splitlines()) == 1 and "keyroll validate" not in result.err
    assert values(home) == before
    count = len(backups(home))
    planted = next(p for p in backup.iterdir() if p.name in before)
    give(planted, other_user)
    result = kr("restore", backup.name)
    assert result.code == 2 and f"unsafe backup: {planted} is owned by {other_user[0]}" in result.err, result.both
    assert values(home) == before and len(backups(home)) == count  # (not even a pre-restore backup)


def test_programs_never_run_in_keyroll_s_current_folder(kr, home, other_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An admin who runs keyroll from a folder of hers (`cd /home/her && keyroll
    rotate`): `python3 -c 'import json'` would import her json.py as root.  Programs
    run in `/`; the command target sees it as its current folder."""
    import shutil

    if shutil.which("python3") is None:
        pytest.skip("needs python3 on PATH")
    hers = home.root / "her-folder"
    hers.mkdir()
    ran = home.root / "ran"
    (hers / "json.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    give(hers / "json.py", other_user)
    give(hers, other_user)
    _, log = command_setup(home, kr, extra="restart = [\"command:python3 -c 'import json'\"]")
    program = home.root / "bin" / "svc"
    program.write_text(SERVICE.format(log=log).replace("uid=$(id -u)", "cwd=$(pwd)"))
    monkeypatch.chdir(hers)
    result = kr("--config", str(home.config), "rotate", "svc_password")
    assert result.code == 0, result.both
    assert not ran.exists(), "her json.py ran"
    assert "apply cwd=/" in log.read_text()


def test_programs_get_the_running_user_s_home_not_an_inherited_one(krp, home, other_user) -> None:  # type: ignore[no-untyped-def]
    """`sudo -E keyroll rotate` keeps the caller's HOME: a python3 restart would then
    load usercustomize.py from her ~/.local as root.  Programs get the running
    user's own home."""
    import pwd

    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.skip("needs /usr/bin/python3")
    hers = home.root / "her-home"
    hers.mkdir()
    site = subprocess.run(
        [python, "-c", "import site; print(site.getusersitepackages())"],
        env={"HOME": str(hers), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ran, seen = home.root / "ran", home.root / "home-seen"
    Path(site).mkdir(parents=True)
    (Path(site) / "usercustomize.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    for path in [hers, *hers.rglob("*")]:
        give(path, other_user)
    probe = home.root / "probe.py"
    probe.write_text(f"import os\nopen({str(seen)!r}, 'w').write(os.environ['HOME'])\n")
    kr = lambda *argv, stdin=None: krp(*argv, stdin=stdin)  # noqa: E731
    command_setup(home, kr, extra=f'restart = ["command:{python} {probe}"]')
    ran.unlink(missing_ok=True)
    result = krp("--config", str(home.config), "rotate", "svc_password", env={"HOME": str(hers)})
    assert result.code == 0, result.both
    assert not ran.exists(), "her usercustomize.py ran"
    assert seen.read_text() == pwd.getpwuid(os.geteuid()).pw_dir


def test_the_rewrite_file_is_never_written_into_a_folder_of_another_user(kr, home, other_user, initialized) -> None:  # type: ignore[no-untyped-def]
    """`leaks scan --rewrite-file` writes every value found: into a folder of hers she
    could swap it (or read what a later copy leaves); refused before the scan.  A
    shared sticky folder (/tmp) stays fine: she can neither replace nor read it."""
    hers = home.root / "her-folder"
    hers.mkdir()
    give(hers, other_user)
    result = kr("leaks", "scan", str(home.root), "--rewrite-file", str(hers / "rw.txt"))
    assert result.code == 2, result.both
    assert f"its parent {hers} is owned by {other_user[0]}" in result.err and len(result.err.strip().splitlines()) == 1
    assert not (hers / "rw.txt").exists()
    shared = home.root / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    result = kr("leaks", "scan", str(home.root), "--rewrite-file", str(shared / "rw.txt"))
    assert result.code in (0, 1) and "unsafe" not in result.err, result.both
