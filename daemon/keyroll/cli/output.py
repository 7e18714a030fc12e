"""Rendering: a rich table on a terminal, aligned plain text otherwise, and a
versioned JSON envelope with --json.  rich is imported only for a terminal."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from keyroll.records import asdict, is_record

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from typing import Any

JSON_FORMAT = "keyroll/1"


def to_plain(value: Any) -> Any:
    """Records, paths and tuples -> JSON-ready data."""
    if is_record(value):
        return to_plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(command: str, exit_code: int, data: Any = None, error: str | None = None) -> None:
    """The envelope every --json output uses: format, command, ok, exit_code, data|error."""
    import json

    from keyroll.schedule import to_iso, utcnow

    envelope: dict[str, Any] = {
        "format": JSON_FORMAT,
        "command": command,
        "generated": to_iso(utcnow()),
        "ok": exit_code == 0,
        "exit_code": exit_code,
    }
    if error is not None:
        envelope["error"] = error
    else:
        envelope["data"] = to_plain(data)
    sys.stdout.write(json.dumps(envelope, indent=2) + "\n")


def is_terminal() -> bool:
    return sys.stdout.isatty()


def table(
    title: str | None, headers: Sequence[str], rows: Sequence[Sequence[Any]], styles: dict[str, str] | None = None
) -> None:
    """Print a table: rich on a terminal, aligned columns otherwise."""
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    if is_terminal():
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        rich_table = Table(title=title, header_style="bold")
        for index, header in enumerate(headers):
            if index == 0:  # the name a person types next (a secret, a backup): never cut
                longest = max([len(header), *(len(row[0]) for row in cells)])
                rich_table.add_column(header, no_wrap=True, min_width=longest)
            else:  # a narrow terminal folds the other cells onto more lines, never drops characters
                rich_table.add_column(header, overflow="fold")
        for row in cells:
            rich_table.add_row(
                *[(f"[{styles[c]}]{escape(c)}[/]" if styles and c in styles else escape(c)) for c in row]
            )
        Console().print(rich_table)
        return
    if title:
        print(title)
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def line(text: str = "") -> None:
    print(text)
