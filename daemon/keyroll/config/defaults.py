"""The embedded default policy: the seed stack's 12 secrets.

Used when no config file exists, and for the secrets of a config file that has
no [secrets] table.  `config.example.toml` is rendered from this and the schema.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from typing import Any

_SERVICE_KEYS = {
    "aidb": "AIDB, the stack's knowledge database API",
    "aider_wrapper": "the Aider wrapper service",
    "container_engine": "the container engine API",
    "dashboard": "the operations dashboard",
    "embeddings": "the embeddings service",
    "hybrid_coordinator": "the hybrid coordinator",
    "nixos_docs": "the NixOS documentation service",
    "ralph_wiggum": "the Ralph Wiggum agent loop",
}

SEED_SECRETS: dict[str, dict[str, Any]] = {
    "postgres_password": {
        "kind": "password",
        "description": "PostgreSQL password of the stack's database role",
        "services": ["postgres", "aidb", "hybrid-coordinator", "health-monitor", "ralph-wiggum"],
    },
    "redis_password": {
        "kind": "password",
        "description": "Redis password shared by the stack's cache clients",
        "services": ["redis", "aidb", "nixos-docs", "autogpt", "ralph-wiggum"],
    },
    "grafana_admin_password": {
        "kind": "password",
        "description": "Grafana admin login",
        "services": ["grafana"],
    },
    "stack_api_key": {
        "kind": "api_key",
        "description": "Stack-wide API key accepted by every service",
        "services": ["global"],
    },
    **{
        f"{key}_api_key": {
            "kind": "api_key",
            "description": f"API key of {what}",
            "services": [key.replace("_", "-")],
        }
        for key, what in _SERVICE_KEYS.items()
    },
}

DEFAULT_DOCUMENT: dict[str, Any] = {"secrets": SEED_SECRETS}
