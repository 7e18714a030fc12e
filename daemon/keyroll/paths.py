"""Every path keyroll uses, decided in one place.

Config file: `--config`, else `$KEYROLL_CONFIG`, else `/etc/keyroll/config.toml`
for root and `$XDG_CONFIG_HOME/keyroll/config.toml` otherwise.  Data folders:
`secrets/`, `backups/`, `state/` under `/var/lib/keyroll` for root and
`$XDG_STATE_HOME/keyroll` otherwise; a config's `[paths]` (relative to the
config file's folder) and `KEYROLL_{SECRETS,BACKUP,STATE}_DIR` override them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from keyroll.records import record

ROOT_CONFIG_FILE = Path("/etc/keyroll/config.toml")
ROOT_DATA_DIR = Path("/var/lib/keyroll")

ENV_CONFIG = "KEYROLL_CONFIG"
ENV_DIRS = {
    "secrets_dir": "KEYROLL_SECRETS_DIR",
    "backup_dir": "KEYROLL_BACKUP_DIR",
    "state_dir": "KEYROLL_STATE_DIR",
}
DEFAULT_SUBDIRS = {"secrets_dir": "secrets", "backup_dir": "backups", "state_dir": "state"}

# Names inside the state folder.  None of them can be a secret name (they hold a dot).
JOURNAL_FILE = "journal.sqlite3"
WRITER_LOCK_FILE = "writer.lock"
DAEMON_LOCK_FILE = "daemon.lock"
METRICS_LOCK_FILE = "metrics.lock"  # held while the metrics textfile is rewritten
FINGERPRINT_KEY_FILE = "fingerprint.key"

# Temp files keyroll may leave behind when killed; recovery removes them.
TEMP_PREFIX = ".keyroll-tmp-"


def _is_root() -> bool:
    return os.geteuid() == 0


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def _xdg(env: Mapping[str, str], name: str, fallback: Path) -> Path:
    """`$name` when it is an absolute path, else `fallback`: the XDG Base Directory spec says a relative value is
    invalid and must be ignored (it would otherwise put the store under whatever folder keyroll is started in)."""
    value = env.get(name, "")
    return Path(value) if os.path.isabs(value) else fallback


def default_config_file(env: Mapping[str, str]) -> Path:
    """The config file looked for when neither --config nor $KEYROLL_CONFIG is set."""
    if _is_root():
        return ROOT_CONFIG_FILE
    return _xdg(env, "XDG_CONFIG_HOME", _home(env) / ".config") / "keyroll" / "config.toml"


def default_data_dir(env: Mapping[str, str]) -> Path:
    """The folder under which secrets/, backups/ and state/ live by default."""
    if _is_root():
        return ROOT_DATA_DIR
    return _xdg(env, "XDG_STATE_HOME", _home(env) / ".local" / "state") / "keyroll"


def config_file_to_use(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """Return (path, required): an explicit or $KEYROLL_CONFIG path must exist."""
    if explicit:
        return Path(explicit).expanduser().absolute(), True
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser().absolute(), True
    return default_config_file(env), False


CREDENTIAL_PREFIX = "credential:"


def resolve_config_path(value: str, config_dir: Path | None, *, key: str, env: Mapping[str, str] | None = None) -> Path:
    """The file a path option of the config file names, the one rule for all of them:
    `~` is expanded, an absolute path is kept, a relative one is relative to the config
    file's folder `config_dir` (never the working directory).  With `env` given,
    `credential:NAME` means `$CREDENTIALS_DIRECTORY/NAME` (systemd LoadCredential).
    ConfigError, one line naming `key`, for `credential:` without $CREDENTIALS_DIRECTORY
    and for a relative path when there is no config file (embedded defaults)."""
    from keyroll.errors import ConfigError

    if env is not None and value.startswith(CREDENTIAL_PREFIX):
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(f"{key}: {value}: $CREDENTIALS_DIRECTORY is not set (no systemd credentials)")
        return Path(directory) / value.removeprefix(CREDENTIAL_PREFIX)
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    if config_dir is None:
        raise ConfigError(f"{key}: {value}: a relative path needs a config file (it is relative to its folder)")
    return (config_dir / path).absolute()


@record(frozen=True)
class Paths:
    """The three data folders and every file keyroll keeps in them."""

    secrets_dir: Path
    backup_dir: Path
    state_dir: Path

    @property
    def journal(self) -> Path:
        return self.state_dir / JOURNAL_FILE

    @property
    def writer_lock(self) -> Path:
        return self.state_dir / WRITER_LOCK_FILE

    @property
    def daemon_lock(self) -> Path:
        return self.state_dir / DAEMON_LOCK_FILE

    @property
    def metrics_lock(self) -> Path:
        return self.state_dir / METRICS_LOCK_FILE

    @property
    def fingerprint_key(self) -> Path:
        return self.state_dir / FINGERPRINT_KEY_FILE

    def running_command(self, target: str, pid: int) -> Path:
        """Where keyroll process `pid` writes down the program it runs for a command target."""
        return self.state_dir / f"command-{target}.{pid}.running"

    def running_commands(self, target: str) -> list[Path]:
        """Every such note for `target`, whoever wrote it."""
        return sorted(self.state_dir.glob(f"command-{target}.*.running"))

    @classmethod
    def resolve(
        cls,
        configured: Mapping[str, str],
        config_dir: Path | None,
        env: Mapping[str, str],
    ) -> Paths:
        """Apply the precedence: environment, then the config's [paths], then defaults."""
        data_dir = default_data_dir(env)
        chosen: dict[str, Path] = {}
        for key, env_name in ENV_DIRS.items():
            if env.get(env_name):
                chosen[key] = Path(env[env_name]).expanduser().absolute()
            elif configured.get(key):
                chosen[key] = resolve_config_path(configured[key], config_dir, key=f"paths.{key}")
            else:
                chosen[key] = data_dir / DEFAULT_SUBDIRS[key]
        return cls(**chosen)
