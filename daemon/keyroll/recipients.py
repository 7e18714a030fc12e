"""The syntax of age recipients, checked as plain text: the schema calls it without
importing the encryption machinery (`keyroll.age`) or pyrage."""

from __future__ import annotations

import re

# Bech32: "age1" and 58 characters of its data alphabet (no 1, b, i, o).
RECIPIENT = re.compile(r"\Aage1[02-9ac-hj-np-z]{58}\Z")
IDENTITY_PREFIX = "AGE-SECRET-KEY-1"


def recipient_problem(value: str) -> str | None:
    """Why `value` is not an age recipient (age1...), or None; no pyrage needed.  Shows
    the start of `value` only when it looks like a recipient: a secret pasted in by
    mistake never reaches the message."""
    text = value.strip()
    if RECIPIENT.match(text):
        return None
    if text.upper().startswith(IDENTITY_PREFIX):
        return "this is a secret key (AGE-SECRET-KEY-1...); give its public key (age1...)"
    if text.startswith("age1"):
        return f"{text[:12]!r}... is not an age recipient (age1 followed by 58 characters)"
    return "an entry is not an age recipient (age1 followed by 58 characters); it is not shown"
