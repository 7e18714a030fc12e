"""`keyroll leaks scan` against real git repositories built here with the git binary:
values hidden where `git log -p` never looks, in the encodings people commit, packed
and loose; live and retired values; the read-only promise; the pre-commit hook."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from leaks_helpers import Repo, snapshot


def _findings(result) -> list[dict]:  # type: ignore[no-untyped-def]
    return json.loads(result.out)["data"]["scan"]["findings"]  # type: ignore[no-any-return]


def _by_secret(findings: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for finding in findings:
        grouped.setdefault(finding["secret"], []).append(finding)
    return grouped


@pytest.fixture
def planted(initialized, values, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A repository with one seed value hidden in each of 12 places."""
    v = values(initialized)
    names = sorted(v)
    assert len(names) >= 12
    repo = Repo(tmp_path / "repo")
    where: dict[str, str] = {}

    def plant(place: str) -> str:
        name = names[len(where)]
        where[place] = name
        return v[name]

    repo.commit("start", **{"README.md": "hello\n"})
    # 1. a file added, then deleted
    deleted = repo.commit("add env", **{"app.env": f"A=1\nPASSWORD={plant('deleted file')}\n"})
    repo.git("rm", "-q", "app.env")
    repo.commit("remove env")
    # 2. a side branch
    repo.git("checkout", "-q", "-b", "side")
    side = repo.commit("side work", **{"side.cfg": f"token: {plant('side branch')}\n"})
    repo.git("checkout", "-q", "main")
    # 3. an amended commit, left only in the reflog
    repo.commit("wip", **{"notes.txt": f"x\ny\nkey={plant('reflog only')}\n"})
    repo.write("notes.txt", "x\ny\nkey=REDACTED\n")
    repo.git("add", "notes.txt")
    repo.git("commit", "-q", "--amend", "-m", "wip")
    # 4. a stash beyond the first
    repo.write("README.md", f"hello\nsecret {plant('older stash')}\n")
    repo.git("stash", "push", "-q")
    repo.write("README.md", "hello\nnothing here\n")
    repo.git("stash", "push", "-q")
    # 5. a dangling blob
    dangling = repo.git("hash-object", "-w", "--stdin", input=f"lost {plant('dangling blob')}\n".encode())
    # 6. an evil merge: the merge commit itself adds a file neither parent has
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("feature", **{"feature.txt": "feature\n"})
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "--no-commit", "feature")
    repo.write("merge-only.txt", f"db={plant('evil merge')}\n")
    repo.git("add", "merge-only.txt")
    repo.git("commit", "-q", "-m", "Merge feature")
    merge = repo.git("rev-parse", "HEAD")
    # 7. an annotated tag message
    repo.git("tag", "-a", "v1", "-m", f"release with {plant('tag message')}")
    # 8. a binary file (NULs around the value)
    repo.commit("logo", **{"logo.bin": b"\x89PNG\0\0\x01" + plant("binary file").encode() + b"\0\xff"})
    # 9. a Kubernetes Secret manifest: base64 at three alignments
    value = plant("kubernetes manifest")
    manifest = (
        "apiVersion: v1\nkind: Secret\ndata:\n"
        f"  password: {base64.b64encode(value.encode()).decode()}\n"
        f"  dsn: {base64.b64encode(('x' + value).encode()).decode()}\n"
        f"  auth: {base64.b64encode(('me:' + value + '!').encode()).decode()}\n"
    )
    repo.commit("k8s", **{"deploy/secret.yaml": manifest})
    # 10. a remote URL with credentials in .git/config
    repo.git("remote", "add", "origin", f"https://deploy:{plant('remote url')}@git.example.com/app.git")
    # 11. a commit message
    repo.commit(f"set password to {plant('commit message')}")
    # 12. hex and URL encodings in a tracked file, staged but never committed
    repo.write("hex.txt", f"{plant('hex').encode().hex()}\n")
    repo.git("add", "hex.txt")
    return repo, where, v, {"deleted": deleted, "side": side, "dangling": dangling, "merge": merge}


def _check_planted(findings: list[dict], where: dict[str, str], ids: dict[str, str], repo: Repo) -> None:
    grouped = _by_secret(findings)
    for place, name in where.items():
        assert name in grouped, f"the value in the {place} was not found"
        assert all(f["status"] == "live" and f["state"] == "current" for f in grouped[name])

    def one(place: str) -> dict:
        found = [f for f in grouped[where[place]] if f["source"] == "object"]
        assert found, place
        return found[0]

    deleted = one("deleted file")
    assert (deleted["object_type"], deleted["path"], deleted["lines"]) == ("blob", "app.env", [2])
    assert deleted["first_commit"] == ids["deleted"] and deleted["removed_in"]
    assert deleted["where"] == "refs" and "refs/heads/main" in deleted["refs"]
    side = one("side branch")
    assert side["refs"] == ["refs/heads/side"] and side["first_commit"] == ids["side"]
    reflog = one("reflog only")
    assert reflog["where"] == "reflog only" and reflog["lines"] == [3]
    stash = one("older stash")
    assert stash["where"] == "stash" and "stash@{1}" in stash["refs"]
    dangling = one("dangling blob")
    assert dangling["where"] == "unreachable" and dangling["object"] == ids["dangling"]
    merge = one("evil merge")
    assert merge["first_commit"] == ids["merge"] and merge["path"] == "merge-only.txt"
    tag = one("tag message")
    assert tag["object_type"] == "tag" and tag["refs"] == ["refs/tags/v1"] and tag["lines"] == [6]
    binary = one("binary file")
    assert binary["binary"] is True and binary["lines"] == [] and binary["path"] == "logo.bin"
    k8s = [f for f in grouped[where["kubernetes manifest"]] if f["source"] == "object"]
    assert {f["encoding"] for f in k8s} == {"base64"}
    assert sorted(line for f in k8s for line in f["lines"]) == [4, 5, 6], "all three alignments"
    remote = grouped[where["remote url"]]
    assert [(f["source"], f["path"]) for f in remote] == [("git dir", "config")]
    commit = one("commit message")
    assert commit["object_type"] == "commit" and "refs/heads/main" in commit["refs"]
    assert commit["lines"] == [6], "the message's line in `git cat-file -p`, after 5 header lines and a blank one"
    hexed = one("hex")
    assert hexed["encoding"] == "hex" and hexed["where"] == "index" and hexed["path"] == "hex.txt"


