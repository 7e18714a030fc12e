"""TOML (or the embedded default) -> a typed, validated, cross-checked Policy."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from keyroll.config.kubernetes import is_workload_spec
from keyroll.config.schema import (
    OPTIONAL_SECTIONS,
    SECRET_NAME,
    SESSIONS_PREVIOUS,
    TARGET_TYPES,
    TOP_KEYS,
    TOP_SECTIONS,
    BackupSection,
    DaemonSection,
    DefaultsSection,
    GitopsSection,
    KubernetesSection,
    MetricsSection,
    NotifySection,
    PathsSection,
    SecretSection,
    StoreSection,
    TargetSection,
    parse_mode,
    parse_section,
)
from keyroll.errors import ConfigError, UnknownSecret, UsageError
from keyroll.generate import MAX_VALUE_BYTES
from keyroll.paths import Paths, config_file_to_use
from keyroll.records import asdict, field, fields, record
from keyroll.schedule import Schedule, Window, parse_duration

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from typing import Any

TRUE_WORDS = ("1", "true", "yes", "on")


@record(frozen=True)
class SecretPolicy:
    """One secret with every default applied and every value parsed."""

    name: str
    kind: str
    length: int
    alphabet: str
    description: str
    services: tuple[str, ...]
    target: str | None
    restart: tuple[str, ...]
    health: tuple[str, ...]
    schedule: Schedule
    window: Window | None
    jitter: timedelta
    mode: int
    owner: str
    group: str
    reminder: timedelta
    unattended: bool
    health_timeout: timedelta
    converge: tuple[str, ...] = ()  # [gitops]: checks that the fleet has the new value
    max_length: int = MAX_VALUE_BYTES  # bytes (UTF-8) a value may take
    # kind "username": the secret whose target this login name belongs to.  keyroll
    # writes it together with that secret's value; it is never generated or rotated alone.
    follows: str | None = None
    kubernetes: tuple[str, ...] = ()

    @property
    def entropy_bits(self) -> int:
        from keyroll.generate import entropy_bits

        return entropy_bits(self.length, self.alphabet)

    @property
    def store_only(self) -> bool:
        """True when keyroll neither applies the value to a service, nor publishes it to
        Kubernetes, nor restarts anyone."""
        return self.target is None and not self.restart and not self.kubernetes

    @property
    def involves_kubernetes(self) -> bool:
        """It is published to a Kubernetes Secret or restarts a workload."""
        return bool(self.kubernetes) or any(is_workload_spec(spec) for spec in self.restart)

    @property
    def rotates_unattended(self) -> bool:
        """The daemon and `run` rotate it on their own: keyroll handles its consumers,
        or the policy says so."""
        return not self.store_only or self.unattended


@record(frozen=True)
class Policy:
    """Everything keyroll needs to know, validated.  `source` is None for the embedded default."""

    source: Path | None
    paths: Paths
    defaults: DefaultsSection
    store: StoreSection
    backup: BackupSection
    notify: NotifySection
    daemon: DaemonSection
    secrets: dict[str, SecretPolicy]
    targets: dict[str, TargetSection]
    require_encrypted: bool
    env: Mapping[str, str]
    gitops: GitopsSection | None = None  # None: no [gitops] section

    @property
    def gitops_repo(self) -> Path | None:
        """The [gitops] work tree, resolved against the config file's folder."""
        if self.gitops is None:
            return None
        from keyroll.paths import resolve_config_path

        return resolve_config_path(self.gitops.repo, self.config_dir, key="gitops.repo")  # (absolute)

    metrics: MetricsSection = MetricsSection()
    kubernetes: KubernetesSection = field(default_factory=KubernetesSection)

    def uses_kubernetes(self) -> bool:
        """Some secret is published to a Kubernetes Secret or restarts a workload."""
        if not self.kubernetes.publish:
            return False
        return any(s.involves_kubernetes for s in self.secrets.values())

    @property
    def config_dir(self) -> Path | None:
        return self.source.parent if self.source else None

    def secret(self, name: str) -> SecretPolicy:
        """The named secret; UsageError for a malformed name, UnknownSecret otherwise."""
        check_secret_name(name)
        try:
            return self.secrets[name]
        except KeyError:
            raise UnknownSecret(name, self.secrets) from None

    def select(self, names: list[str]) -> list[SecretPolicy]:
        """Secrets named on the command line (`all` means every one), in policy order.
        A login name that follows another secret is left out of `all` and refused by name."""
        if names == ["all"] or not names:
            return [s for s in self.secrets.values() if not s.follows]
        wanted = {self.changeable(n).name for n in names}
        return [s for s in self.secrets.values() if s.name in wanted]

    def changeable(self, name: str) -> SecretPolicy:
        """The named secret, refusing (exit 2) one that only changes with another."""
        secret = self.secret(name)
        if secret.follows:
            raise UsageError(
                f"{name} holds the login name in use for {secret.follows} and changes only with it: "
                f"use `keyroll rotate {secret.follows}` (or set, rollback {secret.follows})"
            )
        return secret

    def admin_secret_of(self, target_name: str) -> str | None:
        target = self.targets[target_name]
        return getattr(target, "admin_password_secret", "") or None

    def admin_secrets(self) -> set[str]:
        """Secrets that are the admin credential of some target (admin_password_secret,
        or an http target's {secret:NAME}): they are rotated after the others."""
        names = {n for t in self.targets if (n := self.admin_secret_of(t))}
        return names.union(*(_secret_refs(t) for t in self.targets.values()))

    def effective_document(self) -> dict[str, Any]:
        """The whole effective configuration as a TOML-ready document, with what may
        carry a token redacted (notification URLs, a health URL's user:password@ and query)."""
        from keyroll.text import redact, shown

        doc: dict[str, Any] = {
            "paths": {
                "secrets_dir": str(self.paths.secrets_dir),
                "backup_dir": str(self.paths.backup_dir),
                "state_dir": str(self.paths.state_dir),
            },
        }
        for name in TOP_SECTIONS:
            if name != "paths":
                doc[name] = _plain(asdict(getattr(self, name)))
        if self.gitops is not None:
            doc["gitops"] = _plain(asdict(self.gitops))
        doc["store"]["require_encrypted"] = self.require_encrypted
        doc["notify"]["urls"] = [redact(url, index) for index, url in enumerate(self.notify.urls, 1)]
        doc["secrets"] = {}
        for secret in self.secrets.values():
            doc["secrets"][secret.name] = {
                "kind": secret.kind,
                "length": secret.length,
                "alphabet": secret.alphabet,
                "description": secret.description,
                "services": list(secret.services),
                "target": secret.target or "",
                "restart": list(secret.restart),
                "health": [shown(spec) for spec in secret.health],
                "schedule": secret.schedule.text,
                "window": secret.window.text if secret.window else "",
                "jitter": _duration_text(secret.jitter),
                "mode": f"{secret.mode:04o}",
                "owner": secret.owner,
                "group": secret.group,
                "reminder": _duration_text(secret.reminder),
                "unattended": secret.unattended,
                "health_timeout": _duration_text(secret.health_timeout),
                **({"converge": [shown(spec) for spec in secret.converge]} if secret.converge else {}),
                "max_length": secret.max_length,
                "kubernetes": list(secret.kubernetes),
            }
        from keyroll.config.httpspec import shown_target

        doc["targets"] = {name: shown_target(_plain(asdict(t))) for name, t in self.targets.items()}
        for target in doc["targets"].values():
            if "env" in target:  # (a program's variables may hold a token)
                target["env"] = [entry.split("=", 1)[0] + "=***" for entry in target["env"]]
        return doc


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _duration_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def check_secret_name(name: str) -> None:
    """Refuse names that could escape the secrets folder or confuse a shell."""
    if not SECRET_NAME.match(name):
        if "/" in name or ".." in name or name.startswith("."):
            raise UsageError(
                f"{name!r} is not a secret name: no '/', '..' or leading dot (letters, digits, _ and - only)"
            )
        raise UsageError(f"{name!r} is not a secret name: use letters, digits, _ and - (at most 128)")


