"""The syntax of age recipients, checked as plain text: the schema calls it without
importing the encryption machinery (`keyroll.age`) or pyrage."""

from __future__ import annotations

import re

# Bech32: "age1" and 58 characters of its data alphabet (no 1, b, i, o).
RECIPIENT = re.compile(r"\Aage1[02-9ac-hj-np-z]{58}\Z")
IDENTITY_PREFIX = "AGE-SECRET-KEY-1"


def recipient_problem(value: str) -> str | None:
    """Why `value` is not an age recipient (age1...), or None; no pyrage needed."""
    if RECIPIENT.match(value.strip()):
        return None
    if value.startswith(IDENTITY_PREFIX):
        return "this is a secret key (AGE-SECRET-KEY-1...); give its public key (age1...)"
    return f"{value[:12]!r}... is not an age recipient (age1 followed by 58 characters)"