def test_every_hiding_place_is_found_loose_and_packed(kr, planted) -> None:  # type: ignore[no-untyped-def]
    repo, where, values, ids = planted
    loose = kr("--json", "leaks", "scan", str(repo.path))
    assert loose.code == 1, loose.both
    _check_planted(_findings(loose), where, ids, repo)
    text = kr("leaks", "scan", str(repo.path))
    assert text.code == 1
    assert "LEAKED" in text.out and "only in the stash" in text.out and "unreachable" in text.out
    for value in values.values():
        assert value not in loose.out + text.out, "a finding showed the value"

    assert list((repo.path / ".git" / "objects").glob("??/*")), "the first scan read loose objects"
    repo.git("gc", "-q")  # packs everything; keeps the recent unreachable blob, the reflog and the stashes
    packed = kr("--json", "leaks", "scan", str(repo.path))
    assert packed.code == 1
    _check_planted(_findings(packed), where, ids, repo)
    assert list((repo.path / ".git" / "objects" / "pack").glob("*.pack"))


def test_git_log_p_misses_what_the_scan_finds(kr, planted) -> None:  # type: ignore[no-untyped-def]
    """What pattern scanners read (`git log -p --all`) misses half of these places."""
    repo, where, values, _ = planted
    log = subprocess.run(["git", "-C", str(repo.path), "log", "-p", "--all"], capture_output=True, check=True).stdout
    missed = [place for place, name in where.items() if values[name].encode() not in log]
    assert {"binary file", "tag message", "dangling blob", "reflog only", "evil merge", "older stash"} <= set(missed)


