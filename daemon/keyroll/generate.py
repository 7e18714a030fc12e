"""Secret values from the OS CSPRNG (`secrets`), and what they are worth in bits."""

from __future__ import annotations

import math

# Letters and digits: safe in SQL literals, URLs, shell variables and .env files.
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
ALNUM = _LOWER + _LOWER.upper() + _DIGITS
NAMED_ALPHABETS = {
    "alnum": ALNUM,
    "lower-alnum": _LOWER + _DIGITS,
    "hex": "0123456789abcdef",
}
# Characters a generated or stored value may never contain: they break URLs,
# connection strings, shell quoting or .env files.
FORBIDDEN_CHARACTERS = "/+=:@%#?&'\"`\\$ \t\r\n"

DEFAULT_LENGTHS = {"password": 32, "api_key": 64, "username": 63}  # (a login name is never generated)
# The largest value keyroll stores, in UTF-8 bytes (64 KiB); a secret's `max_length` may only lower it.
MAX_VALUE_BYTES = 65536


def alphabet_characters(alphabet: str) -> str:
    """The characters of a named alphabet, or the literal alphabet itself."""
    return NAMED_ALPHABETS.get(alphabet, alphabet)


def alphabet_problem(alphabet: str) -> str | None:
    """Why `alphabet` is unusable, or None if it is fine."""
    chars = alphabet_characters(alphabet)
    if len(set(chars)) != len(chars):
        return "has repeated characters"
    if len(chars) < 10:
        return "needs at least 10 distinct characters"
    bad = sorted({c for c in chars if c in FORBIDDEN_CHARACTERS or not c.isprintable() or ord(c) > 126})
    if bad:
        return f"contains characters that are not database- and URL-safe: {''.join(bad)!r}"
    return None


def generate(length: int, alphabet: str = "alnum") -> str:
    """A uniformly random value of `length` characters drawn from `alphabet`, from
    the OS CSPRNG.  Bytes at or above the largest multiple of the alphabet's size
    are discarded (rejection sampling), so every character is equally likely."""
    import secrets

    chars = alphabet_characters(alphabet)
    size = len(chars)
    if size > 256:
        return "".join(secrets.choice(chars) for _ in range(length))
    limit = 256 - 256 % size
    picked: list[str] = []
    while len(picked) < length:
        picked += [chars[b % size] for b in secrets.token_bytes(length + length // 2 + 8) if b < limit]
    value = "".join(picked[:length])
    from keyroll.outputs import hold

    hold(value)  # (a program's output holding part of it is then withheld)
    return value


def entropy_bits(length: int, alphabet: str = "alnum") -> int:
    """Bits of entropy of a generated value, rounded down (32 alnum chars: 190)."""
    return int(length * math.log2(len(alphabet_characters(alphabet))))


def unstorable(value: str) -> str | None:
    """Why `value` cannot be a secret's value at all (empty, several lines, a NUL
    byte, not UTF-8), or None.  Never echoes it."""
    if not value.strip():
        return "is empty"
    if "\n" in value or "\r" in value:
        return "holds several lines"
    if "\0" in value:
        return "holds a NUL byte"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, read with surrogateescape
            return "is not UTF-8 text"
    return None


def size_problem(value: str, limit: int) -> str | None:
    """Why `value` is too large to store (more than `limit` UTF-8 bytes), or None."""
    size = len(value.encode("utf-8", "surrogateescape"))
    return f"is {size} bytes, more than the limit of {limit} bytes (max_length)" if size > limit else None


def value_problem(value: str, length: int, alphabet: str) -> str | None:
    """Why a stored value does not meet its policy, or None if it does."""
    if not value:
        return "is empty"
    chars = set(alphabet_characters(alphabet))
    foreign = sorted({c for c in value if c not in chars})
    if foreign:
        # Never echo the value; say how many characters are outside the alphabet.
        return f"has {len(foreign)} kind(s) of character outside its alphabet ({alphabet_label(alphabet)})"
    if len(value) != length:
        return f"has {len(value)} characters; the policy says {length}"
    return None


def alphabet_label(alphabet: str) -> str:
    """A short, printable name for an alphabet."""
    if alphabet in NAMED_ALPHABETS:
        return alphabet
    return f"{len(alphabet)} custom characters"
