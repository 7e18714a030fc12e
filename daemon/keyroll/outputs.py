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
# The values remembered (most recently read last); the oldest are forgotten beyond
# these bounds, so a daemon running for years does not grow.  A failing program's
# own values were read moments before it ran.
MAX_HELD = 16384
MAX_HELD_CHARS = 16 * 1024 * 1024

_held: dict[str, None] = {}  # an insertion-ordered set
_held_chars = 0


def hold(*values: str | None) -> None:
    """Remember values this process has read or generated: output that contains
    part of one of them is withheld (see `safe_excerpt`)."""
    global _held_chars
    for value in values:
        if not value:
            continue
        if value in _held:
            del _held[value]  # (moved to the newest end)
        else:
            _held_chars += len(value)
        _held[value] = None
    while len(_held) > MAX_HELD or (_held_chars > MAX_HELD_CHARS and len(_held) > 1):
        oldest = next(iter(_held))
        del _held[oldest]
        _held_chars -= len(oldest)


def held() -> list[str]:
    """The values remembered by `hold`."""
    return list(_held)


def contains_part(text: str, values: Iterable[str]) -> bool:
    """True when `text` holds WINDOW characters in a row of any value (or a whole
    value shorter than that, of 4 characters or more: shorter ones match anything)."""
    values = list(values)
    runs = {text[i : i + WINDOW] for i in range(len(text) - WINDOW + 1)}
    if runs:
        joined = "\0".join(value for value in values if len(value) >= WINDOW)  # (no value holds a NUL)
        if any(run in joined for run in runs):
            return True
    return any(value in text for value in values if len(value) < WINDOW and len(value.strip()) >= 4)


def safe_excerpt(output: bytes | str, values: Iterable[str] = ()) -> str:
    """The first non-empty line of a program's output, control characters replaced
    and cut to MAX_LINE characters; '' when there is none; WITHHELD when what would
    be shown contains part of a value in `values` or of a value remembered by `hold`."""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    line = next((stripped for raw in text.splitlines() if (stripped := raw.strip())), "")
    if not line:
        return ""
    line = "".join(c if c.isprintable() else "?" for c in line[: MAX_LINE * 4])
    if len(line) > MAX_LINE:
        line = line[: MAX_LINE - 3] + "..."
    return WITHHELD if contains_part(line, [*values, *_held]) else line