def test_a_bare_clone_and_a_git_folder_are_repositories(kr, planted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo, where, _, _ = planted
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--mirror", "--no-local", str(repo.path), str(bare)], check=True)
    result = kr("--json", "leaks", "scan", str(bare))
    data = json.loads(result.out)["data"]["scan"]
    assert data["scanned"][0]["kind"] == "bare repository"
    found = {f["secret"] for f in data["findings"]}
    assert where["side branch"] in found and where["tag message"] in found
    assert where["dangling blob"] not in found, "a clone holds only what refs reach"
    dot_git = kr("--json", "leaks", "scan", str(repo.path / ".git"))
    assert {f["secret"] for f in _findings(dot_git)} >= {where["dangling blob"], where["remote url"]}


def test_retired_values_from_backups_exit_0_and_still_recommend_the_rewrite(  # type: ignore[no-untyped-def]
    kr, initialized, values, tmp_path: Path
) -> None:
    old = values(initialized)
    repo = Repo(tmp_path / "repo")
    name = sorted(old)[0]
    repo.commit("config", **{"app.env": f"PASSWORD={old[name]}\n"})
    assert kr("leaks", "scan", str(repo.path)).code == 1
    rotated = kr("rotate", name)
    assert rotated.code == 0, rotated.both
    result = kr("--json", "leaks", "scan", str(repo.path))
    assert result.code == 0, result.both
    [finding] = _findings(result)
    assert (finding["secret"], finding["status"], finding["state"]) == (name, "retired", "retired")
    text = kr("leaks", "scan", str(repo.path))
    assert text.code == 0
    assert "only retired values found" in text.out and "--rewrite-file" in text.out


def test_encrypted_backups_are_decrypted_in_memory(kr, home, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pyrage = pytest.importorskip("pyrage")
    identity = pyrage.x25519.Identity.generate()
    key_file = tmp_path / "age.key"
    key_file.write_text(f"{identity}\n")
    key_file.chmod(0o600)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    home.write_config(f'[backup]\nencrypt_to = ["{identity.to_public()}"]\n[secrets.app_key]\nkind = "api_key"\n')
    cfg = ("--config", str(home.config))
    assert kr(*cfg, "init").code == 0
    first = (home.secrets / "app_key").read_text()
    assert kr(*cfg, "rotate", "app_key").code == 0  # its backup (age-encrypted) now holds the first value
    backup = next(p for p in home.backups.iterdir() if p.name.startswith("secrets_"))
    assert first.encode() not in b"".join(f.read_bytes() for f in backup.iterdir())
    repo = Repo(tmp_path / "repo")
    repo.commit("old", **{"key.txt": first})
    result = kr(*cfg, "--json", "leaks", "scan", str(repo.path))
    assert result.code == 0, result.both
    assert [(f["secret"], f["status"]) for f in _findings(result)] == [("app_key", "retired")]
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")  # without the key, the backup cannot be read: said plainly
    result = kr(*cfg, "leaks", "scan", str(repo.path))
    assert "not searched: backup" in result.out and result.code == 0


def test_short_values_are_named_and_not_searched(kr, home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home.write_config("[secrets.pin]\n[secrets.app_key]\nkind = 'api_key'\n")
    cfg = ("--config", str(home.config))
    assert kr(*cfg, "init").code == 0
    assert kr(*cfg, "set", "pin", "--allow-weak", stdin="12345678\n").code == 0
    repo = Repo(tmp_path / "repo")
    repo.commit("pin", **{"pin.txt": "12345678\n"})
    result = kr(*cfg, "leaks", "scan", str(repo.path))
    assert result.code == 0, result.both
    assert "not searched for (values shorter than 12 characters match by chance): pin" in result.out
    assert "no managed value found" in result.out


def test_a_folder_a_file_and_a_missing_path(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    v = values(initialized)
    name = sorted(v)[1]
    folder = tmp_path / "plain"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text(f"one\ntwo {urllib.parse.quote(v[name])}\nthree {v[name]}\n")
    (folder / "link").symlink_to(initialized.secrets / name)  # never followed
    (folder / "prefix.txt").write_text(v[name][:-1] + "\n")  # a prefix of a value: no finding
    result = kr("--json", "leaks", "scan", str(folder), str(folder / "sub" / "a.txt"))
    assert result.code == 1
    found = _findings(result)
    assert {(Path(f["path"]).name, tuple(f["lines"])) for f in found} == {("a.txt", (2, 3))}
    assert len(found) == 2  # the folder and the file given alone
    missing = kr("leaks", "scan", str(tmp_path / "nope"))
    assert missing.code == 2 and "no such file or folder" in missing.err
    assert len(missing.err.strip().splitlines()) == 1


def test_the_scan_never_writes_into_the_repository(kr, planted) -> None:  # type: ignore[no-untyped-def]
    repo, _, _, _ = planted
    tracked = repo.path / "README.md"
    os.utime(tracked, ns=(1, 1))  # a stale index entry: `git status` would rewrite the index
    before = snapshot(repo.path)
    assert kr("leaks", "scan", str(repo.path)).code == 1
    assert kr("leaks", "scan", "--staged", str(repo.path)).code == 1
    assert snapshot(repo.path) == before


def test_staged_values_are_refused_before_they_enter_history(krp, kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    v = values(initialized)
    name = sorted(v)[2]
    repo = Repo(tmp_path / "repo")
    repo.commit("start", **{"README.md": "hi\n"})
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    import sys

    from tests_helpers import USE_TEST_ROOT_CONFIG

    launcher = tmp_path / "keyroll-launcher.py"  # `keyroll`, as installed, with the tests' isolation
    launcher.write_text(USE_TEST_ROOT_CONFIG + "import runpy\nrunpy.run_module('keyroll', run_name='__main__')\n")
    hook.write_text(f"#!/bin/sh\nexec {sys.executable} {launcher} leaks scan --staged\n")
    hook.chmod(0o755)
    repo.write("app.env", f"PASSWORD={v[name]}\n")
    repo.git("add", "app.env")
    done = subprocess.run(
        ["git", "-C", str(repo.path), "commit", "-q", "-m", "env"], capture_output=True, env=repo.env()
    )
    assert done.returncode != 0, "the hook refused the commit"
    assert b"refused: a managed value is staged" in done.stdout + done.stderr
    assert v[name].encode() not in done.stdout + done.stderr
    assert repo.git("rev-list", "--count", "HEAD") == "1"
    repo.write("app.env", "PASSWORD=${FROM_ENV}\n")
    repo.git("add", "app.env")
    repo.commit("env")
    assert repo.git("rev-list", "--count", "HEAD") == "2"
    clean = kr("leaks", "scan", "--staged", str(repo.path))
    assert clean.code == 0 and "no managed value found" in clean.out


def test_rotate_replaces_what_leaked_and_scans_again(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    v = values(initialized)
    leaked, kept = sorted(v)[:2]
    repo = Repo(tmp_path / "repo")
    repo.commit("oops", **{"app.env": f"PASSWORD={v[leaked]}\n"})
    result = kr("--json", "leaks", "scan", "--rotate", str(repo.path))
    assert result.code == 0, result.both
    data = json.loads(result.out)["data"]
    assert [o["name"] for o in data["rotation"]["outcomes"]] == [leaked]
    assert [f["status"] for f in data["after"]["findings"]] == ["retired"]
    now = values(initialized)
    assert now[leaked] != v[leaked] and now[kept] == v[kept]
    history = json.loads(kr("history", leaked, "--json").out)["data"]["entries"]
    assert history[0]["op"] == "rotate"


def test_safe_directory_refusal_is_one_line_with_gits_words(kr, initialized, tmp_path: Path, other_user) -> None:  # type: ignore[no-untyped-def]
    _, uid, gid = other_user
    repo = Repo(tmp_path / "theirs")
    repo.commit("x", **{"a.txt": "a\n"})
    for folder, dirs, files in os.walk(repo.path):
        for name in [*dirs, *files]:
            os.lchown(Path(folder) / name, uid, gid)
    os.chown(repo.path, uid, gid)
    result = kr("leaks", "scan", str(repo.path))
    assert result.code == 2, result.both
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "dubious ownership" in lines[0], result.err
    assert "Traceback" not in result.both


def test_validate_warns_about_a_secrets_folder_in_a_work_tree(kr, initialized) -> None:  # type: ignore[no-untyped-def]
    Repo(initialized.root)  # the folder holding secrets/ and backups/ becomes a git work tree
    assert kr("backup").code == 0
    result = kr("--json", "validate")
    warnings = [f for f in json.loads(result.out)["data"]["findings"] if f["level"] == "warn"]
    subjects = {Path(f["subject"]).name for f in warnings if "keyroll leaks scan" in f["message"]}
    assert {"secrets", "backups"} <= subjects
    (initialized.root / ".gitignore").write_text("secrets/\nbackups/\n")
    result = kr("--json", "validate")
    assert not [f for f in json.loads(result.out)["data"]["findings"] if "keyroll leaks scan" in f["message"]]


def test_rewrite_file_is_private_and_never_overwritten(kr, planted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo, _, values, _ = planted
    target = tmp_path / "expressions.txt"
    result = kr("leaks", "scan", "--rewrite-file", str(target), str(repo.path))
    assert result.code == 1
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    lines = target.read_bytes().splitlines()
    assert all(line.startswith(b"literal:") and line.endswith(b"==>***REMOVED-BY-KEYROLL***") for line in lines)
    lengths = [len(line) for line in lines]
    assert lengths == sorted(lengths, reverse=True), "longest first"
    assert (tmp_path / "expressions.txt.blob-ids").exists()
    assert "git clone --mirror URL repo.git" in result.out and "add `--no-local`" in result.out
    again = kr("leaks", "scan", "--rewrite-file", str(target), str(repo.path))
    assert again.code == 2 and "already exists" in again.err
    for value in values.values():
        assert value not in result.out


def test_the_printed_filter_repo_steps_leave_a_clean_history(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Run the rewrite the scan prints (git-filter-repo from its package, in the test
    environment) on a fresh mirror clone: the scan then finds nothing; without
    --strip-blobs-with-ids, only the binary blobs it listed."""
    import shlex
    import shutil
    import sys

    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    if shutil.which("git-filter-repo", path=env["PATH"]) is None:
        pytest.fail("git-filter-repo is missing: it is in the test extra (pip install -e '.[test]')")
    v = values(initialized)
    a, b, c, d = sorted(v)[:4]
    repo = Repo(tmp_path / "repo")
    repo.commit("start", **{"app.env": f"A={v[a]}\nB={v[b]}{v[a]}\n"})
    repo.commit(f"message with {v[c]}", **{"k8s.yaml": f"data:\n  x: {base64.b64encode(v[b].encode()).decode()}\n"})
    repo.commit("binary", **{"blob.bin": b"\0\0" + v[d].encode() + b"\0"})
    repo.git("rm", "-q", "app.env")
    repo.commit("cleanup")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("PATH", env["PATH"])  # the scan looks for git-filter-repo on PATH
    try:
        result = kr("--json", "leaks", "scan", "--rewrite-file", str(tmp_path / "rewrite.txt"), str(repo.path))
    finally:
        monkeypatch.undo()
    assert result.code == 1, result.both
    plan = json.loads(result.out)["data"]["rewrite"]
    assert plan["sensitive_data_removal"] is True  # the PyPI git-filter-repo (2.47+) has it
    binary = plan["binary_blobs"]
    assert binary == [repo.blob_id(b"\0\0" + v[d].encode() + b"\0")]
    [rewrite] = [s for s in plan["steps"] if s.startswith("Rewrite: `")]
    command = shlex.split(rewrite.split("`")[1])
    assert "--sensitive-data-removal" in command and "--strip-blobs-with-ids" in command
    [cleanup] = [s for s in plan["steps"] if "reflog expire" in s]
    expire = cleanup.split("`")[3]

    def rewritten(argv: list[str], name: str) -> Path:
        mirror = tmp_path / name
        subprocess.run(["git", "clone", "-q", "--mirror", "--no-local", str(repo.path), str(mirror)], check=True)
        done = subprocess.run(argv, cwd=mirror, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        subprocess.run(["sh", "-c", expire], cwd=mirror, env=env, check=True)
        return mirror

    clean = rewritten(command, "clean.git")
    after = kr("--json", "leaks", "scan", str(clean))
    assert after.code == 0 and _findings(after) == [], after.out

    at = command.index("--strip-blobs-with-ids")
    kept = rewritten(command[:at] + command[at + 2 :], "kept.git")
    found = _findings(kr("--json", "leaks", "scan", str(kept)))
    assert found and {(f["object"], f["binary"]) for f in found} == {(binary[0], True)}


def test_work_tree_lfs_objects_and_ignored_files(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Untracked files are read and ignored ones are not (a rendered secrets folder the
    repository ignores is where values belong); so are Git LFS objects in .git/lfs."""
    v = values(initialized)
    untracked, ignored, lfs, edited = sorted(v)[:4]
    repo = Repo(tmp_path / "repo")
    repo.commit("start", **{".gitignore": "rendered/\n", "app.conf": "x = 1\n"})
    repo.write("notes.txt", f"remember {v[untracked]}\n")
    repo.write(f"rendered/{ignored}", v[ignored])
    repo.write(".git/lfs/objects/ab/cd/abcd1234", f"lfs {v[lfs]}\n")
    repo.write("app.conf", f"x = 1\npassword = {v[edited]}\n")  # changed, not staged
    result = kr("--json", "leaks", "scan", str(repo.path))
    assert result.code == 1
    found = {(f["secret"], f["source"], f["path"], tuple(f["lines"])) for f in _findings(result)}
    assert found == {
        (untracked, "work tree", "notes.txt", (1,)),
        (edited, "work tree", "app.conf", (2,)),
        (lfs, "git dir", "lfs/objects/ab/cd/abcd1234", (1,)),
    }
    rewrite = kr("leaks", "scan", "--rewrite-file", str(tmp_path / "rw"), str(repo.path)).out
    assert "Git LFS objects hold a value (lfs/objects/ab/cd/abcd1234; " in rewrite
    assert (
        "edit these by hand (remote URLs: `git remote set-url NAME URL` without credentials): app.conf, notes.txt"
        in rewrite
    )


def test_an_older_filter_repo_gets_no_sensitive_data_removal(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Debian's git-filter-repo 2.38 has no --sensitive-data-removal: the plan leaves it
    out and says so, and its printed command still rewrites the history clean."""
    import shlex

    from tests_helpers import in_ci

    debian = Path("/usr/bin/git-filter-repo")
    if not debian.exists():
        message = "Debian's git-filter-repo is missing (scripts/setup --test installs it)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    v = values(initialized)
    name = sorted(v)[5]
    repo = Repo(tmp_path / "repo")
    repo.commit(f"deploy {v[name]}", **{"deploy.env": f"TOKEN={v[name]}\n"})
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # Debian's, not the test environment's 2.47
    try:
        result = kr("--json", "leaks", "scan", "--rewrite-file", str(tmp_path / "rw.txt"), str(repo.path))
    finally:
        monkeypatch.undo()
    plan = json.loads(result.out)["data"]["rewrite"]
    assert plan["filter_repo_found"] is True and plan["sensitive_data_removal"] is False
    [rewrite] = [s for s in plan["steps"] if s.startswith("Rewrite: `")]
    assert "no --sensitive-data-removal" in rewrite
    command = shlex.split(rewrite.split("`")[1])
    assert "--sensitive-data-removal" not in command
    mirror = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--mirror", "--no-local", str(repo.path), str(mirror)], check=True)
    done = subprocess.run(
        command, cwd=mirror, env={**os.environ, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    subprocess.run(
        ["sh", "-c", "git reflog expire --expire=now --all && git gc -q --prune=now"], cwd=mirror, check=True
    )
    after = kr("--json", "leaks", "scan", str(mirror))
    assert after.code == 0 and _findings(after) == [], after.out


def test_staged_refuses_a_retired_value_too(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Before a commit, any value keyroll ever managed is refused (a full scan would only
    recommend a rewrite for a retired one: exit 0)."""
    old = values(initialized)
    name = sorted(old)[3]
    assert kr("rotate", name).code == 0
    repo = Repo(tmp_path / "repo")
    repo.commit("start", **{"README.md": "hi\n"})
    repo.write("old.env", f"X={old[name]}\n")
    repo.git("add", "old.env")
    staged = kr("--json", "leaks", "scan", "--staged", str(repo.path))
    assert staged.code == 1
    assert [(f["secret"], f["status"], f["source"]) for f in _findings(staged)] == [(name, "retired", "staged")]
    assert kr("leaks", "scan", str(repo.path)).code == 0  # the same value, staged, in a full scan: retired only


def test_submodules_and_linked_work_trees_are_part_of_the_repository(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A submodule's history lives in .git/modules (a repository of its own), a linked work
    tree (`git worktree add`) has its own files and index: scanning the main repository, or
    the linked work tree, finds them all, and writes nothing."""
    v = values(initialized)
    in_sub, untracked, staged, stashed = sorted(v)[:4]
    sub = Repo(tmp_path / "sub")
    sub.commit("sub", **{"s.txt": f"sub={v[in_sub]}\n"})
    repo = Repo(tmp_path / "repo")
    repo.commit("start", **{"README.md": "hello\n"})
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.path), "sub")
    repo.commit("submodule")
    repo.write("README.md", f"hello\n{v[stashed]}\n")
    repo.git("stash", "push", "-q")
    linked = tmp_path / "linked"
    repo.git("worktree", "add", "-q", str(linked), "-b", "other")
    (linked / "wip.txt").write_text(f"wip {v[untracked]}\n")
    (linked / "staged.txt").write_text(f"staged {v[staged]}\n")
    subprocess.run(["git", "-C", str(linked), "add", "staged.txt"], check=True)
    shutil.rmtree(sub.path)  # (only the submodule's copy in .git/modules is left)
    before = (snapshot(repo.path), snapshot(linked))
    for given, prefix in ((repo.path, f"{linked}/"), (linked, "")):
        result = kr("--json", "leaks", "scan", str(given))
        assert result.code == 1, result.both
        found = {f["secret"]: f for f in _findings(result)}
        assert set(found) == {in_sub, untracked, staged, stashed}
        assert len(_findings(result)) == 4, "each once (a submodule's work tree is not listed twice)"
        assert found[in_sub]["repository"] == str(repo.path / "sub")
        assert (found[in_sub]["path"], found[in_sub]["where"]) == ("s.txt", "refs")
        assert (found[untracked]["source"], found[untracked]["path"]) == ("work tree", f"{prefix}wip.txt")
        assert (found[staged]["where"], found[staged]["path"]) == ("index", f"{prefix}staged.txt")
        assert (found[stashed]["where"], found[stashed]["refs"]) == ("stash", ["stash@{0}"])
        scanned = json.loads(result.out)["data"]["scan"]["scanned"]
        assert [s["path"] for s in scanned] == [str(given), str(repo.path / "sub")]
    assert (snapshot(repo.path), snapshot(linked)) == before


def test_borrowed_objects_shallow_and_partial_clones_are_said(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`git clone --shared` reads another repository's objects (objects/info/alternates):
    its history is scanned there, and an object only the other repository uses is said to be
    borrowed, not dangling.  A shallow or partial clone lacks objects: a note says so, and
    the scan never fetches them."""
    v = values(initialized)
    history, dangling, old = sorted(v)[:3]
    origin = Repo(tmp_path / "origin")
    origin.commit("old", **{"old.txt": f"{v[old]}\n"})
    origin.commit("gone", **{"old.txt": "nothing\n"})
    origin.commit("start", **{"app.env": f"PW={v[history]}\r\n"})
    origin.git("hash-object", "-w", "--stdin", input=f"{v[dangling]}".encode())
    origin.git("config", "uploadpack.allowfilter", "true")
    shared = tmp_path / "shared"
    subprocess.run(["git", "clone", "-q", "--shared", str(origin.path), str(shared)], check=True)
    result = kr("--json", "leaks", "scan", str(shared))
    found = {f["secret"]: f for f in _findings(result)}
    assert (found[history]["where"], found[history]["lines"]) == ("refs", [1])
    assert (found[dangling]["where"], found[dangling]["lines"]) == ("alternate", [1]), "a value at a blob's very end"
    assert "alternate" in describe_text(kr, shared)
    shallow, partial = tmp_path / "shallow", tmp_path / "partial"
    url = f"file://{origin.path}"
    subprocess.run(["git", "clone", "-q", "--depth", "1", url, str(shallow)], check=True)
    subprocess.run(["git", "clone", "-q", "--filter=blob:none", url, str(partial)], check=True, capture_output=True)
    before = snapshot(partial)
    result = kr("--json", "leaks", "scan", str(shallow), str(partial))
    assert snapshot(partial) == before, "nothing fetched"
    data = json.loads(result.out)["data"]["scan"]
    assert {f["secret"] for f in data["findings"]} == {history}, "the old value is not in either clone"
    assert [note.split(":")[0] for note in data["notes"]] == [str(shallow), str(partial)]
    assert "shallow clone" in data["notes"][0] and "partial clone" in data["notes"][1]
    assert result.code == 1


def describe_text(kr, path: Path) -> str:  # type: ignore[no-untyped-def]
    return str(kr("leaks", "scan", str(path)).out)


def test_a_stash_without_its_reflog_is_still_a_stash(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A mirror clone copies refs/stash (packed) but not its reflog: the stashed value is
    reached by the stash, not dangling."""
    v = values(initialized)
    stashed = sorted(v)[0]
    repo = Repo(tmp_path / "repo")
    repo.commit("start", **{"README.md": "hello\n"})
    repo.write("README.md", f"hello\n{v[stashed]}\n")
    repo.git("stash", "push", "-q")
    mirror = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--mirror", str(repo.path), str(mirror)], check=True)
    assert not (mirror / "logs" / "refs" / "stash").exists() and "refs/stash" in (mirror / "packed-refs").read_text()
    result = kr("--json", "leaks", "scan", str(mirror))
    [finding] = _findings(result)
    assert (finding["where"], finding["refs"], finding["path"]) == ("stash", ["stash@{0}"], "README.md")


def test_folders_git_cannot_open_are_errors_not_silence(initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """git skips an untracked folder it cannot open (a warning) and a loose-object folder
    (without a word): both are said, exit 2, and the rest is still scanned.  Run as a
    process without the capability that lets root read anything (setpriv), so that the
    permissions hold as they do for any other user."""
    import sys

    v = values(initialized)
    untracked = sorted(v)[0]
    repo = Repo(tmp_path / "repo")
    repo.commit("start", **{"README.md": "hello\n"})
    repo.write("notes.txt", f"{v[untracked]}\n")
    repo.write("closed/f.txt", "nothing\n")
    repo.git("hash-object", "-w", "--stdin", input=b"a loose object\n")
    loose = sorted(p for p in (repo.path / ".git" / "objects").iterdir() if len(p.name) == 2)[0]
    argv = [sys.executable, "-m", "keyroll", "--json", "leaks", "scan", str(repo.path)]
    if os.geteuid() == 0:
        drop = "-dac_override,-dac_read_search"
        argv = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", *argv]
    (repo.path / "closed").chmod(0)
    loose.chmod(0)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    finally:
        (repo.path / "closed").chmod(0o755)
        loose.chmod(0o755)
    assert done.returncode == 1, done.stderr  # (a live value found: that comes first)
    data = json.loads(done.stdout)["data"]["scan"]
    assert [f["secret"] for f in data["findings"]] == [untracked]
    assert data["errors"] == [
        f"{loose}: permission denied (the objects there are not scanned)",
        f"{repo.path}: warning: could not open directory 'closed/': Permission denied",
    ]
    (repo.path / "notes.txt").unlink()
    (repo.path / "closed").chmod(0)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    finally:
        (repo.path / "closed").chmod(0o755)
    assert done.returncode == 2, done.stdout + done.stderr


def test_a_value_in_a_file_or_branch_name_is_masked(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A file or a branch named with a value: the finding shows the name with `***` in
    place of the value, in text and in JSON, and in the rewrite steps."""
    v = values(initialized)
    name = sorted(v)[0]
    value = v[name]
    repo = Repo(tmp_path / "repo")
    repo.commit("oops", **{f"cfg-{value}.txt": f"k={value}\n"})
    repo.git("branch", f"b-{value}")
    text = kr("leaks", "scan", "--rewrite-file", str(tmp_path / "rw"), str(repo.path))
    data = kr("--json", "leaks", "scan", str(repo.path))
    assert text.code == data.code == 1
    assert value not in text.both + data.both
    blob = next(f for f in _findings(data) if f["object_type"] == "blob")
    assert blob["path"] == "cfg-***.txt" and "refs/heads/b-***" in blob["refs"]
    assert blob["commits"][0]["path"] == "cfg-***.txt"
    assert "cfg-***.txt line 1" in text.out
    assert any(f["object_type"] == "tree" for f in _findings(data)), "the name in the tree is a finding"


def test_a_linked_work_trees_detached_head_an_untracked_stash_and_a_note(
    kr, initialized, values, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A commit made on a linked work tree's detached HEAD is reached by that HEAD (not
    only the reflog); a value in an untracked file stashed with `git stash -u` is in the
    stash; a value in a note (`git notes`) is reached by refs/notes/commits."""
    v = values(initialized)
    detached, untracked, noted = sorted(v)[:3]
    repo = Repo(tmp_path / "repo")
    start = repo.commit("start", **{"README.md": "hello\n"})
    repo.git("notes", "add", "-m", f"deployed with {v[noted]}", start)
    repo.write("untracked.txt", f"u {v[untracked]}\n")
    repo.git("stash", "push", "-u", "-q")
    linked = tmp_path / "linked"
    repo.git("worktree", "add", "-q", "--detach", str(linked))
    (linked / "d.txt").write_text(f"d {v[detached]}\n")
    env = {**repo.env(), "GIT_DIR": "", "GIT_WORK_TREE": ""}
    env = {k: val for k, val in env.items() if val}
    subprocess.run(["git", "-C", str(linked), "add", "d.txt"], check=True, env=env)
    subprocess.run(["git", "-C", str(linked), "commit", "-qm", "d"], check=True, env=env)
    result = kr("--json", "leaks", "scan", str(repo.path))
    found = {f["secret"]: f for f in _findings(result)}
    assert set(found) == {detached, untracked, noted}
    assert (found[noted]["where"], found[noted]["refs"], found[noted]["path"]) == (
        "refs",
        ["refs/notes/commits"],
        start,
    )
    assert (found[detached]["where"], found[detached]["refs"]) == ("refs", [f"HEAD (detached) of work tree {linked}"])
    assert (found[untracked]["where"], found[untracked]["path"]) == ("stash", "untracked.txt")


def test_a_pipe_or_a_device_given_is_an_error(kr, initialized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A path that is neither a file nor a folder is not read, and says so: exit 2."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/null"):
        result = kr("leaks", "scan", path)
        assert result.code == 2
        assert f"{path}: not a regular file, a folder or a repository: not read" in result.err


def test_big_blobs_are_numbered_without_holding_them_whole(initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A value in three versions of a 48 MB log file, across a 4 MiB read boundary: every
    version is found with its line number, and the scan's memory stays far below the
    144 MB of those blobs (they used to be read whole, twice)."""
    import sys

    v = values(initialized)
    name = sorted(v)[0]
    value = v[name].encode()
    repo = Repo(tmp_path / "repo")
    line = b"2026-12-06 INFO nothing to see here, a line of a log file\n"
    body = line * (48_000_000 // len(line))
    lines_before = (4 << 20) // len(line)  # the value starts a few bytes before the 4 MiB boundary
    blob_ids = []
    for version in range(3):
        head = body[: lines_before * len(line)]
        content = head + b"password=" + value + b"\n" + body[len(head) :] + b"v%d\n" % version
        repo.commit(f"log {version}", **{"app.log": content})
        blob_ids.append(repo.blob_id(content))
    probe = (
        "import resource, subprocess, sys; "
        "done = subprocess.run(sys.argv[1:], capture_output=True); "
        "sys.stdout.buffer.write(done.stdout); "
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    argv = [sys.executable, "-c", probe, sys.executable, "-m", "keyroll", "--json", "leaks", "scan", str(repo.path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    out, _, tail = done.stdout.rpartition("\n1 ")
    findings = json.loads(out)["data"]["scan"]["findings"]
    found = {(f["object"], tuple(f["lines"])) for f in findings if f["source"] == "object"}
    assert found == {(oid, (lines_before + 1,)) for oid in blob_ids}
    assert int(tail) < 140_000, f"peak memory {int(tail) // 1000} MB"


def test_the_rewrite_renames_files_and_says_to_rename_branches_named_with_a_value(  # type: ignore[no-untyped-def]
    kr, initialized, values, tmp_path: Path
) -> None:
    """--replace-text leaves file names alone: the plan adds a --filename-callback (a file
    that holds no value) with the same replacements, and a step for a branch named with a
    value.  Following the printed command and that step leaves nothing to find."""
    import sys

    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    if shutil.which("git-filter-repo", path=env["PATH"]) is None:
        pytest.fail("git-filter-repo is missing: it is in the test extra (pip install -e '.[test]')")
    v = values(initialized)
    name = sorted(v)[0]
    value = v[name]
    repo = Repo(tmp_path / "repo")
    repo.commit("oops", **{f"conf/{value}/cfg-{value}.txt": f"k={value}\n"})
    repo.git("branch", f"b-{value}")
    result = kr("--json", "leaks", "scan", "--rewrite-file", str(tmp_path / "rw"), str(repo.path))
    assert result.code == 1 and value not in result.out
    plan = json.loads(result.out)["data"]["rewrite"]
    assert plan["rename_file"] == str(tmp_path / "rw.rename") and plan["renamed_refs"] is True
    assert stat.S_IMODE((tmp_path / "rw.rename").stat().st_mode) == 0o600
    assert value not in (tmp_path / "rw.rename").read_text()
    [rewrite] = [s for s in plan["steps"] if s.startswith("Rewrite: `")]
    assert any(s.startswith("A branch or tag is named with a value") for s in plan["steps"])
    mirror = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--mirror", "--no-local", str(repo.path), str(mirror)], check=True)
    done = subprocess.run(["sh", "-c", rewrite.split("`")[1]], cwd=mirror, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    git = ["git", "-C", str(mirror)]
    subprocess.run([*git, "branch", "-m", f"b-{value}", "b-renamed"], check=True)
    subprocess.run(
        ["sh", "-c", "git reflog expire --expire=now --all && git gc -q --prune=now"], cwd=mirror, check=True
    )
    shutil.rmtree(mirror / "filter-repo")  # (git-filter-repo's own notes: the old ref names)
    after = kr("--json", "leaks", "scan", str(mirror))
    assert after.code == 0 and _findings(after) == [], after.out
    names = subprocess.run([*git, "ls-tree", "-r", "--name-only", "main"], capture_output=True, text=True).stdout
    assert names.split() == ["conf/***REMOVED-BY-KEYROLL***/cfg-***REMOVED-BY-KEYROLL***.txt"]


def test_a_value_in_an_untracked_or_staged_file_name_is_found(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A name enters history as a tree when committed: the pre-commit hook refuses a staged
    file named with a value, and an untracked file or a folder's file so named is found."""
    v = values(initialized)
    staged, untracked = sorted(v)[:2]
    repo = Repo(tmp_path / "repo")
    repo.commit("start", **{"README.md": "hello\n"})
    repo.write(f"new-{v[staged]}.txt", "harmless\n")
    repo.git("add", ".")
    repo.write(f"tmp-{v[untracked]}", "harmless\n")
    hook = kr("--json", "leaks", "scan", "--staged", str(repo.path))
    assert hook.code == 1 and "(or its name)" in kr("leaks", "scan", "--staged", str(repo.path)).out
    [finding] = _findings(hook)
    assert (finding["secret"], finding["name"], finding["path"]) == (staged, True, "new-***.txt")
    scan = _findings(kr("--json", "leaks", "scan", str(repo.path)))
    assert {(f["secret"], f["path"]) for f in scan if f["name"]} == {(untracked, "tmp-***")}
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / f"x-{v[untracked]}").write_text("harmless\n")
    result = kr("leaks", "scan", str(folder))
    assert result.code == 1 and "the name of the file x-***" in result.out and v[untracked] not in result.out


def test_a_value_in_a_commits_author_is_said_as_such(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A value in an author name is in the commit object, not its message: the finding
    gives the line in `git cat-file -p` and says author, committer or message."""
    v = values(initialized)
    name = sorted(v)[0]
    repo = Repo(tmp_path / "repo")
    env = {**repo.env(), "GIT_AUTHOR_NAME": f"bot {v[name]}"}
    subprocess.run(["git", "-C", str(repo.path), "commit", "-q", "--allow-empty", "-m", "hi"], env=env, check=True)
    oid = repo.git("rev-parse", "HEAD")
    [finding] = _findings(kr("--json", "leaks", "scan", str(repo.path)))
    assert (finding["object"], finding["object_type"], finding["lines"]) == (oid, "commit", [2])
    text = kr("leaks", "scan", str(repo.path)).out
    assert f"commit {oid[:12]} line 2 (`git cat-file -p {oid[:12]}`: its author, committer or message)" in text


def test_one_blob_at_two_paths_of_one_commit_and_a_newline_in_a_name(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same content at two paths of one commit is one commit, not two; a file name
    with a newline stays on its finding's line (escaped), so the output keeps one finding
    a line."""
    v = values(initialized)
    name = sorted(v)[0]
    repo = Repo(tmp_path / "repo")
    commit = repo.commit("copies", **{"a.env": f"pw={v[name]}\n", "b\nc.env": f"pw={v[name]}\n"})
    text = kr("leaks", "scan", str(repo.path)).out
    [finding] = [line for line in text.splitlines() if line.startswith("LIVE ")]
    assert f"added in {commit[:12]}" in finding and "(at 2 paths)" in finding and "commits" not in finding
    repo.write("new\nname.txt", f"{v[name]}\n")
    text = kr("leaks", "scan", str(repo.path)).out
    assert "work tree file new\\nname.txt line 1" in text


def test_keyrolls_own_folders_are_left_out_of_a_folder_scan(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The store, the backups and the state hold the values by design: a folder scan
    that reaches them (or is given one) leaves them out and says so, rather than calling
    every value leaked; a copy elsewhere in the folder is still found."""
    v = values(initialized)
    name = sorted(v)[0]
    assert kr("rotate", name).code == 0  # (a backup exists)
    (initialized.root / "copy.txt").write_text(f"{v[name]}\n")
    result = kr("--json", "leaks", "scan", str(initialized.root))
    data = json.loads(result.out)["data"]["scan"]
    assert [(f["path"], f["status"]) for f in data["findings"]] == [(str(initialized.root / "copy.txt"), "retired")]
    assert result.code == 0
    for folder, what in (
        (initialized.secrets, "secrets"),
        (initialized.backups, "backup"),
        (initialized.state, "state"),
    ):
        assert f"{folder}: in keyroll's {what} folder (where the values belong): not scanned" in data["notes"]
    alone = kr("leaks", "scan", str(initialized.secrets))
    assert alone.code == 0 and "not scanned" in alone.out


def test_a_sha256_repository(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """In a repository with 64-character SHA-256 ids: a deleted file's blob is removed in
    the deleting commit, a staged file unchanged in the work tree is one finding (the
    index's blob), and a detached HEAD reaches its commit."""
    v = values(initialized)
    deleted, staged, detached = sorted(v)[:3]
    path = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", "--object-format=sha256", str(path)], check=True)
    repo = Repo.__new__(Repo)
    repo.path, repo.clock = path, 1_700_000_000
    repo.commit("add", **{"a.env": f"pw={v[deleted]}\n"})
    repo.git("rm", "-q", "a.env")
    removal = repo.commit("remove")
    repo.git("checkout", "-q", "--detach")
    on_head = repo.commit("detached", **{"d.txt": f"{v[detached]}\n"})
    repo.write("s.txt", f"{v[staged]}\n")
    repo.git("add", "s.txt")
    found = {f["secret"]: f for f in _findings(kr("--json", "leaks", "scan", str(repo.path)))}
    assert len(found) == 3 and len(_findings(kr("--json", "leaks", "scan", str(repo.path)))) == 3
    assert len(removal) == 64 and found[deleted]["removed_in"] == [removal]
    assert (found[staged]["where"], found[staged]["source"]) == ("index", "object")
    assert (found[detached]["refs"], found[detached]["first_commit"]) == (["HEAD (detached)"], on_head)


def test_repositories_inside_a_folder_are_scanned_as_repositories(kr, initialized, values, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`keyroll leaks scan /srv`, where /srv holds repositories: each one (work tree or
    bare) is read through git, so a value only in its history is found; read as files,
    its compressed objects hid it."""
    v = values(initialized)
    history, plain = sorted(v)[:2]
    top = tmp_path / "srv"
    repo = Repo(top / "app")
    repo.commit("add", **{"a.env": f"pw={v[history]}\n"})
    repo.git("rm", "-q", "a.env")
    repo.commit("remove")
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(top / "app.git")], check=True)
    (top / "notes.txt").write_text(f"{v[plain]}\n")
    result = kr("--json", "leaks", "scan", str(top))
    data = json.loads(result.out)["data"]["scan"]
    found = {(f["secret"], f["repository"], f["source"]) for f in data["findings"]}
    assert found == {
        (history, str(repo.path), "object"),
        (history, str(top / "app.git"), "object"),
        (plain, str(top), "file"),
    }
    kinds = {s["path"]: s["kind"] for s in data["scanned"]}
    assert kinds == {str(top): "folder", str(repo.path): "repository", str(top / "app.git"): "bare repository"}
