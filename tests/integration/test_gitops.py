"""[gitops]: every change lands as one encrypted commit in the fleet's repository.

Real git everywhere: a bare repository is the remote, one clone is keyroll's
work tree, another is a colleague (or CI) pushing first; the store is a real
SOPS bundle (age keys made by pyrage, the real sops binary).  The service is
the stand-in program of the command-target tests (it remembers which value it
accepts), so an undo can be checked where it matters: the service, the store
and the repositories.  SIGKILL comes from KEYROLL_FAILPOINT in a real
subprocess."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from test_sops_store import sops_decrypt

from conftest import make_pg_login, pg_target_toml, unique
from fleet import Fleet, colleague_pushes, git, init
from keyroll.gitops import plaintext_problem
from keyroll.leaks.patterns import encodings as patterns_of


def encodings(value: str) -> set[str]:
    """The forms a person or a tool may write a value in: raw, base64 (standard and URL-safe,
    padded or not), hex (both cases), URL- and form-encoded."""
    raw = value.encode("utf-8")
    forms = {value, raw.hex(), raw.hex().upper(), quote(value, safe=""), quote_plus(value)}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        forms.update((text, text.rstrip("=")))
    return forms


# --- the happy path -------------------------------------------------------------------------


def test_each_command_is_one_pushed_commit_of_the_bundle_as_stored(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    assert fleet.remote_log()[:2] == ["keyroll: create api_token", "keyroll: set db_password"]
    assert fleet.remote_file() == fleet.bundle.read_bytes()
    before = fleet.values()

    result = kr(*fleet.cfg, "rotate", "all")
    assert result.code == 0, result.both
    after = fleet.values()
    assert all(after[n] != before[n] for n in before)
    assert fleet.accepted() == [after["db_password"]]
    log = fleet.remote_log()
    assert log[0] == "keyroll: rotate api_token, db_password" and len(log) == 4  # one commit per command
    assert fleet.remote_file() == fleet.bundle.read_bytes()  # the bundle exactly as the store has it
    message = git(fleet.remote, "log", "-1", "--format=%an <%ae>%n%B", "main")
    assert message.startswith("keyroll <keyroll@fleet.example>\n") and "- db_password" in message
    assert "Keyroll-Transaction: " in message
    assert not [v for v in (*before.values(), *after.values()) if str(v) in message]
    assert git(fleet.repo, "status", "--porcelain") == ""  # nothing else touched, nothing left over
    assert set(git(fleet.remote, "show", "--name-only", "--format=", "main").split()) == {"secrets/secrets.sops.yaml"}

    status = json.loads(kr(*fleet.cfg, "status", "--json").out)["data"]
    assert status["gitops"]["in_step"] is True and "pushed" in status["gitops"]["detail"]
    plan = kr(*fleet.cfg, "rotate", "db_password", "--dry-run")
    assert plan.code == 0 and f"commit:  {fleet.published}" in plan.out and "push to origin main" in plan.out
    data = json.loads(kr(*fleet.cfg, "rotate", "db_password", "--dry-run", "--json").out)["data"]
    assert data["gitops"] == {"files": [str(fleet.published)], "push": "origin main", "problem": None}
    shown = kr(*fleet.cfg, "status").out
    assert f"gitops: {fleet.repo}: holds the store's current values; pushed" in shown


def test_a_remote_that_moved_on_elsewhere_gets_the_commit_rebased_on_top(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    colleague_pushes(fleet, "hosts/db.nix", "{ db = true; }\n")
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 0, result.both
    assert fleet.remote_log()[:2] == ["keyroll: rotate db_password", "colleague: hosts/db.nix"]
    assert git(fleet.remote, "rev-list", "--merges", "main") == ""  # never a merge commit
    assert fleet.remote_file() == fleet.bundle.read_bytes()
    assert (fleet.repo / "hosts" / "db.nix").read_text() == "{ db = true; }\n"
    assert fleet.accepted() == [fleet.values()["db_password"]]


# --- undone ---------------------------------------------------------------------------------


def test_a_remote_change_to_the_bundle_is_a_conflict_and_the_rotation_is_undone(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    before = fleet.values()
    colleague_pushes(fleet, "secrets/secrets.sops.yaml", fleet.remote_file().decode() + "# edited by hand\n")
    remote_head = git(fleet.remote, "rev-parse", "main")

    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 1, result.both
    assert "changed what keyroll publishes (secrets/secrets.sops.yaml)" in result.both
    assert fleet.values() == before  # the store went back ...
    assert fleet.accepted() == [before["db_password"]]  # ... and the service too
    assert git(fleet.remote, "rev-parse", "main") == remote_head  # nothing pushed, nothing forced
    local = git(fleet.repo, "log", "--format=%s", "-2").splitlines()
    assert local[0].startswith("keyroll: undo the rotate of db_password") and local[1] == "keyroll: rotate db_password"
    assert git(fleet.repo, "rev-list", "--merges", "HEAD") == ""
    assert fleet.published.read_bytes() == fleet.bundle.read_bytes()
    assert git(fleet.repo, "status", "--porcelain") == ""
    assert not (fleet.repo / ".git" / "rebase-merge").exists()


def test_an_unreachable_remote_undoes_the_rotation_with_75_and_the_next_run_pushes(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    before = fleet.values()
    fleet.remote.rename(fleet.root / "gone.git")
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 75, result.both
    assert "cannot be reached" in result.both
    assert fleet.values() == before and fleet.accepted() == [before["db_password"]]
    assert fleet.published.read_bytes() == fleet.bundle.read_bytes()

    (fleet.root / "gone.git").rename(fleet.remote)
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 0, result.both
    assert fleet.remote_file() == fleet.bundle.read_bytes()
    assert fleet.accepted() == [fleet.values()["db_password"]] != [before["db_password"]]


def test_an_unreadable_remote_is_unreachable_too(kr, fleet: Fleet, other_user) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    before = fleet.values()
    # A remote of another user's: git refuses it ("dubious ownership", safe.directory), which root cannot get
    # around as it gets around a chmod 0.
    _, uid, gid = other_user
    mine = os.stat(fleet.remote)
    owned = [fleet.remote, *(Path(f) / n for f, dirs, files in os.walk(fleet.remote) for n in [*dirs, *files])]
    for path in owned:
        os.lchown(path, uid, gid)
    try:
        result = kr(*fleet.cfg, "rotate", "db_password")
    finally:
        for path in owned:
            os.lchown(path, mine.st_uid, mine.st_gid)
    assert result.code == 75, result.both
    assert fleet.values() == before and fleet.accepted() == [before["db_password"]]


# --- refused before any change ---------------------------------------------------------------


def test_a_dirty_bundle_or_a_rebase_in_progress_stops_before_any_change(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    before, head = fleet.values(), git(fleet.repo, "rev-parse", "HEAD")
    backups = sorted(os.listdir(fleet.root / "backups"))
    with fleet.published.open("a") as f:
        f.write("# local edit\n")
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 2, result.both
    assert (
        len(result.err.strip().splitlines()) == 1 and "secrets/secrets.sops.yaml: has uncommitted changes" in result.err
    )
    git(fleet.repo, "checkout", "--", "secrets")
    (fleet.repo / "hosts" / "web.nix").write_text("{ local = 1; }\n")  # (other files may be dirty)
    rebase = fleet.repo / ".git" / "rebase-merge"
    rebase.mkdir()
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 2 and "a rebase is in progress" in result.err, result.both
    rebase.rmdir()
    assert fleet.values() == before and git(fleet.repo, "rev-parse", "HEAD") == head
    assert sorted(os.listdir(fleet.root / "backups")) == backups  # not even a backup
    assert kr(*fleet.cfg, "rotate", "db_password").code == 0
    assert (fleet.repo / "hosts" / "web.nix").read_text() == "{ local = 1; }\n"


def test_not_a_work_tree_is_exit_2_when_used(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    # The same config, pushing to a remote the clone does not have:
    fleet.config.write_text(fleet.config.read_text().replace('push = "origin main"', 'push = "upstream main"'))
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 2 and "gitops.push:" in result.err and "'upstream'" in result.err, result.both
    fleet.write_config()
    shutil.rmtree(fleet.repo / ".git")
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 2 and "gitops.repo:" in result.err and "not a git work tree" in result.err, result.both
    assert "gitops.repo" in kr(*fleet.cfg, "config", "validate").out


def test_a_plaintext_store_cannot_publish_its_bundle(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.config.write_text('[gitops]\nrepo = "fleet"\npublish = ["bundle"]\n')
    result = kr("--config", str(home.config), "status")
    assert result.code == 2 and "gitops.publish" in result.err and "SOPS" in result.err, result.both


def test_config_validate_warns_about_single_credential_targets(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    result = kr(*fleet.cfg, "config", "validate", "--static")
    assert result.code == 0, result.both
    assert "[targets.svc] keeps one credential at a time" in " ".join(result.out.split())
    assert "secrets.api_token" in result.out  # no target at all


@pytest.mark.parametrize("value", ["Zq3xV9pLmN2bR7tK", "p@ss w0rd/with+odd&chars=%"])
def test_nothing_plaintext_is_ever_staged(value: str) -> None:
    sealed = b"db: ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]\nsops:\n    mac: ENC[x]\n"
    assert plaintext_problem("b.yaml", sealed, [value, "another-value-0123"]) is None
    assert "no SOPS metadata" in (plaintext_problem("b.yaml", b"db: " + value.encode(), [value]) or "")
    for form in encodings(value):
        for leaked in (sealed + f"# {form}\n".encode(), sealed + f"x: ab{form}cd\n".encode()):
            assert "in the clear" in (plaintext_problem("b.yaml", leaked, ["another-value-0123", value]) or ""), form
    # Base64 at any alignment too: the value inside a longer encoded text (a whole .env file in base64).
    for skip in range(3):
        inside = base64.b64encode(b"K=" + b"x" * skip + value.encode() + b"\n").decode()
        leaked = sealed + f"env: {inside}\n".encode()
        assert "in the clear" in (plaintext_problem("b.yaml", leaked, [value]) or ""), skip


def test_an_undo_commit_refuses_plaintext_too(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    """unpublish (the store went back, keyroll's commit is in HEAD) checks what it commits
    like publish does: a store file in the clear is never staged."""
    from keyroll.config.policy import load_policy
    from keyroll.gitops import PUBLISH_KEY, TRAILER, PlaintextRefused, Publisher, PublishState
    from keyroll.journal import Journal
    from keyroll.store import open_store

    init(kr, fleet)
    head = git(fleet.repo, "rev-parse", "HEAD").strip()
    txid = git(fleet.repo, "log", "-1", f"--format=%(trailers:key={TRAILER},valueonly)").strip()
    value = str(fleet.values()["db_password"])
    fleet.bundle.write_text(f"db_password: {value}\n")  # (a store file in the clear, as a broken tool could leave)
    policy = load_policy(str(fleet.config))
    journal = Journal.open_write(policy.paths)
    try:
        state = PublishState(txid, "set", ["db_password"], ["secrets/secrets.sops.yaml"], phase="pushed")
        journal.set_meta({PUBLISH_KEY: state.dump()})
        with pytest.raises(PlaintextRefused):
            Publisher(policy, open_store(policy), journal).unpublish("Rolled back: a test", [value])
    finally:
        journal.close()
    assert git(fleet.repo, "rev-parse", "HEAD").strip() == head
    assert git(fleet.repo, "status", "--porcelain") == ""
    assert value not in fleet.published.read_text()


# --- crash safety ---------------------------------------------------------------------------


@pytest.mark.parametrize(("step", "forward"), [("git-write", False), ("git-commit", False), ("git-push", True)])
def test_sigkill_at_each_git_step_then_recover(kr, krp, fleet: Fleet, step: str, forward: bool) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    before = fleet.values()
    remote_head = git(fleet.remote, "rev-parse", "main")
    killed = krp(*fleet.cfg, "rotate", "db_password", env={"KEYROLL_FAILPOINT": step})
    assert killed.code == -9, killed.both
    result = krp(*fleet.cfg, "recover")
    assert result.code == 0, result.both
    after = fleet.values()
    assert git(fleet.repo, "status", "--porcelain") == ""
    assert sops_decrypt(fleet.published.read_bytes(), fleet.key) == after  # (encrypted anew when undone)
    if forward:  # pushed: the fleet may be deploying it, so keyroll finishes it
        assert after["db_password"] != before["db_password"]
        assert fleet.remote_file() == fleet.bundle.read_bytes()
    else:  # not pushed: back, and a commit already made is undone by a new one
        assert after == before
        assert git(fleet.remote, "rev-parse", "main") == remote_head
        if step == "git-commit":
            assert git(fleet.repo, "log", "-1", "--format=%s").startswith("keyroll: undo the rotate of db_password")
        else:
            assert git(fleet.repo, "rev-parse", "HEAD") == remote_head
    assert fleet.accepted() == [after["db_password"]]
    assert json.loads(krp(*fleet.cfg, "status", "--json").out)["data"]["gitops"]["in_step"] is True
    assert krp(*fleet.cfg, "rotate", "db_password").code == 0  # and the next run goes on normally
    assert fleet.remote_file() == fleet.bundle.read_bytes()


# --- waiting for the fleet -------------------------------------------------------------------


def test_the_wait_for_the_fleet_times_out_with_75_and_the_next_run_resumes_it(kr, krp, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    flag = fleet.root / "deployed"
    check = fleet.root / "deployed.sh"  # the deployment tool's answer: is the pushed commit live everywhere?
    check.write_text(f'#!/bin/sh\ntest "$(cat {flag} 2>/dev/null)" = "$KEYROLL_COMMIT"\n')
    check.chmod(0o755)
    fleet.write_config(gitops='converge_timeout = "2s"', secrets_extra=f'converge = ["command:{check}"]')
    init(kr, fleet)  # (no old credential to keep: no wait)
    before = fleet.values()
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 75, result.both
    assert "the fleet has not caught up" in result.both and "the next run waits again" in result.both
    after = fleet.values()
    assert after["db_password"] != before["db_password"]  # the values stay: the remote has them
    assert fleet.remote_file() == fleet.bundle.read_bytes()

    killed = krp(*fleet.cfg, "recover", env={"KEYROLL_FAILPOINT": "converge"})  # killed while it waits again
    assert killed.code == -9
    hints = json.loads(kr(*fleet.cfg, "status", "--json").out)["data"]["hints"]
    assert any("waiting for the fleet to apply db_password" in hint for hint in hints)
    flag.write_text(git(fleet.remote, "rev-parse", "main~1"))  # an older deployment
    still = kr(*fleet.cfg, "recover")
    assert still.code == 75 and "waits again" in still.both
    flag.write_text(git(fleet.remote, "rev-parse", "main"))  # the fleet deployed keyroll's commit
    done = kr(*fleet.cfg, "recover")
    assert done.code == 0 and "converged" in done.both, done.both
    assert kr(*fleet.cfg, "recover").code == 0 and "converged" not in kr(*fleet.cfg, "recover").both


def test_one_deadline_for_the_fleet_across_recovery_and_the_rotation(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    """converge_timeout bounds the whole command: a rotation that first resumes a held
    secret's wait (recovery) does not wait the full timeout once more afterwards."""
    import time

    check = fleet.root / "never.sh"  # the fleet never deploys
    check.write_text("#!/bin/sh\nexit 1\n")
    check.chmod(0o755)
    fleet.write_config(gitops='converge_timeout = "4s"', secrets_extra=f'converge = ["command:{check}"]')
    init(kr, fleet)
    assert kr(*fleet.cfg, "rotate", "db_password").code == 75  # held: the next command waits for it again
    started = time.monotonic()
    result = kr(*fleet.cfg, "rotate", "db_password")
    spent = time.monotonic() - started
    assert result.code == 75 and "the fleet has not caught up within 4s" in result.both, result.both
    assert 3.0 <= spent < 6.0, spent  # (a deadline each would wait about 8 s)


# --- nothing plaintext, anywhere in the remote ------------------------------------------------


def test_no_stored_value_in_any_object_of_the_remote(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    seen = {str(v) for v in fleet.values().values()}
    for _ in range(3):
        assert kr(*fleet.cfg, "rotate", "all").code == 0
        seen |= {str(v) for v in fleet.values().values()}
    colleague_pushes(fleet, "secrets/secrets.sops.yaml", fleet.remote_file().decode() + "# x\n")
    assert kr(*fleet.cfg, "rotate", "all").code == 1  # (a conflict, undone: more objects locally)
    seen |= {str(v) for v in fleet.values().values()}
    for git_dir in (fleet.remote, fleet.repo / ".git"):
        objects = subprocess.run(
            ["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch"],
            capture_output=True,
            check=True,
        ).stdout
        assert len(objects) > 1000
        for value in seen:
            for kind, pattern in patterns_of(value):
                assert pattern not in objects, f"a stored value ({kind}) is in {git_dir}"


def test_a_redis_password_stays_valid_beside_the_new_one_until_the_fleet_converges(  # type: ignore[no-untyped-def]
    kr, fleet: Fleet, redis_server
) -> None:
    user, initial = unique("fleet"), "Fleet" * 6 + "ok"
    redis_server.create_user(user, initial)
    admin = fleet.root / "redis-admin"
    admin.write_text(redis_server.default_password + "\n")
    flag = fleet.root / "deployed"
    fleet.config.write_text(
        textwrap.dedent(
            f"""\
            [store]
            kind = "sops"
            age_key_file = "age.key"

            [gitops]
            repo = "fleet"
            push = "origin main"
            converge_timeout = "1s"

            [targets.cache]
            type = "redis"
            host = "{redis_server.host}"
            port = {redis_server.port}
            user = "{user}"
            admin_user = "default"
            admin_password_file = "{admin}"
            grace = "0s"

            [secrets.redis_password]
            target = "cache"
            converge = ["command:test -f {flag}"]
            """
        )
    )
    assert kr(*fleet.cfg, "set", "redis_password", stdin=initial).code == 0
    result = kr(*fleet.cfg, "rotate", "redis_password")
    assert result.code == 75, result.both
    new = str(fleet.values()["redis_password"])
    assert fleet.remote_file() == fleet.bundle.read_bytes()
    # grace = "0s" would retire the old password at once: the fleet has not converged, so it stays.
    assert redis_server.login_ok(user, new) and redis_server.login_ok(user, initial)
    assert kr(*fleet.cfg, "recover").code == 75 and redis_server.login_ok(user, initial)
    flag.touch()
    done = kr(*fleet.cfg, "recover")
    assert done.code == 0, done.both
    assert redis_server.login_ok(user, new) and not redis_server.login_ok(user, initial)


def test_the_ci_layout_where_the_committed_bundle_is_the_store(kr, krp, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    """As the CI jobs of docs/gitops.md run it: the store is the bundle in the checkout."""
    text = fleet.config.read_text().replace(
        'age_key_file = "age.key"', 'age_key_file = "age.key"\nbundle = "fleet/secrets/secrets.sops.yaml"'
    )
    fleet.config.write_text(text)
    fleet.bundle = fleet.published
    init(kr, fleet)
    assert fleet.remote_file() == fleet.bundle.read_bytes() and git(fleet.repo, "status", "--porcelain") == ""
    before = fleet.values()
    colleague_pushes(fleet, "hosts/db.nix", "{ }\n")
    assert kr(*fleet.cfg, "rotate", "all").code == 0
    assert fleet.remote_file() == fleet.bundle.read_bytes() and fleet.values() != before
    colleague_pushes(fleet, "secrets/secrets.sops.yaml", fleet.remote_file().decode() + "# by hand\n")
    middle = fleet.values()
    assert kr(*fleet.cfg, "rotate", "all").code == 1
    assert fleet.values() == middle and fleet.accepted() == [middle["db_password"]]
    assert git(fleet.repo, "status", "--porcelain") == ""
    killed = krp(*fleet.cfg, "rotate", "all", env={"KEYROLL_FAILPOINT": "git-write"})
    assert killed.code == -9
    assert krp(*fleet.cfg, "recover").code == 0
    assert fleet.values() == middle and git(fleet.repo, "status", "--porcelain") == ""


def test_once_pushed_recovery_goes_forward_even_with_the_remote_gone(kr, krp, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    init(kr, fleet)
    before = fleet.values()
    assert krp(*fleet.cfg, "rotate", "db_password", env={"KEYROLL_FAILPOINT": "git-push"}).code == -9
    pushed = fleet.remote_file()
    fleet.remote.rename(fleet.root / "gone.git")
    result = krp(*fleet.cfg, "recover")
    assert result.code == 0, result.both
    after = fleet.values()
    assert after["db_password"] != before["db_password"] and fleet.accepted() == [after["db_password"]]
    assert pushed == fleet.bundle.read_bytes()  # what the fleet may be deploying is what keyroll keeps
    history = kr(*fleet.cfg, "history", "--json").out
    assert "pushed to origin main" in history


def test_a_health_check_failing_after_the_push_pushes_the_previous_values_back(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    sick = fleet.root / "sick"
    toggle = fleet.root / "restart.sh"  # the new value makes the consumer sick; the previous one heals it
    toggle.write_text(f"#!/bin/sh\nif [ -f {sick} ]; then rm {sick}; else touch {sick}; fi\n")
    toggle.chmod(0o755)
    init(kr, fleet)
    fleet.write_config(
        secrets_extra=f'restart = ["command:{toggle}"]\nhealth = ["command:test ! -f {sick}"]\nhealth_timeout = "1s"'
    )
    before = fleet.values()
    result = kr(*fleet.cfg, "rotate", "db_password")
    assert result.code == 1, result.both
    assert fleet.values() == before and fleet.accepted() == [before["db_password"]]
    assert fleet.remote_log()[:2] == ["keyroll: undo the rotate of db_password", "keyroll: rotate db_password"]
    assert sops_decrypt(fleet.remote_file(), fleet.key) == before  # the fleet deploys what the service takes
    assert git(fleet.repo, "status", "--porcelain") == ""


def test_postgres_alternating_waits_until_no_session_of_the_previous_login_is_left(  # type: ignore[no-untyped-def]
    kr, fleet: Fleet, pg
) -> None:
    """sessions:previous: keyroll sees for itself when the fleet has moved to the new login."""
    import psycopg

    initial = "Initial" * 4 + "pass"
    login = make_pg_login(pg, fleet.root, "galt", initial)
    role = login.role
    fleet.config.write_text(
        textwrap.dedent(
            """\
            [store]
            kind = "sops"
            age_key_file = "age.key"

            [gitops]
            repo = "fleet"
            push = "origin main"
            converge_timeout = "2s"

            """
        )
        + pg_target_toml(pg, login, grace="0s")
        + textwrap.dedent(
            """
            [secrets.app_password]
            target = "pg_app"
            converge = ["sessions:previous"]
            """
        )
    )
    assert kr(*fleet.cfg, "set", "app_password", stdin=initial).code == 0
    # A host of the fleet still runs on the previous login.
    with psycopg.connect(pg.conninfo(role, initial)):
        result = kr(*fleet.cfg, "rotate", "app_password")
        assert result.code == 75, result.both
        assert f"1 session(s) of {role} still open" in result.both
        assert pg.login_ok(role, initial)  # grace = "0s", yet kept: the fleet has not moved
        assert pg.login_ok(f"{role}_clone", str(fleet.values()["app_password"]))
    done = kr(*fleet.cfg, "recover")  # every host moved to the new login: the previous one is retired
    assert done.code == 0, done.both
    assert not pg.login_ok(role, initial)
    assert sops_decrypt(fleet.remote_file(), fleet.key)["app_db_user"] == f"{role}_clone"


def test_sessions_previous_needs_an_alternating_target(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    fleet.write_config(secrets_extra='converge = ["sessions:previous"]')
    result = kr(*fleet.cfg, "status")
    assert result.code == 2 and "secrets.db_password.converge" in result.err and "alternating" in result.err
