"""The foundation as a user drives it: init, rotate, set, backup, restore, status,
validate, config, locking and bad input, through `main([...])` with every path in
tmp_path (and a few through a real `python -m keyroll` subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

SEED = [
    "postgres_password",
    "redis_password",
    "grafana_admin_password",
    "stack_api_key",
    "aidb_api_key",
    "aider_wrapper_api_key",
    "container_engine_api_key",
    "dashboard_api_key",
    "embeddings_api_key",
    "hybrid_coordinator_api_key",
    "nixos_docs_api_key",
    "ralph_wiggum_api_key",
]
BACKUP_NAME = re.compile(r"^secrets_\d{8}_\d{6}(_\d{2})?$")


def assert_no_secret_in(text: str, values: dict[str, str]) -> None:
    for name, value in values.items():
        assert value.strip() not in text, f"the value of {name} was printed"


def backups_of(home) -> list[Path]:  # type: ignore[no-untyped-def]
    return sorted(p for p in home.backups.iterdir() if BACKUP_NAME.match(p.name)) if home.backups.exists() else []


# --- init -----------------------------------------------------------------------------


def test_init_creates_the_seed_secrets_private_and_well_formed(kr, home, values) -> None:  # type: ignore[no-untyped-def]
    result = kr("init")
    assert result.code == 0, result.both
    created = values(home)
    assert sorted(created) == sorted(SEED)
    for name, value in created.items():
        length = 64 if name.endswith("api_key") else 32
        assert re.fullmatch(rf"[A-Za-z0-9]{{{length}}}", value), name
        assert stat.S_IMODE((home.secrets / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(home.secrets.stat().st_mode) == 0o700
    assert stat.S_IMODE(home.state.stat().st_mode) == 0o700
    assert_no_secret_in(result.both, created)
    again = kr("init")
    assert again.code == 0 and "already initialized" in again.out
    assert values(home) == created


def test_init_adopts_existing_files_byte_for_byte(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.secrets.mkdir(mode=0o700)
    existing = "A" * 20 + "b" * 12
    (home.secrets / "postgres_password").write_text(existing + "\n")
    (home.secrets / "redis_password").write_text("short")
    result = kr("init")
    assert result.code == 0, result.both
    assert "postgres_password: adopted the existing file" in result.out
    assert "redis_password: adopted as it is, but it has 5 characters; the policy says 32" in result.out
    assert (home.secrets / "postgres_password").read_text() == existing + "\n"
    assert (home.secrets / "redis_password").read_text() == "short"
    status = json.loads(kr("status", "--json").out)["data"]["secrets"]
    states = {s["name"]: s["state"] for s in status}
    assert states["postgres_password"] == "OK"
    assert states["redis_password"] == "WRONG LENGTH"


def test_init_imports_the_old_tools_metadata(kr, home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home.secrets.mkdir(mode=0o700)
    value = "Q" * 32
    (home.secrets / "postgres_password").write_text(value)
    (home.secrets / "redis_password").write_text("R" * 32)
    metadata = {
        "postgres_password": {
            "created": "2024-01-02T03:04:05Z",
            "rotated": "2025-06-07T08:09:10Z",
            "type": "password",
            "hash": hashlib.sha256(value.encode()).hexdigest(),
        },
        "redis_password": {"created": "2024-01-01T00:00:00Z", "rotated": "2024-02-01T00:00:00Z", "hash": "0" * 64},
    }
    meta_file = tmp_path / "metadata.json"
    meta_file.write_text(json.dumps(metadata))
    result = kr("init", "--import-metadata", str(meta_file))
    assert result.code == 0, result.both
    assert "redis_password: the file differs from the old metadata's hash" in result.out
    status = {s["name"]: s for s in json.loads(kr("status", "--json").out)["data"]["secrets"]}
    assert status["postgres_password"]["created"] == "2024-01-02T03:04:05Z"
    assert status["postgres_password"]["rotated"] == "2025-06-07T08:09:10Z"
    assert status["postgres_password"]["overdue"] is True  # quarterly, last rotated in 2025
    assert status["redis_password"]["created"] != "2024-01-01T00:00:00Z"


def test_init_refuses_bad_metadata_before_changing_anything(kr, home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "meta.json"
    bad.write_text("{not json")
    result = kr("init", "--import-metadata", str(bad))
    assert result.code == 2
    assert f"{bad}: not valid JSON" in result.err and result.err.count("\n") == 1
    assert not home.secrets.exists() or not any(home.secrets.iterdir())
    bad.write_text(json.dumps({"postgres_password": {"created": "yesterday"}}))
    assert "postgres_password.created: 'yesterday' is not a date" in kr("init", "--import-metadata", str(bad)).err
    # A date in the future would switch rotation off for decades: refused, as is rotated before created.
    bad.write_text(json.dumps({"postgres_password": {"created": "2020-01-01T00:00:00Z", "rotated": "2999-01-01"}}))
    result = kr("init", "--import-metadata", str(bad))
    assert result.code == 2 and "postgres_password.rotated: 2999-01-01T00:00:00Z is in the future" in result.err
    bad.write_text(json.dumps({"postgres_password": {"created": "2024-01-01T00:00:00Z", "rotated": "2023-01-01"}}))
    result = kr("init", "--import-metadata", str(bad))
    assert result.code == 2 and "rotated (2023-01-01T00:00:00Z) is before created" in result.err
    assert not home.secrets.exists() or not any(home.secrets.iterdir())


def test_init_does_not_adopt_a_file_that_cannot_be_a_value(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.secrets.mkdir(mode=0o700)
    broken = {"postgres_password": b"", "redis_password": b"line1\nline2\n", "stack_api_key": b"   \n"}
    for name, content in broken.items():
        (home.secrets / name).write_bytes(content)
    result = kr("init")
    assert result.code == 1
    for name, content in broken.items():
        assert f"{name}: failed" in result.out + result.err and "not adopted" in result.both
        assert (home.secrets / name).read_bytes() == content  # left for a person to look at
    assert (home.secrets / "grafana_admin_password").exists()  # the others were created
    status = {s["name"]: s for s in json.loads(kr("status", "--json").out)["data"]["secrets"]}
    assert status["postgres_password"]["rotated"] is None  # nothing recorded for them


def test_init_gives_adopted_files_the_policy_mode(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.secrets.mkdir(mode=0o700)
    adopted = home.secrets / "postgres_password"
    adopted.write_text("Q" * 32)
    adopted.chmod(0o644)
    result = kr("init")
    assert result.code == 0, result.both
    assert stat.S_IMODE(adopted.stat().st_mode) == 0o600
    assert "postgres_password: mode 0600 and owner set as the policy says" in result.out
    (home.secrets / "redis_password").chmod(0o664)
    result = kr("init")
    assert result.code == 0 and "nothing to do" not in result.out
    assert stat.S_IMODE((home.secrets / "redis_password").stat().st_mode) == 0o600
    assert "nothing to do" in kr("init").out


def test_init_force_regenerates_everything_after_a_backup(kr, initialized, values) -> None:  # type: ignore[no-untyped-def]
    before = values(initialized)
    result = kr("init", "--force")
    assert result.code == 0, result.both
    after = values(initialized)
    assert all(after[n] != before[n] for n in SEED)
    (backup,) = backups_of(initialized)
    assert {n: (backup / n).read_text() for n in SEED} == before


# --- rotate ---------------------------------------------------------------------------


def test_rotate_all_backs_up_then_changes_every_value(kr, initialized, values) -> None:  # type: ignore[no-untyped-def]
    before = values(initialized)
    result = kr("rotate", "all")
    assert result.code == 0, result.both
    after = values(initialized)
    assert all(after[n] != before[n] for n in SEED)
    (backup,) = backups_of(initialized)
    assert f"backup: {backup}" in result.out
    assert {n: (backup / n).read_text() for n in SEED} == before
    assert "postgres_password: rotated in the store only" in result.out
    assert "postgres_password: apply it in PostgreSQL (ALTER ROLE ... PASSWORD), then restart aidb" in result.out
    assert "stack_api_key: restart every service of the stack" in result.out
    assert_no_secret_in(result.both, {**before, **{k + "_new": v for k, v in after.items()}})
    status = {s["name"]: s for s in json.loads(kr("status", "--json").out)["data"]["secrets"]}
    assert all(s["version"] == 2 and s["state"] == "OK" for s in status.values())


def test_rotate_named_secrets_only(kr, initialized, values) -> None:  # type: ignore[no-untyped-def]
    before = values(initialized)
    assert kr("rotate", "redis_password", "aidb_api_key").code == 0
    after = values(initialized)
    assert {n for n in SEED if after[n] != before[n]} == {"redis_password", "aidb_api_key"}


def test_rotate_dry_run_shows_the_plan_and_changes_nothing(kr, initialized, values) -> None:  # type: ignore[no-untyped-def]
    before = values(initialized)
    journal_before = (initialized.state / "journal.sqlite3").read_bytes()
    result = kr("rotate", "all", "--dry-run")
    assert result.code == 0
    assert "Plan (dry run, nothing changes)" in result.out
    assert "1. postgres_password" in result.out
    assert (
        "store only: postgres, aidb, hybrid-coordinator, health-monitor, ralph-wiggum will need the new value"
        in result.out
    )
    assert values(initialized) == before
    assert backups_of(initialized) == []
    # (SQLite may create its -wal/-shm companions for a reader; the journal itself is untouched.)
    assert (initialized.state / "journal.sqlite3").read_bytes() == journal_before
    plan = json.loads(kr("rotate", "all", "--dry-run", "--json").out)["data"]["plan"]
    assert [item["name"] for item in plan] == SEED


@pytest.mark.parametrize("name", ["nope", "../etc/passwd", "a/b", ".hidden", "x..y"])
def test_unknown_or_malicious_names_are_refused(kr, initialized, values, name: str) -> None:  # type: ignore[no-untyped-def]
    before = values(initialized)
    result = kr("rotate", name)
    assert result.code == 2
    assert result.err.count("\n") == 1
    if name == "nope":
        assert "unknown secret 'nope'; valid names: aidb_api_key, aider_wrapper_api_key" in result.err
    else:
        assert "is not a secret name" in result.err or "unknown secret" in result.err
    assert values(initialized) == before
    assert backups_of(initialized) == []


def test_rotate_without_names_is_a_usage_error(kr, initialized) -> None:  # type: ignore[no-untyped-def]
    assert kr("rotate").code == 2
    assert kr("rotate", "all", "aidb_api_key").code == 2


def test_a_missing_secret_is_not_rotated_blindly(kr, initialized, values) -> None:  # type: ignore[no-untyped-def]
    (initialized.secrets / "aidb_api_key").unlink()
    result = kr("rotate", "all")
    assert result.code == 1
    assert "aidb_api_key: failed (missing from the store, not rotated: `keyroll restore` brings it back" in result.out
    assert not (initialized.secrets / "aidb_api_key").exists()
    assert "redis_password: rotated" in result.out


def test_a_symlinked_secret_is_never_written_through(kr, initialized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "precious"
    outside.write_text("P" * 32)
    link = initialized.secrets / "redis_password"
    link.unlink()
    link.symlink_to(outside)
    for argv in (("rotate", "redis_password"), ("rotate", "all"), ("set", "redis_password")):
        result = kr(*argv, stdin="N" * 32)
        assert result.code == 1, result.both
        assert "redis_password: is a symlink" in result.both
        assert outside.read_text() == "P" * 32 and link.is_symlink()


# --- set ------------------------------------------------------------------------------


def test_set_refuses_bytes_that_are_not_utf8(krp, initialized, values) -> None:  # type: ignore[no-untyped-def]
    before = values(initialized)
    from tests_helpers import keyroll_argv

    done = subprocess.run(
        [*keyroll_argv(), "set", "redis_password"],
        input=b"abc\xff\xfedef1234567",
        capture_output=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.decode() == (
        "keyroll: error: redis_password: the value is not UTF-8 text: it must be one line of UTF-8 text; "
        "nothing was changed\n"
    )
    assert values(initialized) == before
    assert not backups_of(initialized)  # refused before the transaction's backup


def test_set_reads_the_value_from_stdin_only(kr, home, krp) -> None:  # type: ignore[no-untyped-def]
    value = "Zz9" * 10 + "ab"
    result = kr("set", "postgres_password", stdin=value + "\n")  # works before init
    assert result.code == 0, result.both
    assert "Stored only: if the services do not have this value yet" in result.out  # (adopting is the usual case)
    assert (home.secrets / "postgres_password").read_text() == value
    assert value not in result.both
    assert kr("set", "postgres_password", value).code == 2  # no value in argv
    status = {s["name"]: s["state"] for s in json.loads(kr("status", "--json").out)["data"]["secrets"]}
    assert status["postgres_password"] == "OK"
    for bad in ("", "two\nlines", "nul\0byte"):
        refused = kr("set", "postgres_password", stdin=bad)
        assert refused.code == 2 and "nothing was changed" in refused.err
    assert (home.secrets / "postgres_password").read_text() == value
    # A value that departs from the policy is refused, naming the rule, and nothing changes...
    backups = sorted(home.backups.iterdir()) if home.backups.exists() else []
    weak = kr("set", "postgres_password", stdin="tooShort/+=\n")
    assert weak.code == 2 and "outside its alphabet" in weak.err and "nothing was changed" in weak.err
    assert "--allow-weak" in weak.err and "tooShort" not in weak.both
    assert (home.secrets / "postgres_password").read_text() == value
    assert (sorted(home.backups.iterdir()) if home.backups.exists() else []) == backups  # not even a backup
    short = kr("set", "postgres_password", stdin="Ab1" * 5)
    assert short.code == 2 and "has 15 characters; the policy says 32" in short.err
    # ...unless it is adopted deliberately: stored, with a warning.
    adopted = kr("set", "postgres_password", "--allow-weak", stdin="tooShort/+=\n")
    assert adopted.code == 0 and "has" in adopted.out and "outside its alphabet" in adopted.out
    assert "`keyroll rotate postgres_password` replaces it" in adopted.out and "tooShort" not in adopted.both
    assert (home.secrets / "postgres_password").read_text() == "tooShort/+="
    status = {s["name"]: s["state"] for s in json.loads(kr("status", "--json").out)["data"]["secrets"]}
    assert status["postgres_password"] == "WRONG LENGTH"


# --- backup, list-backups, restore ----------------------------------------------------------


def test_backup_is_a_verified_private_timestamped_folder(kr, initialized) -> None:  # type: ignore[no-untyped-def]
    (initialized.secrets / "aidb_api_key").write_bytes((initialized.secrets / "aidb_api_key").read_bytes() + b"\n")
    first, second = kr("backup"), kr("backup")
    assert first.code == second.code == 0
    paths = [Path(first.out.strip()), Path(second.out.strip())]
    assert paths[0] != paths[1]
    for path in paths:
        assert BACKUP_NAME.match(path.name), path.name
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        for name in SEED:
            assert (path / name).read_bytes() == (initialized.secrets / name).read_bytes()
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["format"] == 1 and manifest["store"] == "directory" and manifest["secrets"] == 12
        for name, entry in manifest["files"].items():
            assert entry["sha256"] == hashlib.sha256((path / name).read_bytes()).hexdigest()
        assert (path / "metadata.json").exists()
    listing = json.loads(kr("list-backups", "--json").out)
    assert listing["format"] == "keyroll/1"
    names = [b["name"] for b in listing["data"]["backups"]]
    assert names == sorted(names, reverse=True) == [p.name for p in reversed(paths)]
    assert all(b["verified"] and b["secrets"] == 12 and b["size"] > 0 for b in listing["data"]["backups"])


def test_two_backups_in_one_second_get_ordered_suffixes(initialized) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from keyroll.backup import backup_name

    now = datetime(2026, 11, 28, 15, 4, 5, tzinfo=UTC)
    taken: set[str] = set()
    names = []
    for _ in range(3):
        names.append(backup_name(now, taken))
        taken.add(names[-1])
    assert names == ["secrets_20261128_150405", "secrets_20261128_150405_01", "secrets_20261128_150405_02"]
    later = backup_name(datetime(2026, 11, 28, 15, 4, 6, tzinfo=UTC), taken)
    assert sorted([*names, later]) == [*names, later]  # name order is time order


def test_retention_keeps_the_newest_backups(kr, initialized) -> None:  # type: ignore[no-untyped-def]
    initialized.write_config("[backup]\nkeep = 3\n[secrets.aidb_api_key]\nkind = 'api_key'\n")
    made = [kr("--config", str(initialized.config), "backup").out.strip() for _ in range(5)]
    assert [str(p) for p in backups_of(initialized)] == made[-3:]


def test_restore_brings_values_back_through_a_pre_restore_backup(kr, initialized, values) -> None:  # type: ignore[no-untyped-def]
    original = values(initialized)
    assert kr("rotate", "all").code == 0
    rotated = values(initialized)
    (backup,) = backups_of(initialized)
    dry = kr("restore", backup.name, "--dry-run")
    assert dry.code == 0 and "would restore: postgres_password" in dry.out
    assert values(initialized) == rotated
    result = kr("restore", backup.name)
    assert result.code == 0, result.both
    assert values(initialized) == original
    pre = [b for b in backups_of(initialized) if b != backup]
    assert len(pre) == 1 and f"pre-restore backup: {pre[0]}" in result.out
    assert {n: (pre[0] / n).read_text() for n in SEED} == rotated
    assert json.loads((pre[0] / "manifest.json").read_text())["reason"] == "before restore"
    # by path, and again: nothing differs any more
    again = kr("restore", str(backup))
    assert again.code == 0 and "already equal" in again.out
    assert len(backups_of(initialized)) == 2  # nothing to restore: no new pre-restore backup
    assert_no_secret_in(result.both + again.both, {**original, **{k + "r": v for k, v in rotated.items()}})
    history = json.loads(kr("history", "postgres_password", "--json").out)["data"]["entries"]
    assert [h["outcome"] for h in history] == ["restored", "rotated", "created"]


@pytest.mark.parametrize("damage", ["tamper", "delete", "extra", "manifest", "list", "shape"])
def test_restore_refuses_a_damaged_backup_naming_the_file(kr, initialized, values, damage: str) -> None:  # type: ignore[no-untyped-def]
    backup = Path(kr("backup").out.strip())
    kr("rotate", "all")
    before = values(initialized)
    count = len(backups_of(initialized))
    if damage == "tamper":
        (backup / "redis_password").write_text("X" * 32)
        expected = f"{backup / 'redis_password'}: checksum mismatch"
    elif damage == "delete":
        (backup / "redis_password").unlink()
        expected = f"{backup / 'redis_password'}: missing; the backup is incomplete"
    elif damage == "extra":
        (backup / "evil").write_text("x")
        expected = f"{backup / 'evil'}: not listed in the manifest"
    else:
        damaged = {
            "manifest": "{",
            "list": "[]",
            "shape": json.dumps({"format": 1, "files": {"a": "x"}, "metadata": "x"}),
        }
        (backup / "manifest.json").write_text(damaged[damage])
        expected = f"{backup / 'manifest.json'}: unreadable or damaged manifest"
    result = kr("restore", backup.name)
    assert result.code == 1
    assert expected in result.err and result.err.count("\n") == 1
    assert values(initialized) == before
    assert len(backups_of(initialized)) == count  # not even a pre-restore backup
    listing = {b["name"]: b for b in json.loads(kr("list-backups", "--json").out)["data"]["backups"]}
    assert listing[backup.name]["verified"] is False


def test_restore_of_missing_or_malformed_backup_names(kr, initialized, values, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(initialized.secrets)  # relative paths resolve the same on every machine
    before = values(initialized)
    missing = kr("restore", "secrets_20200101_000000")
    assert missing.code == 2 and "no such backup" in missing.err
    assert kr("restore", "../../no-such-folder").code == 2
    not_a_backup = kr("restore", "..")  # a folder that exists but holds no manifest
    assert not_a_backup.code == 1 and not_a_backup.err.count("\n") == 1
    assert kr("restore", "../secrets").code == 1
    assert "is not a backup name" in kr("restore", "latest").err
    assert values(initialized) == before


def test_retention_never_deletes_the_backup_being_restored(kr, initialized, values) -> None:  # type: ignore[no-untyped-def]
    initialized.write_config("[backup]\nkeep = 1\n")
    cfg = ("--config", str(initialized.config))
    original = values(initialized)
    oldest = Path(kr(*cfg, "backup").out.strip())
    (initialized.secrets / "aidb_api_key").write_text("b" * 64)
    assert kr(*cfg, "restore", str(oldest)).code == 0
    assert values(initialized) == original


# --- status and validate --------------------------------------------------------------


def test_status_reports_every_state_without_values(kr, initialized, values) -> None:  # type: ignore[no-untyped-def]
    vals = values(initialized)
    (initialized.secrets / "aidb_api_key").unlink()
    (initialized.secrets / "redis_password").write_text("x" * 31)
    (initialized.secrets / "grafana_admin_password").write_text("G" * 32)
    os.chmod(initialized.secrets / "dashboard_api_key", 0o640)
    result = kr("status")
    assert result.code == 0
    text = result.out
    assert re.search(r"aidb_api_key\s+MISSING", text)
    assert re.search(r"redis_password\s+MODIFIED", text)
    assert re.search(r"grafana_admin_password\s+MODIFIED", text)
    assert re.search(r"dashboard_api_key\s+BAD MODE", text)
    assert re.search(r"postgres_password\s+OK\s+32\s+password 32c/190b", text)
    assert "31 characters; the policy says 32" in text
    assert_no_secret_in(text, vals)
    envelope = json.loads(kr("status", "--json").out)
    assert envelope["format"] == "keyroll/1" and envelope["command"] == "status" and envelope["ok"] is True
    entries = {s["name"]: s for s in envelope["data"]["secrets"]}
    assert entries["postgres_password"]["entropy_bits"] == 190 and entries["stack_api_key"]["entropy_bits"] == 381
    assert entries["aidb_api_key"]["state"] == "MISSING"
    assert entries["postgres_password"]["next_due"] is not None and entries["postgres_password"]["age_days"] == 0


def test_status_before_init_writes_nothing(kr, home) -> None:  # type: ignore[no-untyped-def]
    result = kr("status")
    assert result.code == 0 and "run `keyroll init`" in result.out
    assert not home.state.exists() and not home.secrets.exists()
    assert kr("validate").code == 1


def test_validate_passes_after_init_and_catches_each_problem(kr, initialized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from keyroll.actions.validate import git_exposure

    ok = kr("validate")
    assert ok.code == 0, ok.out
    # The one warning the machine can add: $TMPDIR (or /tmp) inside a git work tree that does not ignore it.
    outer_work_tree = git_exposure(initialized.secrets) is not None
    assert f"0 failed, {int(outer_work_tree)} warnings" in ok.out
    s = initialized.secrets
    os.chmod(s / "aidb_api_key", 0o620)
    os.chmod(s / "embeddings_api_key", 0o644)
    (s / "redis_password").write_text("")
    (s / "stray").write_text("x")
    (s / "grafana_admin_password").write_text("G" * 32)
    result = kr("validate", "--json")
    assert result.code == 1
    findings: dict[tuple[str, str], list[str]] = {}
    for f in json.loads(result.out)["data"]["findings"]:
        findings.setdefault((f["level"], f["subject"]), []).append(f["message"])
    assert findings[("fail", "aidb_api_key")] == ["mode 0620: writable by group or others"]
    assert findings[("fail", "embeddings_api_key")] == ["mode 0644 is more open than the policy (0600)"]
    assert "the value is empty" in findings[("fail", "redis_password")]
    assert findings[("fail", "grafana_admin_password")] == [
        "changed outside keyroll: its fingerprint differs from the journal's"
    ]
    assert findings[("warn", "stray")][0].startswith("unknown file in")
    assert ("ok", "postgres_password") in findings


def test_validate_warns_about_world_readable_files_the_policy_allows(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config("[defaults]\nmode = '0644'\n")
    cfg = ("--config", str(home.config))
    assert kr(*cfg, "init").code == 0
    assert stat.S_IMODE((home.secrets / "aidb_api_key").stat().st_mode) == 0o644
    assert stat.S_IMODE(home.secrets.stat().st_mode) == 0o711  # passable, never listable
    result = kr(*cfg, "validate", "--json")
    assert result.code == 0
    findings = json.loads(result.out)["data"]["findings"]
    assert any(f["level"] == "warn" and "readable by every user" in f["message"] for f in findings)


def test_validate_warns_when_secrets_sit_unignored_in_a_git_work_tree(kr, home) -> None:  # type: ignore[no-untyped-def]
    subprocess.run(["git", "init", "-q", str(home.root)], check=True)
    assert kr("init").code == 0
    warning = "is not ignored: add it to .gitignore"
    assert warning in kr("validate").out
    (home.root / ".gitignore").write_text("secrets/\nbackups/\n")  # (the backups folder is warned about too)
    assert warning not in kr("validate").out


# --- locking, config, bad environment -------------------------------------------------------------


def test_a_second_writer_exits_3_or_waits(kr, initialized) -> None:  # type: ignore[no-untyped-def]
    from keyroll.lock import FileLock

    lock = FileLock(initialized.state / "writer.lock", "writer").acquire()
    try:
        result = kr("rotate", "all")
        assert result.code == 3
        assert "another keyroll (pid" in result.err and "--wait" in result.err
        threading.Timer(0.3, lock.release).start()
        started = time.monotonic()
        waited = kr("rotate", "aidb_api_key", "--wait", "5")
        assert waited.code == 0, waited.both
        assert time.monotonic() - started >= 0.25
    finally:
        lock.release()


def test_config_commands(kr, home) -> None:  # type: ignore[no-untyped-def]
    generated = home.root / "generated.toml"
    assert kr("config", "generate", str(generated)).code == 0
    assert stat.S_IMODE(generated.stat().st_mode) == 0o600
    assert kr("config", "generate", str(generated)).code == 2  # no silent overwrite
    assert kr("--config", str(generated), "config", "validate", "--static").code == 0
    shown = kr("--config", str(generated), "config", "show")
    assert shown.code == 0 and f'secrets_dir = "{home.secrets}"' in shown.out
    home.write_config("[secrets.a]\nlength = 'x'\n")
    bad = kr("--config", str(home.config), "config", "validate")
    assert bad.code == 2 and "secrets.a.length: expected an integer" in bad.err
    home.write_config("[secrets.a\n")
    assert f"{home.config}: invalid TOML" in kr("--config", str(home.config), "status").err
    home.write_config(
        '[targets.pg]\ntype = "postgres"\nuser = "app"\nadmin_user = "postgres"\n'
        'admin_password_file = "credential:pg-admin"\n[secrets.pgpw]\ntarget = "pg"\n'
    )
    findings = json.loads(kr("--config", str(home.config), "config", "validate", "--json").out)["data"]["findings"]
    failed = [f["subject"] for f in findings if f["level"] == "fail"]
    assert failed == ["targets.pg.admin_password_file"]  # one problem, reported once
    home.write_config(
        '[secrets.app_key]\nkind = "api_key"\n'
        'restart = ["command:/nonexistent/reload app", "command:true"]\nhealth = ["command:/nonexistent/check"]\n'
    )
    checked = kr("--config", str(home.config), "config", "validate")
    assert checked.code == 1 and "in place" not in checked.out
    assert "secrets.app_key.restart" in checked.out and "/nonexistent/reload: not found" in checked.out
    assert "secrets.app_key.health" in checked.out and "/nonexistent/check: not found" in checked.out
    assert kr("--config", str(home.config), "config", "validate", "--static").code == 0
    home.write_config('[secrets.app_key]\nkind = "api_key"\nrestart = ["command:reload \'unclosed"]\n')
    unbalanced = kr("--config", str(home.config), "config", "validate")
    assert unbalanced.code == 2 and unbalanced.err.count("\n") == 1
    assert "secrets.app_key.restart" in unbalanced.err and "No closing quotation" in unbalanced.err


def test_a_read_only_secrets_folder_fails_cleanly(kr, home, tiny_fs: Path) -> None:  # type: ignore[no-untyped-def]
    ro = tiny_fs / "ro"
    ro.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], check=True)
    try:
        os.environ["KEYROLL_SECRETS_DIR"] = str(ro)
        result = kr("init")
        assert result.code == 1
        assert "read-only file system" in result.both
        assert len(result.err.strip().splitlines()) <= 1
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_a_full_disk_fails_cleanly_and_loses_nothing(kr, home, values, tiny_fs: Path) -> None:  # type: ignore[no-untyped-def]
    from tests_helpers import fill_disk

    folder = tiny_fs / "secrets-full"
    folder.mkdir(exist_ok=True)
    os.environ["KEYROLL_SECRETS_DIR"] = str(folder)
    assert kr("init").code == 0
    before = {p.name: p.read_text() for p in folder.iterdir()}
    filler = tiny_fs / "filler"
    fill_disk(filler)
    try:
        result = kr("rotate", "all")
        assert result.code == 1
        assert "no space left on the device" in result.out
        assert {p.name: p.read_text() for p in folder.iterdir()} == before
    finally:
        filler.unlink()
    assert kr("validate").code == 0


def test_subprocess_entry_points(krp, home) -> None:  # type: ignore[no-untyped-def]
    assert krp("init").code == 0
    status = krp("status", "--json")
    assert status.code == 0 and len(json.loads(status.out)["data"]["secrets"]) == 12
    bare = krp()
    assert bare.code == 0 and "usage: keyroll" in bare.out  # no terminal: help, not the menu
    error = krp("rotate", "nope")
    assert error.code == 2 and "Traceback" not in error.err


def test_verbose_and_json_go_before_or_after_the_command(kr, initialized) -> None:  # type: ignore[no-untyped-def]
    for argv in (("-v", "rotate", "nosuch"), ("rotate", "-v", "nosuch")):
        result = kr(*argv)
        assert result.code == 2 and "Traceback" in result.err and "unknown secret 'nosuch'" in result.err
    assert json.loads(kr("rotate", "--json", "nosuch").out)["exit_code"] == 2


def test_usage_errors(kr, initialized, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(initialized.root)  # where a file named "-" would land
    envelope = kr("--json", "rotate", "--bogus")
    assert envelope.code == 2 and json.loads(envelope.out)["exit_code"] == 2  # --json even for usage errors
    assert "is not a number of seconds" in kr("rotate", "all", "--wait", "soon").err
    assert kr("rotate", "all", "--wait", "nan").code == 2
    assert kr("rotate", "all", "--wait", "-1").code == 2
    assert kr("history", "--limit", "0").code == 2
    generated = kr("config", "generate", "-")
    assert generated.code == 0 and generated.out.startswith("# keyroll configuration")
    assert not Path("-").exists()


def test_list_backups_fails_when_a_backup_does_not_verify(kr, initialized) -> None:  # type: ignore[no-untyped-def]
    backup = Path(kr("backup").out.strip())
    assert kr("list-backups").code == 0
    (backup / "aidb_api_key").write_text("x")
    assert kr("list-backups").code == 1


def test_owner_group_and_mode_for_a_service_account(kr, home) -> None:  # type: ignore[no-untyped-def]
    import grp
    import pwd

    from tests_helpers import in_ci

    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("giving a file to another user needs root")
        pytest.skip("giving a file to another user needs root")
    group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name  # nogroup on Debian, nobody on Fedora or Arch
    home.write_config(
        f'[defaults]\nowner = "nobody"\ngroup = "{group}"\nmode = "0640"\n[secrets.svc_key]\nkind = "api_key"\n'
    )
    cfg = ("--config", str(home.config))
    assert kr(*cfg, "init").code == 0
    info = (home.secrets / "svc_key").stat()
    assert (info.st_uid, info.st_gid) == (pwd.getpwnam("nobody").pw_uid, grp.getgrnam(group).gr_gid)
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert kr(*cfg, "rotate", "all").code == 0
    assert (home.secrets / "svc_key").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    assert kr(*cfg, "validate").code == 0
    os.chown(home.secrets / "svc_key", 0, 0)  # changed by hand: init puts the owner back
    (home.secrets / "svc_key").chmod(0o600)
    repaired = kr(*cfg, "init")
    assert repaired.code == 0 and "svc_key: mode 0640 and owner set as the policy says" in repaired.out
    info = (home.secrets / "svc_key").stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
        pwd.getpwnam("nobody").pw_uid,
        grp.getgrnam(group).gr_gid,
        0o640,
    )
    home.write_config('[defaults]\nowner = "no-such-user"\n[secrets.svc_key]\nkind = "api_key"\n')
    checked = kr(*cfg, "config", "validate")
    assert checked.code == 1 and "user 'no-such-user' does not exist on this machine" in checked.out


def test_status_loads_nothing_heavy(krp, initialized) -> None:  # type: ignore[no-untyped-def]
    """Start-up stays light: without a terminal, `status` imports no service client, no
    scheduler, no rich, no OpenSSL (keyroll.digest) and not `typing` (bench/README.md)."""
    result = krp("status", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.code == 0, result.both
    loaded = {line.split("|")[-1].strip() for line in result.err.splitlines() if line.startswith("import time:")}
    assert "keyroll.journal" in loaded  # the probe sees keyroll's own imports
    assert not {m for m in loaded if m.split(".")[0] in HEAVY | {"typing", "tomllib", "json"}}


HEAVY = {
    "psycopg",
    "redis",
    "pymysql",
    "pika",
    "apprise",
    "apscheduler",
    "rich",
    "prometheus_client",
    "lightkube",
    "ahocorasick_rs",
    "pyrage",
    "yaml",
    "ssl",
    "_hashlib",
}


def test_status_loads_nothing_heavy_with_every_feature_configured(krp, home) -> None:  # type: ignore[no-untyped-def]
    """An http target, an alternating postgres target, Kubernetes and metrics in the
    config import none of their clients for `status` (tomllib reads the config)."""
    home.write_config(
        '[metrics]\ntextfile = "metrics/keyroll.prom"\n[kubernetes]\npublish = false\n'
        '[targets.api]\ntype = "http"\nbase_url = "https://127.0.0.1:9"\n'
        'apply = { method = "PUT", path = "/u", json = { password = "{value}" } }\n'
        'verify = { method = "GET", path = "/w", auth = "basic:app:{value}" }\n'
        '[targets.pg]\ntype = "postgres"\nuser = "app"\nadmin_user = "postgres"\n'
        'strategy = "alternating"\nusername_secret = "pg_user"\n'
        '[secrets.api_password]\ntarget = "api"\nkubernetes = ["db/password"]\n'
        '[secrets.pg_password]\ntarget = "pg"\n[secrets.pg_user]\nkind = "username"\n'
    )
    result = krp("--config", str(home.config), "status", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.code == 0, result.both
    loaded = {line.split("|")[-1].strip() for line in result.err.splitlines() if line.startswith("import time:")}
    assert "keyroll.config.httpspec" in loaded  # the probe sees the new features' config
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_backup_names_a_secret_it_could_not_hold(kr, initialized) -> None:  # type: ignore[no-untyped-def]
    target = initialized.secrets / "redis_password"
    target.unlink()
    target.symlink_to("/etc/hostname")
    result = kr("backup")
    assert result.code == 1
    assert "keyroll: error: redis_password is not in this backup:" in result.err and "symlink" in result.err
    (made,) = backups_of(initialized)
    manifest = json.loads((made / "manifest.json").read_text())
    assert manifest["secrets"] == 11 and "redis_password" not in manifest["files"]
    assert json.loads(kr("list-backups", "--json").out)["data"]["backups"][0]["secrets"] == 11


def test_the_menu_needs_a_terminal(krp, initialized) -> None:  # type: ignore[no-untyped-def]
    result = krp("menu", stdin="")
    assert result.code == 2 and result.out == ""
    assert (
        result.err == "keyroll: error: the menu needs a terminal; without one, run a command (see `keyroll --help`)\n"
    )
    envelope = json.loads(krp("--json", "menu", stdin="").out)
    assert envelope["exit_code"] == 2 and envelope["ok"] is False


def test_an_owner_that_does_not_exist_is_a_config_error_before_any_work(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config('[defaults]\nowner = "no-such-user-here"\n')
    result = kr("--config", str(home.config), "init")
    assert result.code == 2
    assert result.err.count("\n") == 1 and "owner: user 'no-such-user-here' does not exist" in result.err
    assert not home.secrets.exists() and not home.backups.exists()


def test_status_points_to_restore_when_a_recorded_secret_is_gone(kr, initialized) -> None:  # type: ignore[no-untyped-def]
    (initialized.secrets / "redis_password").unlink()
    result = kr("status")
    assert "redis_password: missing from the store, though keyroll recorded it" in result.out
    assert "`keyroll restore`" in result.out


def test_status_size_is_the_values_length_without_the_trailing_newline(kr, initialized) -> None:  # type: ignore[no-untyped-def]
    (initialized.secrets / "redis_password").write_text("x" * 30 + "\n")
    entry = next(s for s in json.loads(kr("status", "--json").out)["data"]["secrets"] if s["name"] == "redis_password")
    assert entry["size"] == 30 and entry["state"] in ("MODIFIED", "WRONG LENGTH")


def test_long_name_lists_stay_one_short_line(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config("".join(f'[secrets.key_{i:03d}]\nkind = "api_key"\n' for i in range(300)))
    cfg = ("--config", str(home.config))
    assert kr(*cfg, "init").code == 0
    backup = kr(*cfg, "backup").out.strip()
    restored = kr(*cfg, "restore", backup)
    assert restored.code == 0
    (equal,) = [line for line in restored.out.splitlines() if line.startswith("already equal")]
    assert equal.endswith("key_019 and 280 more") and len(equal) < 400
    everything = json.loads(kr(*cfg, "restore", backup, "--json").out)["data"]["unchanged"]
    assert len(everything) == 300  # --json keeps every name
