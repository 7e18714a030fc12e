"""The exact matcher of `keyroll leaks`: encodings, overlapping values, chunk boundaries,
decoys; the object stream read from a real `git cat-file --batch-all-objects`."""

from __future__ import annotations

import base64
import random
import string
from pathlib import Path

import pytest

from keyroll import leaks
from keyroll.leaks import Needle, Scanner, encodings, patterns
from keyroll.leaks import git as git_reading
from keyroll.leaks.patterns import Matcher, base64_cores, scan_bytes_stream
from leaks_helpers import Repo


def _random(n: int, alphabet: str = string.ascii_letters + string.digits + "+/=:@%!") -> str:
    return "".join(random.choice(alphabet) for _ in range(n))


def test_base64_cores_are_found_at_every_alignment_and_any_surroundings() -> None:
    random.seed(7)
    for _ in range(300):
        value = _random(random.randint(12, 40)).encode()
        cores = base64_cores(value)
        for prefix_length in range(9):
            prefix = _random(prefix_length).encode()
            suffix = _random(random.randint(0, 5)).encode()
            text = base64.b64encode(prefix + value + suffix)
            assert cores[prefix_length % 3] in text
            assert len(cores[prefix_length % 3]) >= len(value) * 4 // 3 - 2


def test_encodings_cover_raw_base64_url_and_hex() -> None:
    kinds = dict((kind, pattern) for kind, pattern in reversed(encodings("p@ss/word+1234")))
    assert kinds["raw"] == b"p@ss/word+1234"
    assert kinds["url"] == b"p%40ss%2Fword%2B1234"
    assert kinds["hex"] == b"p@ss/word+1234".hex().encode()
    assert kinds["HEX"] == b"p@ss/word+1234".hex().upper().encode()
    assert "base64" in kinds
    assert "url" not in dict(encodings("OnlyLettersAnd123"))


def _needles(*values: str) -> list[Needle]:
    return [Needle(f"s{i}", value, True, "current") for i, value in enumerate(values)]


def _found(matcher: Matcher, hits: list[tuple[int, int]]) -> set[tuple[str, str, int]]:
    return {
        (matcher.needles[index].secret, encoding, offset)
        for offset, pattern in hits
        for index, encoding in matcher.owners[pattern]
    }


