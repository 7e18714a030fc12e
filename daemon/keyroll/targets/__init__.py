"""Live services a secret's value is applied to, behind one small interface.

A target changes one account's password.  The rotation transaction calls, in
order: `check` (reachable, allowed), `apply` (make the new value valid, keeping
the old one where the service allows), `verify` (log in with the new value as a
consumer would), and on failure `rollback`; later `retire` removes an old
credential that was kept valid during a grace period.  `accepts` answers the
one question recovery asks: does the service take this value right now?
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from keyroll.errors import KeyrollError, TargetError
from keyroll.targets.base import Connections as Connections  # (the interface lives in targets.base)
from keyroll.targets.base import Credentials, read_credential_file
from keyroll.targets.base import Target as Target

if TYPE_CHECKING:
    from keyroll.config.policy import Policy


def admin_credentials(
    policy: Policy, target_name: str, secret_name: str, live_value: Callable[[str], str | None]
) -> Credentials:
    """The login a target uses to change a password: an admin account (password from
    another keyroll secret, a file / systemd credential, or none), or the account
    itself with its current value."""
    from keyroll.paths import resolve_config_path

    config = policy.targets[target_name]
    admin_user = getattr(config, "admin_user", "")
    secret = getattr(config, "admin_password_secret", "")
    file_option = getattr(config, "admin_password_file", "")
    account = getattr(config, "user", "")

    def required(name: str, hint: str) -> Callable[[], str]:
        def value() -> str:
            found = live_value(name)
            if found is None:
                raise TargetError(f"{hint}; adopt its current value first with `keyroll set {name}`")
            return found

        return value

    if not admin_user:
        return Credentials(
            account,
            required(
                secret_name,
                f"{secret_name} is missing from the store, so keyroll cannot log in as {account!r} to change it",
            ),
            "its own current value",
            own=True,
        )
    if secret:
        return Credentials(
            admin_user, required(secret, f"the admin secret {secret} is missing from the store"), f"secret {secret}"
        )
    if file_option:
        key = f"targets.{target_name}.admin_password_file"
        path = resolve_config_path(file_option, policy.config_dir, key=key, env=policy.env)

        def from_file() -> str:
            return read_credential_file(file_option, policy.config_dir, policy.env, key)

        return Credentials(admin_user, from_file, f"file {path}")
    return Credentials(admin_user, lambda: None, "no password")


def open_target(
    policy: Policy,
    target_name: str,
    secret_name: str,
    live_value: Callable[[str], str | None],
    connections: Connections | None = None,
) -> Target:
    """Build the target named in the policy.  Nothing connects yet, and the client
    library (psycopg, redis, ...) is imported only when the target first connects."""
    from keyroll.config import schema

    config = policy.targets[target_name]
    credentials = admin_credentials(policy, target_name, secret_name, live_value)
    if isinstance(config, schema.PostgresTarget) and config.strategy == "alternating":
        from keyroll.targets.pg_alternating import AlternatingPostgresTarget

        return AlternatingPostgresTarget(
            target_name, config, credentials, secret_name, connections or Connections(), live_value
        )
    if isinstance(config, schema.PostgresTarget):
        from keyroll.targets.postgres import PostgresTarget

        return PostgresTarget(target_name, config, credentials, secret_name, connections or Connections())
    if isinstance(config, schema.RedisTarget):
        from keyroll.targets.redis import RedisTarget

        return RedisTarget(target_name, config, credentials, secret_name, connections or Connections())
    if isinstance(config, schema.MysqlTarget):
        from keyroll.targets.mysql import MysqlTarget

        return MysqlTarget(target_name, config, credentials, secret_name, connections or Connections())
    if isinstance(config, schema.CommandTarget):
        from keyroll.targets.command import CommandTarget

        return CommandTarget(target_name, config, credentials, secret_name, policy.env, policy.paths)
    if isinstance(config, schema.HttpTarget):
        from keyroll.targets.http import HttpTarget

        return HttpTarget(target_name, config, credentials, secret_name, live_value, policy.env, policy.config_dir)
    raise KeyrollError(f"targets.{target_name}.type: unsupported type {config.type!r}")
