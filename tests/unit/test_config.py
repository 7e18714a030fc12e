"""The configuration: one schema, clear key-path errors, the embedded seed stack."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from keyroll.config.policy import build_policy, load_policy
from keyroll.config.render import render_example
from keyroll.config.schema import TARGET_TYPES, TOP_SECTIONS, SecretSection, schema_description
from keyroll.errors import ConfigError
from keyroll.paths import default_config_file, default_data_dir

ROOT = Path(__file__).resolve().parents[2]
ENV = {"HOME": "/home/op"}

SEED = {
    "postgres_password": ("password", ["postgres", "aidb", "hybrid-coordinator", "health-monitor", "ralph-wiggum"]),
    "redis_password": ("password", ["redis", "aidb", "nixos-docs", "autogpt", "ralph-wiggum"]),
    "grafana_admin_password": ("password", ["grafana"]),
    "stack_api_key": ("api_key", ["global"]),
    "aidb_api_key": ("api_key", ["aidb"]),
    "aider_wrapper_api_key": ("api_key", ["aider-wrapper"]),
    "container_engine_api_key": ("api_key", ["container-engine"]),
    "dashboard_api_key": ("api_key", ["dashboard"]),
    "embeddings_api_key": ("api_key", ["embeddings"]),
    "hybrid_coordinator_api_key": ("api_key", ["hybrid-coordinator"]),
    "nixos_docs_api_key": ("api_key", ["nixos-docs"]),
    "ralph_wiggum_api_key": ("api_key", ["ralph-wiggum"]),
}


def policy_from(text: str, tmp_path: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_policy(str(path), env or ENV)


def config_error(text: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        policy_from(text, tmp_path)
    return str(info.value)


def test_embedded_default_is_the_seed_stack(tmp_path: Path, no_machine_config: Path) -> None:
    policy = load_policy(None, {"HOME": str(tmp_path), "KEYROLL_CONFIG": ""})
    assert policy.source is None
    assert {n: (s.kind, list(s.services)) for n, s in policy.secrets.items()} == SEED
    assert policy.secrets["postgres_password"].length == 32
    assert policy.secrets["stack_api_key"].length == 64
    assert policy.secrets["postgres_password"].entropy_bits == 190
    assert all(s.mode == 0o600 and s.store_only for s in policy.secrets.values())


def test_example_file_is_the_generated_config_and_the_embedded_default(tmp_path: Path, no_machine_config: Path) -> None:
    example = (ROOT / "config.example.toml").read_text()
    assert example == render_example(), (
        "config.example.toml is stale: run `keyroll config generate > config.example.toml`"
    )
    from_file = build_policy(tomllib.loads(example), None, ENV)
    embedded = load_policy(None, {**ENV, "XDG_CONFIG_HOME": str(tmp_path)})
    assert from_file.effective_document() == embedded.effective_document()


def test_every_schema_option_is_documented_in_the_example() -> None:
    example = (ROOT / "config.example.toml").read_text()
    description = schema_description()
    for section in description.values():
        for option, meta in section["options"].items():
            assert meta["doc"], option
            assert f"{option} = " in example, f"{option} missing from config.example.toml"
    assert set(TOP_SECTIONS) | {"secrets.<name>"} <= set(description)
    assert len([k for k in description if k.startswith("targets.")]) == len(TARGET_TYPES)


def test_every_example_target_table_is_valid_when_uncommented() -> None:
    lines = (ROOT / "config.example.toml").read_text().splitlines()
    uncommented = []
    inside = False
    for line in lines:
        if line.startswith("# [targets."):
            inside = True
        elif not line.startswith("#"):
            inside = False
        if (inside and line.startswith("# ") and " = " in line) or line.startswith("# [targets."):
            uncommented.append(line[2:])
    document = tomllib.loads("\n".join(uncommented))
    policy = build_policy(document, None, ENV)
    assert set(policy.targets) == {"pg", "cache", "stackdb", "grafana", "rabbitmq"}


def test_malformed_toml_names_the_file_and_position(tmp_path: Path) -> None:
    message = config_error("[defaults]\nschedule = \n", tmp_path)
    assert str(tmp_path / "config.toml") in message
    assert "line 2" in message and "\n" not in message


def test_wrong_types_name_the_key_path(tmp_path: Path) -> None:
    assert (
        config_error('[secrets.redis_password]\nlength = "32"\n', tmp_path).split(": ", 1)[1]
        == "secrets.redis_password.length: expected an integer, got string '32'"
    )
    assert config_error("[secrets.redis_password]\nlength = 8\n", tmp_path).endswith(
        "secrets.redis_password.length: must be >= 16 (and <= 4096), or 0 for the kind's default"
    )
    assert "backup.keep: expected an integer" in config_error("[backup]\nkeep = true\n", tmp_path)
    assert "notify.urls: expected a list of strings" in config_error('[notify]\nurls = "mailto://x"\n', tmp_path)


def test_unknown_keys_and_sections_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    assert "defaults.schedul: unknown key (did you mean 'schedule'?)" in config_error(
        "[defaults]\nschedul = 'daily'\n", tmp_path
    )
    assert "secret: unknown section (did you mean 'secrets'?)" in config_error(
        "[secret.x]\nkind = 'password'\n", tmp_path
    )


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[defaults]\nschedule = 'fortnightly'", "defaults.schedule: 'fortnightly' is not a schedule"),
        ("[defaults]\nwindow = 'Sun 2-5'", "defaults.window:"),
        ("[defaults]\nmode = '0666'", "defaults.mode: a secret must not be writable by group or others"),
        ("[defaults]\nmode = 'rw'", "defaults.mode: 'rw' is not an octal file mode"),
        ("[defaults]\nmode = 600", 'defaults.mode: the number 600 is not a file mode: write "0600" (a string)'),
        ("[secrets.a]\nkind = 'token'", "secrets.a.kind: must be one of password, api_key"),
        ("[secrets.a]\nalphabet = 'abc/+=defghijk'", "secrets.a.alphabet: contains characters that are not"),
        ("[secrets.a]\ntarget = 'nowhere'", "secrets.a.target: no [targets.nowhere]"),
        ("[secrets.a]\nrestart = ['reboot']", "secrets.a.restart: 'reboot': use systemd:UNIT"),
        ("[secrets.a]\nhealth = ['tcp:localhost']", "secrets.a.health: 'tcp:localhost': use tcp:HOST:PORT"),
        (
            "[secrets.a]\nhealth = ['http://127.0.0.1:8080/he alth']",
            "secrets.a.health: 'http://127.0.0.1:8080/he alth': no spaces or control characters in a URL",
        ),
        ("[secrets.'../etc']\nkind = 'password'", "secrets.../etc: a secret name uses letters"),
        ("[targets.pg]\nuser = 'x'", "targets.pg.type: missing"),
        (
            "[targets.pg]\ntype = 'oracle'\nuser = 'x'",
            "targets.pg.type: must be one of postgres, redis, mysql, command, http",
        ),
        ("[targets.pg]\ntype = 'postgres'", "targets.pg.user: required"),
        ("[targets.pg]\ntype = 'postgres'\nuser = 'u'\nport = 70000", "targets.pg.port: must be between 1 and 65535"),
        ("[targets.c]\ntype = 'command'", "targets.c.argv: required"),
        ("[targets.c]\ntype = 'command'\nargv = []", "targets.c.argv: needs at least the program to run"),
        ("[notify]\non = ['always']", "notify.on: unknown event(s) always"),
        ("secrets = {}", "secrets: no secrets declared"),
    ],
)
def test_bad_values_get_one_line_naming_the_key(snippet: str, expected: str, tmp_path: Path) -> None:
    message = config_error(snippet + "\n", tmp_path)
    assert expected in message
    assert "\n" not in message


def test_cross_references(tmp_path: Path) -> None:
    base = """