@pytest.mark.parametrize("parallel_above", [8, 1 << 20])
@pytest.mark.parametrize("chunk", [1, 7, 16, 33, 1000])
def test_overlapping_values_and_chunk_boundaries(
    chunk: int, parallel_above: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with every read cut in two halves matched on two threads."""
    monkeypatch.setattr(patterns, "PARALLEL_ABOVE", parallel_above)
    inner = "InnerValue0123456789"
    outer = "xx" + inner + "yyOuter"  # a value holding another
    other = "SecondValueABCDEFGH"
    matcher = Matcher(_needles(inner, outer, other))
    text = f"a={outer};b={other};decoy={other[:-1]};c={inner[1:]}\n".encode()
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    found = _found(matcher, scan_bytes_stream(matcher, chunks))
    assert found == {("s1", "raw", 2), ("s0", "raw", 4), ("s2", "raw", text.index(other.encode()))}


def test_a_prefix_and_a_short_value_are_no_findings() -> None:
    value = "ExactlyThisValue42"
    matcher = Matcher(_needles(value))
    assert scan_bytes_stream(matcher, [value[:-1].encode() + b"\n" + value[1:].encode()]) == []
    assert leaks.MIN_LENGTH == 12


def test_the_object_stream_split_into_tiny_chunks_finds_each_value_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value across every read boundary of a big blob; two values in one blob; a value
    cut between two objects (end of one, start of the next) is not a finding."""
    first, second = "FirstSecretValue0001", "SecondSecretValue002"
    repo = Repo(tmp_path / "repo")
    filler = "".join(random.Random(3).choice("abc\n") for _ in range(200_000))
    big = filler[:99_990] + first + filler[99_990:] + second + "\n"
    repo.commit("big", **{"big.txt": big})
    repo.commit("cut", **{"a.txt": "zz" + first[:10], "b.txt": first[10:] + "zz"})
    expected_line = big[: big.index(first)].count("\n") + 1
    for chunk in (64, 4099, 1 << 20):
        monkeypatch.setattr(git_reading, "CHUNK", chunk)
        report = Scanner(_needles(first, second)).scan([repo.path])
        assert not report.errors
        found = sorted((f.secret, f.object_type, f.path, tuple(f.lines)) for f in report.findings)
        assert found == [
            ("s0", "blob", "big.txt", (expected_line,)),
            ("s1", "blob", "big.txt", (big.count("\n"),)),
        ], chunk


def test_needles_never_show_their_value() -> None:
    needle = Needle("db_password", "NeverShowThisValue", True, "current")
    assert "NeverShowThisValue" not in repr(needle)


def test_two_threads_find_exactly_what_one_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    values = ["".join(rng.choice("abcXYZ019") for _ in range(rng.randint(12, 30))) for _ in range(40)]
    matcher = Matcher(_needles(*values))
    for _ in range(30):
        parts = []
        for _ in range(60):
            parts.append("".join(rng.choice("abcXYZ019 \n") for _ in range(rng.randint(0, 40))))
            parts.append(rng.choice(values))
        text = "".join(parts).encode()
        monkeypatch.setattr(patterns, "PARALLEL_ABOVE", 1 << 30)
        one = sorted(matcher.find(text))
        monkeypatch.setattr(patterns, "PARALLEL_ABOVE", 1)
        assert sorted(matcher.find(text)) == one and len(one) >= 60


def test_without_the_matcher_the_scan_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from keyroll.errors import UsageError

    monkeypatch.setitem(sys.modules, "ahocorasick_rs", None)  # as if not installed
    with pytest.raises(UsageError, match=r"pip install 'keyroll\[leaks\]'"):
        Matcher(_needles("SomeValue12345678"))


def test_status_does_not_import_the_matcher(home) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from tests_helpers import USE_TEST_ROOT_CONFIG

    code = USE_TEST_ROOT_CONFIG + (
        "import sys\nfrom keyroll.cli import main\nmain(['status'])\n"
        "print('ahocorasick_rs' in sys.modules, 'keyroll.leaks' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["False", "False"]


@pytest.mark.parametrize("chunk", [5, 19, 4096])
def test_values_sharing_a_long_prefix_are_told_apart(chunk: int) -> None:
    """The automaton holds pattern prefixes; the rest of each value is compared in place."""
    common = "SharedPrefix0123456789abcdef"  # longer than the automaton's prefix
    one, two, three = common + "One", common + "Two", common + "TwoAndMore"
    matcher = Matcher(_needles(one, two, three))
    text = f"x {two} y {common}Tw z {three}".encode()
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    found = _found(matcher, scan_bytes_stream(matcher, chunks))
    second = text.index(three.encode())
    assert found == {("s1", "raw", 2), ("s1", "raw", second), ("s2", "raw", second)}


def test_line_counter_over_chunks_matches_counting_the_whole() -> None:
    """Lines and the binary test over content fed in chunks of any size are the same as
    over the whole content (a big blob is never held whole to number its lines)."""
    from keyroll.leaks.patterns import LineCounter

    rng = random.Random(7)
    data = b"".join(rng.choice([b"\n", b"\r\n", b"abc", b"x" * 50]) for _ in range(5000))
    offsets = [*sorted(rng.sample(range(len(data)), 200)), 0, len(data) - 1]
    expected = {o: data.count(b"\n", 0, o) + 1 for o in offsets}
    for size in (1, 7, 4096, len(data)):
        counter = LineCounter(offsets)
        for at in range(0, len(data), size):
            counter.feed(data[at : at + size])
        assert counter.lines == expected and not counter.binary
        assert counter.lines_of(offsets[:3]) == sorted({expected[o] for o in offsets[:3]})
    binary = LineCounter([5])
    binary.feed(b"abc")
    binary.feed(b"d\0e\n")
    assert binary.binary and binary.lines_of([5]) == []


def test_git_errors_are_one_line_and_never_quote_a_held_value() -> None:
    from keyroll.gitenv import git_message
    from keyroll.outputs import WITHHELD, hold

    value = _random(32, string.ascii_letters)
    assert git_message(b"hint: x\nfatal: not a git repository\nmore\n") == "fatal: not a git repository"
    assert git_message(b"") == "git failed"
    hold(value)  # (as reading the store does)
    assert git_message(f"fatal: cannot stat '{value}.txt'\n".encode()) == WITHHELD
