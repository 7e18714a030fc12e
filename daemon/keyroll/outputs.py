"""What keyroll may repeat of a program's output: one line, and only when it holds
no part of a secret value.

A program keyroll runs (a command target, a `command:` restart or health check)
may echo what it read, whole or in part.  Masking whole values is not enough: 31
of 32 characters are as good as the value.  So keyroll never shows, stores or
sends a program's output as such: at most its first non-empty line, and only when
no 8 characters in a row of that line appear in any value keyroll holds.
"""

from __future__ import annotations

from collections.abc import Iterable

WINDOW = 8  # a run this long of a value's characters is treated as part of the value
MAX_LINE = 200
WITHHELD = "(output withheld: it contained part of a secret)"

_held: dict[str, None] = {}  # every value this process has read or made (insertion-ordered set)


def hold(*values: str | None) -> None:
    """Remember values this process has read or generated: output that contains
    part of one of them is withheld (see `safe_excerpt`)."""
    for value in values:
        if value:
            _held[value] = None


def held() -> list[str]:
    """The values remembered by `hold`."""
    return list(_held)


def _windows(values: Iterable[str]) -> tuple[set[str], list[str]]:
    """Every WINDOW-character run of the values, and the values shorter than that."""
    runs: set[str] = set()
    short: list[str] = []
    for value in values:
        if len(value) < WINDOW:
            if len(value.strip()) >= 4:  # (shorter: every line would match)
                short.append(value)
            continue
        runs.update(value[i : i + WINDOW] for i in range(len(value) - WINDOW + 1))
    return runs, short


def contains_part(text: str, values: Iterable[str]) -> bool:
    """True when `text` holds WINDOW characters in a row of any value (or a whole
    value shorter than that)."""
    runs, short = _windows(values)
    if any(value in text for value in short):
        return True
    return any(text[i : i + WINDOW] in runs for i in range(len(text) - WINDOW + 1))


def safe_excerpt(output: bytes | str, values: Iterable[str] = ()) -> str:
    """The first non-empty line of a program's output (cut to MAX_LINE characters),
    '' when there is none, or WITHHELD when that line contains part of a value in
    `values` or of a value remembered by `hold`."""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    line = next((stripped for raw in text.splitlines() if (stripped := raw.strip())), "")
    if not line:
        return ""
    if contains_part(line, [*values, *_held]):
        return WITHHELD
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."
