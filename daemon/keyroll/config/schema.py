"""The one declaration of the configuration.

Each section is a frozen record; each field carries its documentation, the
kind of value it takes and its check in `metadata`.  Validation
(`parse_section`), `keyroll config generate`, `config.example.toml` and the
NixOS option documentation are all derived from these classes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from keyroll.errors import ConfigError
from keyroll.generate import MAX_VALUE_BYTES
from keyroll.records import MISSING, Field, field, fields, record

SESSIONS_PREVIOUS = "sessions:previous"  # a converge check keyroll runs itself (PostgreSQL alternating)
SECRET_NAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_-]{0,127}\Z")

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from typing import Any

    from keyroll.config.httpspec import HttpRequest

    Check = Callable[[Any], str | None]


def opt(
    default: Any,
    doc: str,
    *,
    kind: str | None = None,
    choices: tuple[str, ...] = (),
    check: Check | None = None,
    example: Any = None,
    required: bool = False,
) -> Any:
    """A documented option.  `kind`: str, int, bool, strs, duration, schedule,
    window, mode, alphabet, request (an http target's request table); inferred from the default when not given."""
    if kind is None:
        kind = {bool: "bool", int: "int", str: "str", tuple: "strs"}[type(default)]
    meta = {"doc": doc, "kind": kind, "choices": choices, "check": check, "example": example, "required": required}
    return field(default=default, metadata=meta)


# --- checks -------------------------------------------------------------------------


def _parses(parse: Callable[[Any, str], object]) -> Check:
    """A check that `parse(keyroll.schedule, value)` accepts the value (imported late:
    validation of durations, schedules and windows needs the module, start-up not)."""

    def check(value: str) -> str | None:
        from keyroll import schedule

        try:
            parse(schedule, value)
        except schedule.ScheduleError as exc:
            return str(exc)
        return None

    return check


_duration = _parses(lambda schedule, value: schedule.parse_duration(value))
_schedule = _parses(lambda schedule, value: schedule.Schedule.parse(value))


def _positive_duration(message: str) -> Check:
    """A check: a duration of more than 0s, else `message`."""

    def check(value: str) -> str | None:
        if problem := _duration(value):
            return problem
        from keyroll.schedule import parse_duration

        return None if parse_duration(value).total_seconds() > 0 else message

    return check


_rollout_timeout = _positive_duration("must be more than 0s: no rollout completes at once")


_window = _parses(lambda schedule, value: schedule.Window.parse(value))


def parse_mode(value: str | int) -> int:
    """A file mode from "0600" / "600" / 0o600; ValueError when it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 0o777:
            raise ValueError(f'the number {value} is not a file mode: write "0600" (a string) or 0o600 (TOML octal)')
        return value
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value.strip()):
        return int(value.strip(), 8)
    raise ValueError(f'{value!r} is not an octal file mode like "0600"')


def _mode(value: str | int) -> str | None:
    try:
        mode = parse_mode(value)
    except ValueError as exc:
        return str(exc)
    if mode & ~0o777:
        return "only permission bits (0000-0777) are allowed"
    if mode & 0o022:
        return "a secret must not be writable by group or others"
    if not mode & 0o400:
        return "the owner must be able to read the secret"
    return None


def _alphabet(value: str) -> str | None:
    from keyroll.generate import alphabet_problem

    return alphabet_problem(value)


def _at_least(low: int) -> Check:
    return lambda value: None if value >= low else f"must be >= {low}"


def _between(low: int, high: int) -> Check:
    return lambda value: None if low <= value <= high else f"must be between {low} and {high}"


def _length(value: int) -> str | None:
    return None if value == 0 or 16 <= value <= 4096 else "must be >= 16 (and <= 4096), or 0 for the kind's default"


def _command_spec(spec: str) -> str | None:
    """Why a `command:PROGRAM ARGS` spec cannot be split as a shell would, if it cannot."""
    import shlex

    try:
        words = shlex.split(spec.removeprefix("command:"))
    except ValueError as exc:
        return f"{spec!r}: {exc} (quote arguments as a shell would)"
    return None if words else f"{spec!r}: the command is empty"


def _restart_specs(values: tuple[str, ...]) -> str | None:
    for spec in values:
        kind, _, rest = spec.partition(":")
        if kind == "kubernetes":
            from keyroll.config.kubernetes import workload_problem

            if problem := workload_problem(spec):
                return problem
            continue
        if kind not in ("systemd", "systemd-reload", "command") or not rest.strip():
            return f"{spec!r}: use systemd:UNIT, systemd-reload:UNIT, command:PROGRAM ARGS or kubernetes:KIND/NAME"
        if kind == "command" and (problem := _command_spec(spec)):
            return problem
    return None


def _health_specs(values: tuple[str, ...]) -> str | None:
    for spec in values:
        if spec.startswith(("http://", "https://")):
            from keyroll.httpclient import split_http_url
            from keyroll.text import shown

            try:
                split_http_url(spec)
            except ValueError as exc:
                return f"{shown(spec)!r}: {exc}"
            continue
        kind, _, rest = spec.partition(":")
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            if host and port.isdigit() and 0 < int(port) < 65536:
                continue
        elif kind == "command" and rest.strip():
            if problem := _command_spec(spec):
                return problem
            continue
        return f"{spec!r}: use tcp:HOST:PORT, http(s)://URL or command:PROGRAM ARGS"
    return None


def _kubernetes_keys(values: tuple[str, ...]) -> str | None:
    from keyroll.config.kubernetes import secret_keys_problem

    return secret_keys_problem(values)


def _kubernetes_namespace(value: str) -> str | None:
    from keyroll.config.kubernetes import default_namespace_problem

    return default_namespace_problem(value)


def _secret_names(values: tuple[str, ...]) -> str | None:
    bad = [v for v in values if not v.strip()]
    return "entries must not be empty" if bad else None


def _notify_events(values: tuple[str, ...]) -> str | None:
    bad = [v for v in values if v not in NOTIFY_EVENTS]
    return f"unknown event(s) {', '.join(bad)}; choose from {', '.join(NOTIFY_EVENTS)}" if bad else None


def _recipients(values: tuple[str, ...]) -> str | None:
    from keyroll.recipients import recipient_problem

    return next((problem for value in values if (problem := recipient_problem(value))), None)


def _env_entries(values: tuple[str, ...]) -> str | None:
    from keyroll.hardening import env_entry_problem

    return next((problem for value in values if (problem := env_entry_problem(value))), None)


def _argv(values: tuple[str, ...]) -> str | None:
    return None if values and values[0].strip() else "needs at least the program to run"


NOTIFY_EVENTS = ("failure", "success", "reminder", "recovered")


# --- sections -----------------------------------------------------------------------


@record(frozen=True)
class PathsSection:
    """Where keyroll keeps secrets, backups and its state.  Relative paths resolve
    against this file's folder; KEYROLL_SECRETS_DIR, KEYROLL_BACKUP_DIR and
    KEYROLL_STATE_DIR override them."""

    secrets_dir: str = opt(
        "",
        "Folder of secret files, one per secret (default: /var/lib/keyroll/secrets for root, "
        "$XDG_STATE_HOME/keyroll/secrets otherwise).",
        example="/var/lib/keyroll/secrets",
    )
    backup_dir: str = opt(
        "", "Folder of timestamped backups (default: backups/ beside secrets/).", example="/var/lib/keyroll/backups"
    )
    state_dir: str = opt(
        "",
        "Journal, locks and the fingerprint key (default: state/ beside secrets/).",
        example="/var/lib/keyroll/state",
    )


@record(frozen=True)
class DefaultsSection:
    """Defaults for every secret; each key can also be set per secret."""

    schedule: str = opt(
        "quarterly",
        "When a secret is due, counted from its last rotation: daily, weekly, monthly, "
        'quarterly, yearly, "cron:0 3 1 */3 *", or an interval such as "90d".',
        kind="schedule",
        check=_schedule,
    )
    window: str = opt(
        "",
        'When scheduled rotations may start (UTC), e.g. "Sun 02:00-05:00"; empty: any time.',
        kind="window",
        check=_window,
    )
    jitter: str = opt(
        "0s", "Random delay added to each due time (stable across restarts).", kind="duration", check=_duration
    )
    mode: str = opt(
        "0600",
        'File mode of a secret; "0640" with a group for a service account, "0644" for containers.',
        kind="mode",
        check=_mode,
    )
    owner: str = opt(
        "", "User owning the secret file (empty: keyroll's own user), e.g. the service account that reads it."
    )
    group: str = opt("", "Group owning the secret file (empty: keyroll's own group).")
    reminder: str = opt(
        "7d",
        "Send a reminder this long before a secret is due (and when it is overdue).",
        kind="duration",
        check=_duration,
    )
    unattended: bool = opt(
        False,
        "Let the daemon and `keyroll run` rotate a secret with no target and nothing to restart.",
    )
    health_timeout: str = opt(
        "30s",
        "How long consumers may take to pass their health checks after a restart.",
        kind="duration",
        check=_duration,
    )
    max_length: int = opt(
        MAX_VALUE_BYTES,
        f"Largest value, in bytes, that set, init and restore accept (at most {MAX_VALUE_BYTES}, the hard limit).",
        check=_between(1, MAX_VALUE_BYTES),
    )


@record(frozen=True)
class StoreSection:
    """Where the values live: a folder of files, or one SOPS bundle encrypted with age.  The bundle and
    .sops.yaml paths are relative to this file's folder."""

    kind: str = opt(
        "directory", "directory (one file per secret) or sops (one encrypted bundle).", choices=("directory", "sops")
    )
    bundle: str = opt("secrets.sops.yaml", "The SOPS bundle (kind = sops); its top-level keys are the secret names.")
    sops_config: str = opt(".sops.yaml", "The .sops.yaml whose creation rules name the age recipients.")
    age_key_file: str = opt(
        "",
        'age identity file used to decrypt ("credential:NAME" for a systemd credential).  Looked for in '
        "this order: $SOPS_AGE_KEY_FILE, this option, the systemd credential age-key, ~/.config/sops/age/keys.txt.",
    )
    require_encrypted: bool = opt(
        False, "Refuse any plaintext store or backup (same as REQUIRE_ENCRYPTED_SECRETS=true)."
    )


@record(frozen=True)
class BackupSection:
    """Backups taken before every change, and on demand."""

    keep: int = opt(30, "How many backups to keep; the oldest beyond this are deleted.", check=_at_least(1))
    encrypt_to: tuple[str, ...] = opt(
        (),
        "age recipients (age1...): backups of a directory store are then encrypted to them (a SOPS "
        "store's backups hold its bundle, already encrypted).",
        check=_recipients,
    )


@record(frozen=True)
class NotifySection:
    """Notices through Apprise (e-mail, chat, webhooks); never a secret value."""

    urls: tuple[str, ...] = opt((), "Apprise URLs, e.g. mailto://user:pass@example.com or json://host/path.")
    urls_file: str = opt(
        "",
        "A file with one Apprise URL a line (keeps tokens out of this file); "
        '"credential:NAME" reads $CREDENTIALS_DIRECTORY/NAME.',
    )
    on: tuple[str, ...] = opt(
        ("failure",), "Events to send: failure, success, reminder, recovered.", check=_notify_events
    )
    timeout: str = opt(
        "10s", "Longest time one notice may take before it is given up.", kind="duration", check=_duration
    )


@record(frozen=True)
class DaemonSection:
    """The long-running scheduler (`keyroll daemon`)."""

    retry_min: str = opt(
        "5m", "First retry delay after a failed rotation (it doubles each time).", kind="duration", check=_duration
    )
    retry_max: str = opt("6h", "Longest retry delay after repeated failures.", kind="duration", check=_duration)


def _textfile(value: str) -> str | None:
    return (
        None if not value or value.endswith(".prom") else "must end in .prom (the textfile collector reads only those)"
    )


def _metrics_mode(value: str | int) -> str | None:
    problem = _mode(value)
    return problem.replace("a secret", "the metrics file").replace("the secret", "it") if problem else None


@record(frozen=True)
class MetricsSection:
    """Prometheus metrics for node_exporter's textfile collector, rewritten after every
    writing command, `keyroll run` and daemon cycle (never a value, hash or fingerprint)."""

    textfile: str = opt(
        "",
        "The .prom file to write, in the collector's folder (--collector.textfile.directory); empty: no metrics.",
        check=_textfile,
        example="/var/lib/prometheus/node-exporter/keyroll.prom",
    )
    mode: str = opt(
        "0644",
        "File mode of the metrics file (it holds no secret; the collector reads it).",
        kind="mode",
        check=_metrics_mode,
    )


@record(frozen=True)
class SecretSection:
    """One secret.  Any [defaults] key may also be set here."""

    kind: str = opt(
        "password",
        "password (32 characters), api_key (64 characters), or username (a login name keyroll keeps in step "
        "with a postgres target's username_secret; never generated, never rotated on its own).",
        choices=("password", "api_key", "username"),
    )
    length: int = opt(0, "Length of generated values; 0 means the kind's default.", check=_length)
    alphabet: str = opt(
        "alnum",
        "alnum (letters and digits), lower-alnum, hex, or the literal characters to draw from.",
        kind="alphabet",
        check=_alphabet,
    )
    description: str = opt("", "What the secret is for (shown by status).")
    services: tuple[str, ...] = opt((), "The services that use it (what must follow a rotation).", check=_secret_names)
    target: str = opt("", "Name of a [targets.*] table: the live service the value is applied to.")
    restart: tuple[str, ...] = opt(
        (),
        "Consumers to restart after a rotation: systemd:UNIT, systemd-reload:UNIT, command:PROGRAM ARGS, "
        "kubernetes:KIND/[NAMESPACE/]NAME (deployment, statefulset, daemonset: a rollout restart, then a wait).",
        check=_restart_specs,
    )
    health: tuple[str, ...] = opt(
        (),
        "Health checks after the restart: tcp:HOST:PORT, http(s)://URL (user:password@ goes as Basic auth), "
        "command:PROGRAM ARGS.",
        check=_health_specs,
    )
    converge: tuple[str, ...] = opt(
        (),
        "With [gitops]: checks that pass once the fleet runs the pushed values (same syntax as health, e.g. "
        "command:PROGRAM asking the deployment tool; $KEYROLL_COMMIT is the commit to look for; and, for a "
        'PostgreSQL target with strategy = "alternating", sessions:previous: no session of the previous login '
        "is left); the old credential is retired only after they pass.",
        check=lambda values: _health_specs(tuple(v for v in values if v != SESSIONS_PREVIOUS)),
    )
    kubernetes: tuple[str, ...] = opt(
        (),
        "Kubernetes Secret keys that hold the value: SECRET/KEY or NAMESPACE/SECRET/KEY (see [kubernetes]).",
        check=_kubernetes_keys,
        example=["postgres-password/password"],
    )


@record(frozen=True)
class KubernetesSection:
    """The Kubernetes cluster that secrets are published to (`kubernetes = [...]` in a
    secret) and whose workloads are restarted (`kubernetes:KIND/NAME` in `restart`)."""

    kubeconfig: str = opt(
        "", "Kubeconfig file; empty: $KUBECONFIG, else ~/.kube/config, else the in-cluster service account."
    )
    context: str = opt("", "Kubeconfig context; empty: its current context.")
    namespace: str = opt(
        "", "Namespace of entries that name none; empty: the context's, else `default`.", check=_kubernetes_namespace
    )
    rollout_timeout: str = opt(
        "10m", "How long a rollout restart may take to complete.", kind="duration", check=_rollout_timeout
    )
    publish: bool = opt(
        True,
        "false: keyroll never contacts the cluster (no publishing, no workload restarts); "
        "`bundle render --format kubernetes` still writes the manifests.",
    )


@record(frozen=True)
class PostgresTarget:
    """A PostgreSQL role; only the SCRAM-SHA-256 verifier is sent (ALTER ROLE)."""

    type: str = opt("postgres", "Target type.", choices=("postgres",))
    host: str = opt("127.0.0.1", "Host name, address, or a socket folder.")
    port: int = opt(5432, "Port.", check=_between(1, 65535))
    database: str = opt("postgres", "Database to connect to.")
    user: str = opt("", "The role whose password this secret is.", required=True)
    admin_user: str = opt("", "Role that changes the password; empty: the role changes its own.")
    admin_password_secret: str = opt("", "A keyroll secret holding the admin password.")
    admin_password_file: str = opt("", 'A file holding the admin password ("credential:NAME" for systemd credentials).')
    connect_timeout: str = opt("5s", "Connection timeout.", kind="duration", check=_duration)
    strategy: str = opt(
        "single",
        "single (one login; new logins fail until consumers restart) or alternating (two login roles, "
        "zero-downtime; needs admin_user and username_secret).",
        choices=("single", "alternating"),
    )
    alternate_user: str = opt("", "alternating: the second login role (default: <user>_clone).")
    username_secret: str = opt(
        "", "alternating: the secret (kind username) holding the login name in use; keyroll creates it."
    )
    grace: str = opt(
        "1h",
        "alternating: how long the previous login keeps working after consumers are healthy.",
        kind="duration",
        check=_duration,
    )


@record(frozen=True)
class RedisTarget:
    """A Redis ACL user (new password beside the old one until the grace has passed),
    or the bare default user's requirepass (not zero-downtime)."""

    type: str = opt("redis", "Target type.", choices=("redis",))
    host: str = opt("127.0.0.1", "Host name or address.")
    port: int = opt(6379, "Port.", check=_between(1, 65535))
    user: str = opt("default", "The ACL user whose password this secret is.")
    admin_user: str = opt("", "ACL user that changes the password; empty: the user changes its own.")
    admin_password_secret: str = opt("", "A keyroll secret holding the admin password.")
    admin_password_file: str = opt("", 'A file holding the admin password ("credential:NAME" for systemd credentials).')
    mode: str = opt(
        "acl",
        "acl (zero-downtime) or requirepass (bare default user; not zero-downtime).",
        choices=("acl", "requirepass"),
    )
    grace: str = opt(
        "10m", "How long the old password stays valid beside the new one.", kind="duration", check=_duration
    )
    connect_timeout: str = opt("5s", "Connection timeout.", kind="duration", check=_duration)


@record(frozen=True)
class MysqlTarget:
    """A MariaDB account, changed with ALTER USER (tested with MariaDB; MySQL 8
    takes password hashes differently and is not supported)."""

    type: str = opt("mysql", "Target type.", choices=("mysql",))
    host: str = opt("127.0.0.1", "Host name or address.")
    port: int = opt(3306, "Port.", check=_between(1, 65535))
    user: str = opt("", "The account whose password this secret is.", required=True)
    user_host: str = opt("%", "The host part of the account ('user'@'host').")
    admin_user: str = opt("", "Account that changes the password; empty: the account changes its own.")
    admin_password_secret: str = opt("", "A keyroll secret holding the admin password.")
    admin_password_file: str = opt("", 'A file holding the admin password ("credential:NAME" for systemd credentials).')
    connect_timeout: str = opt("5s", "Connection timeout.", kind="duration", check=_duration)
    strategy: str = opt(
        "single",
        "single (one password; new logins fail until consumers restart) or dual (MariaDB 10.4+: new and old "
        "passwords both log in until the grace has passed; needs admin_user).",
        choices=("single", "dual"),
    )
    grace: str = opt(
        "1h",
        "dual: how long the old password keeps working after consumers are healthy.",
        kind="duration",
        check=_duration,
    )


@record(frozen=True)
class CommandTarget:
    """A program that applies the value.  $KEYROLL_PHASE says apply, verify or
    rollback, $KEYROLL_SECRET names the secret; stdin carries the value of this
    phase followed by one newline, never argv (with old_value set to true, apply and
    rollback also get the value it replaces on line 2, when there is one).  Read
    it with `IFS= read -r value || exit 1` (the value always ends with a newline,
    so input cut short by a killed keyroll is refused), and refuse an empty value.
    The program's environment holds PATH, HOME, LANG, LC_ALL, the KEYROLL_*
    variables and the env entries, nothing else of keyroll's.  Its output is never
    shown: keyroll reports the exit status and at most a first line of stderr that
    holds no part of a value.  Exit 0 is success, 75 a temporary failure."""

    type: str = opt("command", "Target type.", choices=("command",))
    argv: tuple[str, ...] = opt(
        (),
        "The program and its arguments (never the value).",
        check=_argv,
        example=("/usr/local/bin/set-grafana-password",),
        required=True,
    )
    timeout: str = opt("30s", "Longest time one phase may take.", kind="duration", check=_duration)
    old_value: bool = opt(
        False,
        "Also send the value being replaced, on line 2 of stdin, in apply and rollback (for an API that "
        "changes a password only given the old one); otherwise stdin holds the value alone.",
    )
    env: tuple[str, ...] = opt(
        (),
        'Environment variables for the program, as "NAME=value" (it inherits only PATH, HOME, LANG and LC_ALL).',
        check=_env_entries,
        example=("GRAFANA_URL=http://127.0.0.1:3000",),
    )


def _base_url(value: str) -> str | None:
    from urllib.parse import urlsplit

    from keyroll.config.httpspec import url_problem

    if problem := url_problem(value):
        return problem
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        return "not a valid URL (a host, and a port from 1 to 65535 if any)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "use http://HOST[:PORT][/PREFIX] or https://..."
    if parts.username is not None or parts.password is not None:
        return "no user:password@ here: use the requests' auth"
    if parts.query or parts.fragment:
        return "no query or fragment here: put the query in a request's path"
    return None


_request_timeout = _positive_duration("must be more than 0s")  # (0s used to mean 10s, silently)


_REQUEST_DOC = (
    "{ method, path, json | form, auth, headers, expect }: path is appended to base_url; "
    "json/form/auth/header values may hold {value}, {old} and {secret:NAME}; auth is basic:USER:PASSWORD, "
    "basic-file:USER:FILE, bearer:TOKEN, bearer-file:FILE or header:NAME:VALUE; expect lists the "
    "success codes (default [200, 201, 204])."
)


@record(frozen=True)
class HttpTarget:
    """A service with an HTTP API (Grafana, RabbitMQ, ...): one request per phase.  Values
    go only in JSON or form bodies, auth and header values, never in URLs; redirects
    are never followed; 401/403 mean refused, 5xx and no answer mean unavailable."""

    type: str = opt("http", "Target type.", choices=("http",))
    base_url: str = opt("", "The API's root URL (no placeholders, no credentials).", check=_base_url, required=True)
    ca_file: str = opt("", "An extra CA certificate file for https (the system's CAs are always trusted).")
    timeout: str = opt("10s", "Longest time one request may take.", kind="duration", check=_request_timeout)
    apply: HttpRequest | None = opt(
        None, "The request that sets the value. " + _REQUEST_DOC, kind="request", required=True
    )
    verify: HttpRequest | None = opt(
        None,
        "The request that succeeds only with the value ({value}); also what recovery asks.",
        kind="request",
        required=True,
    )
    rollback: HttpRequest | None = opt(
        None,
        "The request that goes back to the previous value; default: the apply request, with {value} "
        "standing for the previous value and {old} for the refused one.",
        kind="request",
    )


TargetSection = PostgresTarget | RedisTarget | MysqlTarget | CommandTarget | HttpTarget


def _publish_kinds(values: tuple[str, ...]) -> str | None:
    bad = [v for v in values if v not in PUBLISH_KINDS]
    return f"unknown kind(s) {', '.join(bad)}; choose from {', '.join(PUBLISH_KINDS)}" if bad else None


def _repo_path(value: str) -> str | None:
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts:
        return "a folder inside the repository: relative, without '..'"
    return None


def _push(value: str) -> str | None:
    words = value.split()
    if value and (len(words) != 2 or words[0].startswith("-") or words[1].startswith("-")):
        return 'write "REMOTE BRANCH", e.g. "origin main"'
    return None


def _author(value: str) -> str | None:
    return None if re.fullmatch(r"[^<>\n]+ <[^<>\s]+>", value) else 'write "Name <email>"'


PUBLISH_KINDS = ("bundle", "kubernetes")


@record(frozen=True)
class GitopsSection:
    """Publish every change as one commit of encrypted files to a git repository the fleet deploys from
    (sops-nix, Flux).  Without this section nothing is committed."""

    repo: str = opt(
        "",
        "A git work tree keyroll may commit to (a clone of the fleet repository); relative to this file's folder.",
        example="/srv/fleet",
        required=True,
    )
    publish: tuple[str, ...] = opt(
        ("bundle",),
        'What to commit: "bundle" (the SOPS store\'s encrypted bundle file), "kubernetes" (encrypted Secret manifests).',
        check=_publish_kinds,
    )
    path: str = opt("secrets/", "Where in the repository the files go.", check=_repo_path)
    push: str = opt(
        "", 'Remote and branch to push to, e.g. "origin main"; empty: commit only.', check=_push, example="origin main"
    )
    author: str = opt("keyroll <keyroll@localhost>", "Author and committer of keyroll's commits.", check=_author)
    converge_timeout: str = opt(
        "30m",
        "How long to wait for a secret's converge checks (the fleet applied the new values) before the old "
        "credential is retired; past it: exit 75, the old credential stays and the next run waits again.",
        kind="duration",
        check=_duration,
    )


TARGET_TYPES: dict[str, type] = {
    "postgres": PostgresTarget,
    "redis": RedisTarget,
    "mysql": MysqlTarget,
    "command": CommandTarget,
    "http": HttpTarget,
}

TOP_SECTIONS: dict[str, type] = {
    "paths": PathsSection,
    "defaults": DefaultsSection,
    "store": StoreSection,
    "backup": BackupSection,
    "notify": NotifySection,
    "daemon": DaemonSection,
    "metrics": MetricsSection,
    "kubernetes": KubernetesSection,
}
OPTIONAL_SECTIONS: dict[str, type] = {"gitops": GitopsSection}  # absent: the feature is off
TOP_KEYS = (*TOP_SECTIONS, *OPTIONAL_SECTIONS, "secrets", "targets")


# --- validation ---------------------------------------------------------------------


def section_fields(cls: type) -> tuple[Field, ...]:
    return fields(cls)


def _suggest(key: str, allowed: list[str]) -> str:
    from difflib import get_close_matches

    close = get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _typed(value: Any, kind: str, keypath: str) -> Any:
    """Check the TOML type of one value against the field's kind."""

    def wrong(expected: str) -> ConfigError:
        shown = type(value).__name__.replace("str", "string").replace("int", "integer").replace("bool", "boolean")
        return ConfigError(f"{keypath}: expected {expected}, got {shown} {value!r}")

    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if kind == "strs":
        if isinstance(value, str):
            raise wrong("a list of strings")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of strings")
        return tuple(value)
    if kind == "request":
        from keyroll.config.httpspec import parse_request

        return parse_request(value, keypath)
    if kind == "mode" and isinstance(value, int) and not isinstance(value, bool):
        try:
            return f"{parse_mode(value):04o}"  # TOML octal, 0o600
        except ValueError as exc:
            raise ConfigError(f"{keypath}: {exc}") from None
    if not isinstance(value, str):
        raise wrong("a string")
    return value


def parse_section(
    cls: type, data: Any, keypath: str, extra: Mapping[str, Field] | None = None
) -> tuple[Any, dict[str, Any]]:
    """Validate one table against `cls`; return (instance, extra values).

    `extra` names further allowed fields (the [defaults] keys in a secret); their
    validated values come back in the second element.  Errors name the key path.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{keypath}: expected a table, got {type(data).__name__}")
    own = {f.name: f for f in section_fields(cls)}
    allowed = {**own, **(extra or {})}
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{keypath}.{key}: unknown key{_suggest(key, list(allowed))}")
    values: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for name, fld in allowed.items():
        if name not in data:
            if fld.metadata.get("required"):
                raise ConfigError(f"{keypath}.{name}: required ({fld.metadata['doc'].rstrip('.')})")
            continue
        path = f"{keypath}.{name}"
        meta = fld.metadata
        value = _typed(data[name], meta["kind"], path)
        if meta["choices"] and value not in meta["choices"]:
            raise ConfigError(f"{path}: must be one of {', '.join(meta['choices'])}, got {value!r}")
        if meta["check"] is not None:
            problem = meta["check"](value)
            if problem:
                raise ConfigError(f"{path}: {problem}")
        (values if name in own else extras)[name] = value
    return cls(**values), extras


def field_default(fld: Field) -> Any:
    return fld.default if fld.default is not MISSING else None


def schema_description() -> dict[str, Any]:
    """The whole schema as plain data (documentation, NixOS options, `config schema`)."""

    def describe(cls: type) -> dict[str, Any]:
        return {
            "doc": " ".join((cls.__doc__ or "").split()),
            "options": {
                f.name: {
                    "kind": f.metadata["kind"],
                    "default": list(d) if isinstance(d := field_default(f), tuple) else d,
                    "doc": f.metadata["doc"],
                    **({"choices": list(f.metadata["choices"])} if f.metadata["choices"] else {}),
                }
                for f in section_fields(cls)
            },
        }

    return {
        **{name: describe(cls) for name, cls in TOP_SECTIONS.items()},
        **{name: describe(cls) for name, cls in OPTIONAL_SECTIONS.items()},
        "secrets.<name>": describe(SecretSection),
        **{f"targets.<name> (type = {kind})": describe(cls) for kind, cls in TARGET_TYPES.items()},
    }
