"""Generated values: CSPRNG, database-safe alphabet, honest entropy figures."""

from __future__ import annotations

import string
from collections import Counter

from keyroll.generate import (
    ALNUM,
    FORBIDDEN_CHARACTERS,
    alphabet_problem,
    entropy_bits,
    generate,
    value_problem,
)


def test_password_and_api_key_lengths_and_alphabet() -> None:
    for length in (32, 64):
        value = generate(length)
        assert len(value) == length
        assert set(value) <= set(string.ascii_letters + string.digits)
        assert not set(value) & set("/+=")


def test_entropy_is_the_real_figure_not_the_old_guides() -> None:
    assert entropy_bits(32) == 190  # not 256
    assert entropy_bits(64) == 381
    assert entropy_bits(32, "hex") == 128


def test_values_are_distinct_and_roughly_uniform() -> None:
    values = {generate(32) for _ in range(2000)}
    assert len(values) == 2000
    counts = Counter("".join(values))
    expected = 2000 * 32 / len(ALNUM)
    # Every symbol appears, none wildly off its expectation (a broken RNG or a modulo bias would show).
    assert set(counts) == set(ALNUM)
    assert all(0.8 * expected < c < 1.2 * expected for c in counts.values())


def test_custom_alphabet_is_used_and_checked() -> None:
    value = generate(40, "abcdefghij")
    assert set(value) <= set("abcdefghij")
    assert alphabet_problem("abc") == "needs at least 10 distinct characters"
    assert "not database- and URL-safe" in (alphabet_problem("abcdefghij/+=") or "")
    assert alphabet_problem("aabcdefghijk") == "has repeated characters"
    for char in "/+=@:'\"":
        assert char in FORBIDDEN_CHARACTERS


def test_value_problem_never_echoes_the_value() -> None:
    secret = "Sup3r/Secret+Value=="
    problem = value_problem(secret, 32, "alnum")
    assert problem is not None and secret not in problem and "/" not in problem
    assert value_problem("a" * 31, 32, "alnum") == "has 31 characters; the policy says 32"
    assert value_problem("", 32, "alnum") == "is empty"
    assert value_problem(generate(32), 32, "alnum") is None
