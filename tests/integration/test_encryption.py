"""Encrypted backups (`[backup] encrypt_to`, age via pyrage) and REQUIRE_ENCRYPTED_SECRETS
for backups: what is stored, how it verifies, how it restores, and what is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyrage
import pytest

from keyroll import backup as backups
from keyroll.config.policy import load_policy
from keyroll.errors import BackupError, ConfigError, EncryptionRequired

SECRETS = """
[secrets.db_password]
kind = "password"

[secrets.api_key]
kind = "api_key"
"""


def new_identity(path: Path) -> str:
    identity = pyrage.x25519.Identity.generate()
    path.write_text(f"{identity}\n")
    path.chmod(0o600)
    return str(identity.to_public())


@pytest.fixture
def encrypted_home(home, kr):  # type: ignore[no-untyped-def]
    """A directory store whose backups are encrypted to one age recipient."""
    key = home.root / "backup.key"
    recipient = new_identity(key)
    home.write_config(f'[backup]\nencrypt_to = ["{recipient}"]\n{SECRETS}')
    assert kr("--config", str(home.config), "init").code == 0
    return home, key, recipient


def _values(home) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {p.name: p.read_text() for p in home.secrets.iterdir()}


def test_an_encrypted_backup_holds_no_plaintext_and_verifies_without_a_key(kr, encrypted_home) -> None:  # type: ignore[no-untyped-def]
    home, _key, recipient = encrypted_home
    values = _values(home)
    result = kr("--config", str(home.config), "backup")
    assert result.code == 0, result.both
    folder = next(p for p in home.backups.iterdir() if p.name.startswith("secrets_"))
    assert sorted(p.name for p in folder.iterdir()) == [
        "api_key.age",
        "db_password.age",
        "manifest.json",
        "metadata.json",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["encrypted"] is True and manifest["encryption"] == "age" and manifest["recipients"] == [recipient]
    for name in values:
        stored = (folder / f"{name}.age").read_bytes()
        assert manifest["files"][f"{name}.age"]["sha256"] == backups.sha256_hex(stored)
        assert stored.startswith(b"age-encryption.org/v1")
    for path in folder.iterdir():
        assert not [v for v in values.values() if v.encode() in path.read_bytes()]
    listed = kr("--config", str(home.config), "list-backups", "--json")
    assert listed.code == 0 and '"verified": true' in listed.out and '"encrypted": true' in listed.out
    contents = backups.read_backup(folder, decrypt=False)  # verification alone needs no key
    assert set(contents.files) == {"api_key.age", "db_password.age"}


def test_an_encrypted_backup_restores_with_the_identity(kr, encrypted_home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    home, key, _recipient = encrypted_home
    cfg = ("--config", str(home.config))
    before = _values(home)
    assert kr(*cfg, "rotate", "all").code == 0  # takes an encrypted backup of `before` first
    folder = sorted(p for p in home.backups.iterdir() if p.name.startswith("secrets_"))[0]

    with pytest.raises(BackupError, match="no age identity found"):
        backups.read_backup(folder)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key))
    assert backups.read_backup(folder).files == {n: v.encode() for n, v in before.items()}
    result = kr(*cfg, "restore", folder.name)
    assert result.code == 0, result.both
    assert _values(home) == before


def test_the_identity_can_come_from_the_config_or_a_systemd_credential(encrypted_home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    home, key, _recipient = encrypted_home
    text = home.config.read_text()
    home.write_config(f'[store]\nage_key_file = "{key.name}"\n{text}')
    policy = load_policy(str(home.config))
    from keyroll.rotation import WriterSession

    with WriterSession(policy) as session:
        folder = session.backup("test")
    assert folder is not None
    assert set(backups.read_backup(folder, policy).files) == {"db_password", "api_key"}

    credentials = home.root / "credentials"
    credentials.mkdir()
    (credentials / "age-key").write_bytes(key.read_bytes())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    home.write_config(text)
    assert set(backups.read_backup(folder, load_policy(str(home.config))).files) == {"db_password", "api_key"}


def test_a_wrong_identity_or_a_damaged_file_is_one_line(encrypted_home, home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _home, _key, _recipient = encrypted_home
    policy = load_policy(str(home.config))
    from keyroll.rotation import WriterSession

    with WriterSession(policy) as session:
        folder = session.backup("test")
    assert folder is not None
    other = home.root / "other.key"
    new_identity(other)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(other))
    with pytest.raises(BackupError) as caught:
        backups.read_backup(folder)
    assert "encrypted to other keys" in str(caught.value) and "\n" not in str(caught.value)
    stored = folder / "api_key.age"
    stored.chmod(0o600)
    stored.write_bytes(stored.read_bytes()[:-1] + b"x")
    with pytest.raises(BackupError, match="checksum mismatch"):
        backups.read_backup(folder, decrypt=False)


def test_a_bad_recipient_is_refused_before_anything_is_written(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config(f'[backup]\nencrypt_to = ["age1notarecipient"]\n{SECRETS}')
    cfg = ("--config", str(home.config))
    # The schema checks recipients: every command refuses the config before writing anything.
    for argv in (("init",), ("backup",), ("rotate", "all")):
        result = kr(*cfg, *argv)
        assert result.code == 2 and "backup.encrypt_to" in result.err and "is not an age recipient" in result.err
    assert "is not an age recipient" in kr(*cfg, "config", "validate", "--static").err
    assert not home.secrets.exists() and not home.backups.exists()


def test_require_encrypted_refuses_a_plaintext_backup_before_writing(tmp_path: Path) -> None:
    target = tmp_path / "backups"
    arguments = {
        "store_kind": "directory",
        "reason": "test",
        "now": datetime.now(UTC),
        "keep": 5,
        "secret_count": 1,
    }
    with pytest.raises(EncryptionRequired, match="encryption is required"):
        backups.create_backup(target, {"a": b"value"}, {}, require_encrypted=True, **arguments)  # type: ignore[arg-type]
    assert not target.exists()
    key = tmp_path / "k"
    recipient = new_identity(key)
    made = backups.create_backup(
        target,
        {"a": b"value"},
        {},
        require_encrypted=True,
        encrypt_to=[recipient],
        **arguments,  # type: ignore[arg-type]
    )
    assert sorted(p.name for p in made.iterdir()) == ["a.age", "manifest.json", "metadata.json"]
    with pytest.raises(ConfigError, match=r"backup\.encrypt_to"):
        backups.create_backup(target, {"a": b"v"}, {}, encrypt_to=["nope"], **arguments)  # type: ignore[arg-type]


def test_a_sops_store_backup_is_not_encrypted_twice(kr, home) -> None:  # type: ignore[no-untyped-def]
    key = home.root / "age.key"
    recipient = new_identity(key)
    (home.root / ".sops.yaml").write_text(f"creation_rules:\n  - age: {recipient}\n")
    backup_key = home.root / "backup.key"
    home.write_config(
        f'[store]\nkind = "sops"\nage_key_file = "age.key"\n'
        f'[backup]\nencrypt_to = ["{new_identity(backup_key)}"]\n{SECRETS}'
    )
    cfg = ("--config", str(home.config))
    assert kr(*cfg, "init").code == 0
    assert kr(*cfg, "backup").code == 0
    folder = next(p for p in home.backups.iterdir() if p.name.startswith("secrets_"))
    assert (folder / "secrets.sops.yaml").read_bytes() == (home.root / "secrets.sops.yaml").read_bytes()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["encryption"] == "sops" and "recipients" not in manifest
