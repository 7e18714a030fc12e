"""SHA-256 and HMAC-SHA256 without loading OpenSSL.

`import hashlib` (and `hmac`, which imports it) initialises OpenSSL, about 3 ms
of every `keyroll status`; CPython's own SHA-256 module is already built in.
The results are the same bytes as `hashlib.sha256` and `hmac.new(..., sha256)`
(tests check both); where the built-in module is missing (a build that leaves it
out) hashlib is used.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)

if TYPE_CHECKING:
    from hashlib import _Hash as Hash
else:
    Hash = object


def _builtin_sha256() -> Callable[..., Hash]:
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # CPython 3.12 and later
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found]  # CPython 3.11
        except ImportError:
            from hashlib import sha256
    return sha256  # type: ignore[no-any-return]


sha256: Callable[..., Hash] = _builtin_sha256()

_BLOCK = 64  # SHA-256's block size in bytes
_INNER = bytes(x ^ 0x36 for x in range(256))
_OUTER = bytes(x ^ 0x5C for x in range(256))


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) of `message` under `key`: the same bytes as the `hmac` module gives."""
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = sha256(key.translate(_INNER))
    inner.update(message)
    outer = sha256(key.translate(_OUTER))
    outer.update(inner.digest())
    return outer.digest()
