"""The one rule for path options of a config file (`keyroll.paths.resolve_config_path`):
relative to the config file's folder, never the working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keyroll.config.kubernetes import kubeconfig_path
from keyroll.errors import ConfigError
from keyroll.paths import Paths, resolve_config_path


def test_an_absolute_path_is_kept(tmp_path: Path) -> None:
    assert resolve_config_path("/etc/keyroll/ca.pem", tmp_path, key="x") == Path("/etc/keyroll/ca.pem")
    assert resolve_config_path("/etc/keyroll/ca.pem", None, key="x") == Path("/etc/keyroll/ca.pem")


def test_a_relative_path_is_relative_to_the_config_folder_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config_dir = tmp_path / "etc"
    assert resolve_config_path("sub/file.txt", config_dir, key="x") == config_dir / "sub" / "file.txt"
    assert resolve_config_path("../up.txt", config_dir, key="x") == config_dir / ".." / "up.txt"


def test_a_tilde_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_config_path("~/kube.yaml", Path("/etc/keyroll"), key="x") == tmp_path / "home" / "kube.yaml"
    assert resolve_config_path("~/kube.yaml", None, key="x") == tmp_path / "home" / "kube.yaml"


def test_credential_names_a_systemd_credential_when_the_option_allows_it(tmp_path: Path) -> None:
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    assert resolve_config_path("credential:pg-admin", None, key="x", env=env) == tmp_path / "creds" / "pg-admin"
    with pytest.raises(ConfigError) as caught:
        resolve_config_path("credential:pg-admin", tmp_path, key="targets.pg.admin_password_file", env={})
    assert str(caught.value) == (
        "targets.pg.admin_password_file: credential:pg-admin: $CREDENTIALS_DIRECTORY is not set (no systemd credentials)"
    )
    # Options that take no credential (no env given) read the text as a file name.
    assert resolve_config_path("credential:x", tmp_path, key="x") == tmp_path / "credential:x"


def test_a_relative_path_without_a_config_file_is_a_one_line_error_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        resolve_config_path("metrics.prom", None, key="metrics.textfile")
    message = str(caught.value)
    assert message.startswith("metrics.textfile: metrics.prom: ") and "\n" not in message
    with pytest.raises(ConfigError, match=r"^kubernetes\.kubeconfig: kube\.yaml: "):
        kubeconfig_path("kube.yaml", {}, None)
    with pytest.raises(ConfigError, match=r"^paths\.state_dir: st: "):
        Paths.resolve({"state_dir": "st"}, None, {})
    assert not os.listdir(tmp_path)  # nothing was made in the working directory


def test_data_folders_of_the_config_file_use_the_same_rule(tmp_path: Path) -> None:
    paths = Paths.resolve({"secrets_dir": "s", "backup_dir": "/abs/b", "state_dir": ""}, tmp_path, {"HOME": "/h"})
    assert paths.secrets_dir == tmp_path / "s"
    assert paths.backup_dir == Path("/abs/b")
