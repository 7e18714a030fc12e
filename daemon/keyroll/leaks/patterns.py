"""The values to look for, their encodings, and the exact multi-pattern matcher."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from keyroll.errors import UsageError

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from typing import Any

MIN_LENGTH = 12  # shorter values match by chance: not searched for
DFA_ABOVE = 32 << 20  # bytes to read above which the automaton is built as a DFA
PREFIX = 16  # bytes of each pattern in the automaton (the rest is compared in place)
PARALLEL_ABOVE = 1 << 20  # bytes above which one read is matched on two threads
INSTALL_HINT = "pip install 'keyroll[leaks]'"


class Needle:
    """One value to look for, with the secret it belongs to and whether it is live.
    (Not a record: its repr never shows the value.)"""

    __slots__ = ("live", "secret", "state", "value")

    def __init__(self, secret: str, value: str, live: bool, state: str) -> None:
        self.secret = secret
        self.value = value
        self.live = live
        self.state = state

    def __repr__(self) -> str:
        return f"Needle({self.secret!r}, {self.state!r})"


def base64_cores(raw: bytes) -> list[bytes]:
    """For each of the three byte alignments a value can start at in a base64 stream,
    the base64 characters that depend on the value's bytes alone."""
    cores = []
    for skip in range(3):
        text = base64.b64encode(b"\0" * skip + raw + b"\0\0")
        first = -(-8 * skip // 6)  # the first character whose six bits all fall in the value
        end = (8 * (skip + len(raw)) - 6) // 6 + 1  # one past the last such character
        cores.append(text[first:end])
    return cores


def encodings(value: str) -> list[tuple[str, bytes]]:
    """The byte patterns of a value: raw, base64 (three alignments; URL-safe too where it
    differs), URL-encoded (where it differs), hex in lower and upper case."""
    raw = value.encode("utf-8")
    found = [("raw", raw)]
    for core in base64_cores(raw):
        found.append(("base64", core))
        urlsafe = core.replace(b"+", b"-").replace(b"/", b"_")
        if urlsafe != core:
            found.append(("base64url", urlsafe))
    url = quote(value, safe="").encode("ascii")
    if url != raw:
        found.append(("url", url))
    found.append(("hex", raw.hex().encode("ascii")))
    found.append(("HEX", raw.hex().upper().encode("ascii")))
    return found


class Matcher:
    """Every pattern of every needle, in one Aho-Corasick automaton (overlapping matches).

    The automaton holds each pattern's first PREFIX bytes only (a third of the states
    of the whole patterns: four times faster to build as a DFA, and faster to run where
    random text keeps it away from its root); each prefix match is then checked against
    the whole patterns that start with it, in place."""

    def __init__(self, needles: Sequence[Needle]) -> None:
        try:
            import ahocorasick_rs
        except ImportError:
            raise UsageError(f"ahocorasick-rs is not installed (needed by `keyroll leaks`): {INSTALL_HINT}") from None
        self.needles = list(needles)
        owners: dict[bytes, list[tuple[int, str]]] = {}
        for index, needle in enumerate(self.needles):
            for encoding, pattern in encodings(needle.value):
                entries = owners.setdefault(pattern, [])
                if (index, encoding) not in entries:
                    entries.append((index, encoding))
        self.patterns = list(owners)
        self.owners = [owners[p] for p in self.patterns]
        self.longest = max((len(p) for p in self.patterns), default=1)
        by_prefix: dict[bytes, list[int]] = {}
        for index, pattern in enumerate(self.patterns):
            by_prefix.setdefault(pattern[:PREFIX], []).append(index)
        self._prefixes = list(by_prefix)
        self._whole = [[(i, self.patterns[i]) for i in by_prefix[p]] for p in self._prefixes]
        self._library = ahocorasick_rs
        self._automaton: Any = None
        self._fast = False
        self._pool: Any = None

    def prepare(self, expected_bytes: int) -> None:
        """Build the automaton for about this much data: a DFA (slower to build, about
        twice as fast to run) once there are tens of megabytes to read."""
        fast = expected_bytes > DFA_ABOVE
        if not self.patterns or (self._automaton is not None and self._fast >= fast):
            return
        kinds = self._library.Implementation
        implementation = kinds.DFA if fast else kinds.ContiguousNFA
        self._automaton = self._library.BytesAhoCorasick(self._prefixes, implementation=implementation)
        self._fast = fast

    def _find_in(self, data: Any) -> list[tuple[int, int, int]]:
        """Whole patterns found in `data` (a pattern running past its end is not)."""
        size = len(data)
        found = []
        for prefix, start, _ in self._automaton.find_matches_as_indexes(data, overlapping=True):
            for index, pattern in self._whole[prefix]:
                end = start + len(pattern)
                if end <= size and (end - start <= PREFIX or data[start:end] == pattern):
                    found.append((index, start, end))
        return found

    def find(self, data: Any) -> list[tuple[int, int, int]]:
        """(pattern, start, end) of every occurrence in `data`, overlapping ones included.
        Big data is cut in parts matched on two threads (the matcher releases the GIL):
        each part reaches a pattern's length into the next, and keeps only the matches
        that start in its own part, so each is found once."""
        if self._automaton is None:
            if not self.patterns:
                return []
            self.prepare(0)
        size = len(data)
        view = memoryview(data)
        if size < PARALLEL_ABOVE:
            return self._find_in(view)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(2, thread_name_prefix="keyroll-leaks")
        half = size // 2
        first = self._pool.submit(self._find_in, view[: half + self.longest - 1])
        second = self._find_in(view[half:])
        found = [m for m in first.result() if m[1] < half]
        found.extend((pattern, start + half, end + half) for pattern, start, end in second)
        return found


def scan_bytes_stream(matcher: Matcher, chunks: Iterable[bytes]) -> list[tuple[int, int]]:
    """(offset, pattern) of every match in a stream of chunks (overlapping by the longest
    pattern, so a match across a chunk boundary is found once)."""
    found: list[tuple[int, int]] = []
    carry = b""
    base = 0
    searched = 0
    keep = matcher.longest - 1
    for chunk in chunks:
        data = carry + chunk if carry else chunk
        for pattern, start, end in matcher.find(data):
            if base + end > searched:
                found.append((base + start, pattern))
        searched = base + len(data)
        cut = max(len(data) - keep, 0)
        carry = data[cut:]
        base += cut
    return found


BINARY_PROBE = 8000  # git's own test: a NUL in the first 8000 bytes makes a blob binary


class LineCounter:
    """Line numbers of byte offsets, and git's binary test, over content read in chunks
    (a big blob or file is never held whole)."""

    def __init__(self, offsets: Iterable[int]) -> None:
        self._offsets = sorted(set(offsets))
        self._next = 0
        self._base = 0
        self._newlines = 0
        self._head = b""
        self.lines: dict[int, int] = {}  # offset -> 1-based line

    def feed(self, data: bytes) -> None:
        end = self._base + len(data)
        while self._next < len(self._offsets) and self._offsets[self._next] < end:
            offset = self._offsets[self._next]
            self.lines[offset] = self._newlines + data.count(b"\n", 0, offset - self._base) + 1
            self._next += 1
        self._newlines += data.count(b"\n")
        if len(self._head) < BINARY_PROBE:
            self._head += data[: BINARY_PROBE - len(self._head)]
        self._base = end

    @property
    def binary(self) -> bool:
        return b"\0" in self._head

    def lines_of(self, offsets: Iterable[int]) -> list[int]:
        """The lines of these offsets (fed already), sorted; none for binary content."""
        return [] if self.binary else sorted({self.lines[o] for o in offsets if o in self.lines})
