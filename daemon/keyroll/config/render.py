"""Render a commented config file from the schema and the embedded default policy.

`keyroll config generate` prints it and `config.example.toml` is this output
(a test keeps them identical), so every option appears with its documentation.
"""

from __future__ import annotations

import textwrap
from typing import Any

from keyroll.config.defaults import SEED_SECRETS
from keyroll.config.schema import (
    OPTIONAL_SECTIONS,
    TARGET_TYPES,
    TOP_SECTIONS,
    DefaultsSection,
    SecretSection,
    field_default,
)
from keyroll.records import Field, fields

HEADER = """\
# keyroll configuration.
#
# Every option appears below with its documentation; a commented-out line shows
# an option that is off or empty by default.  Relative paths resolve against the
# folder of this file.  Durations are <number><s|m|h|d>.  Without a [secrets]
# table keyroll manages the seed stack's 12 secrets listed at the end.
#
# Check a change with:   keyroll --config THIS_FILE config validate
"""

EXAMPLE_TARGETS: dict[str, dict[str, Any]] = {
    "pg": {"type": "postgres", "user": "mcp", "admin_user": "postgres"},
    "cache": {"type": "redis", "user": "stack"},
    "stackdb": {"type": "mysql", "user": "stack"},
    "grafana": {"type": "command", "argv": ["/usr/local/bin/set-grafana-password"]},
    # (docs/recipes.md: RabbitMQ and Grafana)
    "rabbitmq": {
        "type": "http",
        "base_url": "http://127.0.0.1:15672",
        "apply": {
            "method": "PUT",
            "path": "/api/users/app",
            "json": {"password": "{value}", "tags": "management"},
            "auth": "basic-file:admin:credential:rabbitmq-admin",
            "expect": [201, 204],
        },
        "verify": {"method": "GET", "path": "/api/whoami", "auth": "basic:app:{value}", "expect": [200]},
    },
}
EXAMPLE_SECRET_OPTIONS: dict[str, Any] = {
    "target": "pg",
    "restart": ["systemd:aidb.service", "command:/usr/local/bin/reload-aidb"],
    "health": ["tcp:127.0.0.1:8080", "http://127.0.0.1:8080/health"],
}


def toml_value(value: Any) -> str:
    """A value in TOML syntax (strings, booleans, integers, lists, inline tables)."""
    import json
    import re

    if isinstance(value, dict):
        items = (
            f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', k) else json.dumps(k)} = {toml_value(v)}" for k, v in value.items()
        )
        return "{ " + ", ".join(items) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _comment(text: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, 86)]


def _option(fld: Field, value: Any = None, *, active: bool | None = None) -> list[str]:
    meta = fld.metadata
    shown = value if value is not None else field_default(fld)
    empty = shown in ("", ()) or shown == []
    if empty and meta.get("example") is not None:
        shown = meta["example"]
    lines = _comment(meta["doc"])
    if shown is None:  # (an optional table with no example: its documentation only)
        return lines
    is_active = (not empty) if active is None else active
    lines.append(("" if is_active else "# ") + f"{fld.name} = {toml_value(shown)}")
    return lines


def render_example() -> str:
    """The full commented configuration, equivalent to the embedded default."""
    out: list[str] = [HEADER]
    for name, cls in TOP_SECTIONS.items():
        out.append(f"[{name}]")
        out += _comment(" ".join((cls.__doc__ or "").split()))
        for fld in fields(cls):
            out += _option(fld)
        out.append("")

    out.append("# Live services a secret's value is applied to.  Uncomment and adapt, then name the")
    out.append("# table in a secret's `target`.  Admin passwords come from another keyroll secret")
    out.append("# (admin_password_secret) or a file / systemd credential (admin_password_file).")
    out.append("")
    for table, values in EXAMPLE_TARGETS.items():
        cls = TARGET_TYPES[values["type"]]
        out.append(f"# [targets.{table}]")
        out += _comment(" ".join((cls.__doc__ or "").split()))
        for fld in fields(cls):
            value = values.get(fld.name)
            if value is None and fld.name == "rollback":
                value = values["apply"]  # (what the default does, written out)
            for line in _option(fld, value, active=True):
                out.append(line if line.startswith("#") else "# " + line)
        out.append("")

    for name, cls in OPTIONAL_SECTIONS.items():  # off unless written: shown commented out
        out.append(f"# [{name}]")
        out += _comment(" ".join((cls.__doc__ or "").split()))
        for fld in fields(cls):
            for line in _option(fld, active=True):
                out.append(line if line.startswith("#") else "# " + line)
        out.append("")

    secret_fields = {f.name: f for f in fields(SecretSection)}
    default_fields = list(fields(DefaultsSection))
    for index, (name, spec) in enumerate(SEED_SECRETS.items()):
        out.append(f"[secrets.{name}]")
        out += _comment(spec["description"])
        if index == 0:
            for fld in secret_fields.values():
                if fld.name in spec:
                    out += _option(fld, spec[fld.name], active=True)
                elif fld.name in EXAMPLE_SECRET_OPTIONS:
                    out += _comment(fld.metadata["doc"])
                    out.append(f"# {fld.name} = {toml_value(EXAMPLE_SECRET_OPTIONS[fld.name])}")
                else:
                    out += _option(fld, active=False)
            out.append("# Any [defaults] key can be set here too, e.g.:")
            for fld in default_fields[:2]:
                out.append(f"# {fld.name} = {toml_value(field_default(fld))}")
        else:
            for key in ("kind", "description", "services"):
                out.append(f"{key} = {toml_value(spec[key])}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