[targets.a]
type = "postgres"
user = "a"
admin_password_secret = "{admin_a}"
[targets.b]
type = "postgres"
user = "b"
admin_password_secret = "{admin_b}"
[secrets.sa]
target = "a"
[secrets.sb]
target = "b"
"""
    assert "admin credentials form a cycle" in config_error(base.format(admin_a="sb", admin_b="sa"), tmp_path)
    assert "targets.a.admin_password_secret: no secret named 'ghost'" in config_error(
        base.format(admin_a="ghost", admin_b="sa"), tmp_path
    )
    policy = policy_from(base.format(admin_a="sb", admin_b=""), tmp_path)
    assert policy.admin_secrets() == {"sb"}
    shared = "[targets.a]\ntype='redis'\n[secrets.x]\ntarget='a'\n[secrets.y]\ntarget='a'\n"
    assert "secrets.y.target: [targets.a] is already the target of x" in config_error(shared, tmp_path)


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    policy = policy_from('[paths]\nsecrets_dir = "s"\nbackup_dir = "/abs/b"\n', tmp_path)
    assert policy.paths.secrets_dir == tmp_path / "s"
    assert policy.paths.backup_dir == Path("/abs/b")
    assert policy.paths.state_dir == default_data_dir(ENV) / "state"


def test_environment_overrides_config_paths(tmp_path: Path) -> None:
    env = {**ENV, "KEYROLL_SECRETS_DIR": "/run/s", "KEYROLL_STATE_DIR": "/run/st", "KEYROLL_BACKUP_DIR": "/run/b"}
    policy = policy_from('[paths]\nsecrets_dir = "s"\n', tmp_path, env)
    assert (policy.paths.secrets_dir, policy.paths.state_dir, policy.paths.backup_dir) == (
        Path("/run/s"),
        Path("/run/st"),
        Path("/run/b"),
    )


def test_config_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    env = {"HOME": "/home/op", "XDG_CONFIG_HOME": "/home/op/.cfg", "XDG_STATE_HOME": "/home/op/.st"}
    assert default_config_file(env) == Path("/home/op/.cfg/keyroll/config.toml")
    assert default_data_dir(env) == Path("/home/op/.st/keyroll")
    assert default_data_dir({"HOME": "/home/op"}) == Path("/home/op/.local/state/keyroll")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_config_file(env) == Path("/etc/keyroll/config.toml")
    assert default_data_dir(env) == Path("/var/lib/keyroll")
    # An explicit or $KEYROLL_CONFIG path must exist; the default one may be absent.
    with pytest.raises(ConfigError, match="config file not found"):
        load_policy(None, {**env, "KEYROLL_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(ConfigError, match="is a folder"):
        load_policy(str(tmp_path), env)


def test_defaults_apply_per_secret_and_can_be_overridden(tmp_path: Path) -> None:
    policy = policy_from(
        '[defaults]\nschedule = "monthly"\nmode = "0640"\n[secrets.a]\nkind = "api_key"\nschedule = "7d"\nlength = 48\n'
        "[secrets.b]\nalphabet = 'hex'\n",
        tmp_path,
    )
    a, b = policy.secrets["a"], policy.secrets["b"]
    assert (a.schedule.text, a.mode, a.length) == ("7d", 0o640, 48)
    assert (b.schedule.text, b.length, b.entropy_bits) == ("monthly", 32, 128)
    assert set(policy.secrets) == {"a", "b"}  # a [secrets] table replaces the seed stack


def test_require_encrypted_from_the_environment(tmp_path: Path) -> None:
    assert policy_from("", tmp_path, {**ENV, "REQUIRE_ENCRYPTED_SECRETS": "true"}).require_encrypted
    assert not policy_from("", tmp_path).require_encrypted
    assert policy_from("[store]\nrequire_encrypted = true\n", tmp_path).require_encrypted


def test_secret_section_fields_all_have_documentation() -> None:
    from keyroll.records import fields

    assert all(f.metadata["doc"] for f in fields(SecretSection))


def test_the_three_folders_must_be_apart(tmp_path: Path, no_machine_config: Path) -> None:
    assert "paths.secrets_dir" in config_error('[paths]\nsecrets_dir = "s"\nbackup_dir = "s/backups"\n', tmp_path)
    assert "overlap" in config_error('[paths]\nsecrets_dir = "x"\nstate_dir = "x"\n', tmp_path)
    with pytest.raises(ConfigError, match="overlap"):
        load_policy(None, {**ENV, "KEYROLL_SECRETS_DIR": "/srv/k", "KEYROLL_STATE_DIR": "/srv/k/state"})


def test_a_misspelt_encryption_switch_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\$REQUIRE_ENCRYPTED_SECRETS='ture': use true or false"):
        policy_from("", tmp_path, {**ENV, "REQUIRE_ENCRYPTED_SECRETS": "ture"})
    assert not policy_from("", tmp_path, {**ENV, "REQUIRE_ENCRYPTED_SECRETS": "no"}).require_encrypted
