"""keyroll.digest gives exactly hashlib's SHA-256 and the hmac module's HMAC-SHA256.

Fingerprints recorded by earlier versions (computed with `hmac`) must still match,
and manifests must still verify with any sha256 tool.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from keyroll.digest import hmac_sha256, sha256


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 1000, 100_000])
def test_sha256_matches_hashlib(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    incremental = sha256()
    incremental.update(data[: size // 2])
    incremental.update(data[size // 2 :])
    assert incremental.digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("key_size", [0, 1, 32, 63, 64, 65, 200])
@pytest.mark.parametrize("message", [b"", b"x", b"correct-horse-battery-staple" * 10])
def test_hmac_matches_the_hmac_module(key_size: int, message: bytes) -> None:
    key = bytes((i * 7 + 3) % 256 for i in range(key_size))
    assert hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()


def test_rfc_4231_case_2() -> None:
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert hmac_sha256(b"Jefe", b"what do ya want for nothing?").hex() == expected
