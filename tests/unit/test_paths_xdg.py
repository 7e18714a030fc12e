"""The default config file and data folder of a non-root user follow the XDG Base Directory spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyroll.paths import default_config_file, default_data_dir


@pytest.mark.parametrize("value", ["relative/st", "./st", "~/st", ""])
def test_a_relative_or_empty_xdg_folder_is_ignored(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The spec: "If an implementation encounters a relative path in any of these variables it should consider the
    # path invalid and ignore it."  Taking it would put the store under the folder keyroll happens to start in.
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    env = {"HOME": "/home/op", "XDG_STATE_HOME": value, "XDG_CONFIG_HOME": value}
    assert default_data_dir(env) == Path("/home/op/.local/state/keyroll")
    assert default_config_file(env) == Path("/home/op/.config/keyroll/config.toml")


def test_an_absolute_xdg_folder_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    env = {"HOME": "/home/op", "XDG_STATE_HOME": "/srv/op/state", "XDG_CONFIG_HOME": "/srv/op/cfg"}
    assert default_data_dir(env) == Path("/srv/op/state/keyroll")
    assert default_config_file(env) == Path("/srv/op/cfg/keyroll/config.toml")
