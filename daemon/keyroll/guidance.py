"""Words for people: what the services of a store-only secret need after it changed
(never a value)."""

from __future__ import annotations

from keyroll.config.policy import SecretPolicy

# Services that check the credential themselves: the new value must be applied there.
_APPLY_HINTS = {
    "postgres": "apply it in PostgreSQL (ALTER ROLE ... PASSWORD)",
    "postgresql": "apply it in PostgreSQL (ALTER ROLE ... PASSWORD)",
    "redis": "apply it in Redis (ACL SETUSER, or requirepass)",
    "mysql": "apply it in MySQL (ALTER USER)",
    "mariadb": "apply it in MariaDB (ALTER USER)",
    "grafana": "set it as Grafana's admin password (grafana cli admin reset-admin-password)",
}

FOOTER = (
    "To have keyroll apply new values and restart services itself, give the secret a target, "
    "restart and health in the config (see config.example.toml)."
)


def store_only_guidance(secret: SecretPolicy) -> str:
    """One sentence: what the secret's services need now that it changed in the store."""
    steps = [_APPLY_HINTS[s.lower()] for s in secret.services if s.lower() in _APPLY_HINTS]
    readers = [s for s in secret.services if s.lower() not in _APPLY_HINTS]
    if "global" in readers:
        steps.append("restart every service of the stack (it is global)")
    elif readers:
        steps.append(f"restart {', '.join(readers)}")
    if not secret.services:
        steps.append("restart whatever reads it (no services are listed)")
    return ", then ".join(steps)