def read_document(path: Path) -> dict[str, Any]:
    """Parse one TOML file; errors name the file (and the line and column)."""
    import tomllib

    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except OSError as exc:
        from keyroll.fsutil import describe_os_error

        raise ConfigError(describe_os_error(path, exc)) from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_policy(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Policy:
    """The policy from --config, $KEYROLL_CONFIG, the default file, or the embedded default."""
    env = os.environ if env is None else env
    path, required = config_file_to_use(explicit, env)
    if path.exists() or path.is_symlink():
        try:
            return build_policy(read_document(path), path, env)
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    if required:
        raise ConfigError(f"{path}: config file not found")
    from keyroll.config.defaults import DEFAULT_DOCUMENT

    return build_policy(DEFAULT_DOCUMENT, None, env)


def build_policy(document: Mapping[str, Any], source: Path | None, env: Mapping[str, str]) -> Policy:
    """Validate a parsed document and cross-check its references."""
    for key in document:
        if key not in TOP_KEYS:
            from difflib import get_close_matches

            close = get_close_matches(key, TOP_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{key}: unknown section{hint}")
    sections: dict[str, Any] = {
        name: parse_section(cls, document.get(name, {}), name)[0] for name, cls in TOP_SECTIONS.items()
    }
    paths_section: PathsSection = sections["paths"]
    defaults: DefaultsSection = sections["defaults"]

    targets: dict[str, TargetSection] = {}
    raw_targets = document.get("targets", {})
    if not isinstance(raw_targets, dict):
        raise ConfigError("targets: expected a table of [targets.NAME] tables")
    for name, table in raw_targets.items():
        keypath = f"targets.{name}"
        if not SECRET_NAME.match(name):
            raise ConfigError(f"{keypath}: a target name uses letters, digits, _ and -")
        if not isinstance(table, dict) or "type" not in table:
            raise ConfigError(f"{keypath}.type: missing; one of {', '.join(TARGET_TYPES)}")
        cls = TARGET_TYPES.get(table["type"]) if isinstance(table["type"], str) else None
        if cls is None:
            raise ConfigError(f"{keypath}.type: must be one of {', '.join(TARGET_TYPES)}, got {table['type']!r}")
        targets[name] = parse_section(cls, table, keypath)[0]

    from keyroll.config.defaults import SEED_SECRETS

    raw_secrets = document.get("secrets", SEED_SECRETS)
    if not isinstance(raw_secrets, dict):
        raise ConfigError("secrets: expected a table of [secrets.NAME] tables")
    if not raw_secrets:
        raise ConfigError("secrets: no secrets declared (remove the empty table to use the 12 seed secrets)")
    default_fields = {f.name: f for f in fields(DefaultsSection)}
    secrets: dict[str, SecretPolicy] = {}
    used_targets: dict[str, str] = {}
    for name, table in raw_secrets.items():
        keypath = f"secrets.{name}"
        if not SECRET_NAME.match(name):
            raise ConfigError(f"{keypath}: a secret name uses letters, digits, _ and - (at most 128)")
        section, overrides = parse_section(SecretSection, table, keypath, extra=default_fields)
        merged = {f: overrides.get(f, getattr(defaults, f)) for f in default_fields}
        if section.target:
            if section.target not in targets:
                known = ", ".join(targets) or "none defined"
                raise ConfigError(f"{keypath}.target: no [targets.{section.target}] ({known})")
            if section.target in used_targets:
                raise ConfigError(
                    f"{keypath}.target: [targets.{section.target}] is already the target of {used_targets[section.target]}"
                )
            used_targets[section.target] = name
        from keyroll.generate import DEFAULT_LENGTHS

        secrets[name] = SecretPolicy(
            name=name,
            kind=section.kind,
            length=section.length or DEFAULT_LENGTHS[section.kind],
            alphabet=section.alphabet,
            description=section.description,
            services=section.services,
            target=section.target or None,
            restart=section.restart,
            health=section.health,
            schedule=Schedule.parse(merged["schedule"]),
            window=Window.parse(merged["window"]),
            jitter=parse_duration(merged["jitter"]),
            mode=parse_mode(merged["mode"]),
            owner=merged["owner"],
            group=merged["group"],
            reminder=parse_duration(merged["reminder"]),
            unattended=merged["unattended"],
            health_timeout=parse_duration(merged["health_timeout"]),
            converge=section.converge,
            max_length=merged["max_length"],
            kubernetes=section.kubernetes,
        )
        if secrets[name].max_length < secrets[name].length:
            raise ConfigError(
                f"{keypath}.max_length: must be >= the length of generated values ({secrets[name].length})"
            )

    _add_username_secrets(targets, secrets, used_targets)
    for name, target in targets.items():
        admin = getattr(target, "admin_password_secret", "")
        if admin and admin not in secrets:
            raise ConfigError(f"targets.{name}.admin_password_secret: no secret named {admin!r}")
        for ref in sorted(_secret_refs(target)):
            if ref not in secrets:
                raise ConfigError(f"targets.{name}: {{secret:{ref}}} names no secret")
        if admin and getattr(target, "admin_password_file", ""):
            raise ConfigError(f"targets.{name}: set admin_password_secret or admin_password_file, not both")
    _check_admin_cycles(targets, used_targets)

    store: StoreSection = sections["store"]
    gitops: GitopsSection | None = None
    if "gitops" in document:
        gitops = parse_section(OPTIONAL_SECTIONS["gitops"], document["gitops"], "gitops")[0]
        if "bundle" in gitops.publish and store.kind != "sops":
            raise ConfigError(
                'gitops.publish: "bundle" needs the SOPS store ([store] kind = "sops"): keyroll never commits '
                f"the plaintext files of a {store.kind} store"
            )
        if "kubernetes" in gitops.publish and not any(s.kubernetes for s in secrets.values()):
            raise ConfigError(
                'gitops.publish: "kubernetes" needs secrets mapped to Kubernetes Secrets (kubernetes = ["SECRET/KEY"])'
            )
        for name, secret in secrets.items():
            used = targets.get(secret.target) if secret.target else None
            alternating = getattr(used, "type", "") == "postgres" and getattr(used, "strategy", "") == "alternating"
            if SESSIONS_PREVIOUS in secret.converge and not alternating:
                raise ConfigError(
                    f'secrets.{name}.converge: "{SESSIONS_PREVIOUS}" needs a PostgreSQL target with '
                    'strategy = "alternating" (it counts the sessions of the previous login)'
                )
    else:
        for name, secret in secrets.items():
            if secret.converge:
                raise ConfigError(f"secrets.{name}.converge: needs a [gitops] section (it waits for the fleet)")
    require_encrypted = store.require_encrypted or _env_flag(env, "REQUIRE_ENCRYPTED_SECRETS")
    config_dir = source.parent if source else None
    paths = Paths.resolve(asdict(paths_section), config_dir, env)
    _check_folders_apart(paths)
    return Policy(
        source=source,
        paths=paths,
        defaults=defaults,
        store=store,
        backup=sections["backup"],
        notify=sections["notify"],
        daemon=sections["daemon"],
        kubernetes=sections["kubernetes"],
        secrets=secrets,
        targets=targets,
        require_encrypted=require_encrypted,
        env=env,
        gitops=gitops,
        metrics=sections["metrics"],
    )


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    """A boolean environment variable; a value that is neither true nor false is an
    error (a misspelt security switch must not be silently off)."""
    value = env.get(name, "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"${name}={env[name]!r}: use true or false")


def _check_folders_apart(paths: Paths) -> None:
    """Secrets, backups and state must be three separate folders, none inside another
    (the secrets folder holds nothing but secrets)."""
    folders = {"secrets_dir": paths.secrets_dir, "backup_dir": paths.backup_dir, "state_dir": paths.state_dir}
    names = list(folders)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = folders[first].absolute(), folders[second].absolute()
            if a == b or a in b.parents or b in a.parents:
                raise ConfigError(f"paths.{first} ({a}) and paths.{second} ({b}) overlap: keep the three folders apart")


def _secret_refs(target: object) -> set[str]:
    """The secrets an http target names with `{secret:NAME}`; empty for the other
    types (without importing the http request spec for them: `status` loads this)."""
    if getattr(target, "type", None) != "http":
        return set()
    from keyroll.config.httpspec import secret_refs

    return secret_refs(target)


def _check_admin_cycles(targets: Mapping[str, TargetSection], owner: Mapping[str, str]) -> None:
    """Refuse A-administers-B-administers-A (through admin_password_secret or an http
    target's {secret:NAME}): no rotation order could be safe."""
    secret_target = {secret: target for target, secret in owner.items()}

    def admins_of(secret: str) -> list[tuple[str, str]]:
        """(admin secret, key naming it) for the target of `secret`."""
        if secret not in secret_target:
            return []
        name = secret_target[secret]
        found = []
        if admin := getattr(targets[name], "admin_password_secret", ""):
            found.append((admin, f"targets.{name}.admin_password_secret"))
        found += [(ref, f"targets.{name}") for ref in sorted(_secret_refs(targets[name]))]
        return [(admin, key) for admin, key in found if admin != secret]

    def walk(chain: list[str], key: str) -> None:
        for admin, admin_key in admins_of(chain[-1]):
            if admin in chain:
                cycle = " -> ".join([*chain[chain.index(admin) :], admin])
                raise ConfigError(f"{key if len(chain) > 1 else admin_key}: admin credentials form a cycle ({cycle})")
            walk([*chain, admin], key if len(chain) > 1 else admin_key)

    for start in secret_target:
        walk([start], "")


def _add_username_secrets(
    targets: Mapping[str, TargetSection], secrets: dict[str, SecretPolicy], owner: Mapping[str, str]
) -> None:
    """Check the strategies, and add (or check) each postgres `username_secret`: a secret of
    kind username that follows the target's password secret (same mode, owner, services)."""
    followers: dict[str, str] = {}
    for name, target in targets.items():
        keypath = f"targets.{name}"
        strategy = getattr(target, "strategy", "single")
        if strategy != "single" and not getattr(target, "admin_user", ""):
            raise ConfigError(f"{keypath}.admin_user: the {strategy} strategy needs an admin login")
        if strategy != "single" and getattr(target, "admin_user", "") == getattr(target, "user", ""):
            raise ConfigError(f"{keypath}.admin_user: must differ from user with the {strategy} strategy")
        username = getattr(target, "username_secret", "")
        if strategy != "alternating":
            if username or getattr(target, "alternate_user", ""):
                field_name = "username_secret" if username else "alternate_user"
                raise ConfigError(f'{keypath}.{field_name}: only used with strategy = "alternating"')
            continue
        alternate = getattr(target, "alternate_user", "") or f"{getattr(target, 'user', '')}_clone"
        if alternate == getattr(target, "user", ""):
            raise ConfigError(f"{keypath}.alternate_user: must differ from user")
        if not username:
            raise ConfigError(f'{keypath}.username_secret: required with strategy = "alternating"')
        if not SECRET_NAME.match(username):
            raise ConfigError(f"{keypath}.username_secret: a secret name uses letters, digits, _ and -")
        if name not in owner:
            raise ConfigError(f"{keypath}: no secret names this target, so its username_secret has no password")
        password = owner[name]
        if username == password or username in followers:
            raise ConfigError(f"{keypath}.username_secret: {username!r} is already used")
        followers[username] = password
        main = secrets[password]
        declared = secrets.get(username)
        if declared is not None and (declared.kind != "username" or declared.target or declared.restart):
            raise ConfigError(
                f'secrets.{username}: the username_secret of targets.{name} must be kind = "username" '
                "with no target and no restart (it follows the password)"
            )
        base = declared or main
        secrets[username] = SecretPolicy(
            name=username,
            kind="username",
            length=base.length if declared else 63,
            alphabet=base.alphabet,
            description=base.description if declared else f"login name in use for {password} (keyroll keeps it)",
            services=main.services,
            target=None,
            restart=(),
            health=(),
            schedule=main.schedule,
            window=None,
            jitter=main.jitter,
            mode=base.mode,
            owner=base.owner,
            group=base.group,
            reminder=main.reminder,
            unattended=False,
            health_timeout=main.health_timeout,
            follows=password,
            # Published beside its password (same Kubernetes Secret, its own name as the key) unless declared.
            kubernetes=(declared.kubernetes if declared else ())
            or tuple(f"{key.rsplit('/', 1)[0]}/{username}" for key in main.kubernetes),
        )
    for name, secret in secrets.items():
        if secret.kind == "username" and name not in followers:
            raise ConfigError(
                f'secrets.{name}.kind: "username" is only for the username_secret of an alternating postgres target'
            )
