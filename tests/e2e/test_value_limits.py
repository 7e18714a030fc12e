"""Values have a size limit (64 KiB; a secret's `max_length` lowers it) that `set`
enforces while it reads (a 300 MB stdin from a real process is refused at once, with
little memory), that `init` and `restore` enforce on what they would adopt; the
journal gives back the space a large value took; and `set` refuses a value that
breaks the secret's policy unless `--allow-weak` says to adopt it as it is."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests_helpers import keyroll_argv

# Runs a command and reports, on its last stderr line, the peak memory (KiB) of that
# command alone: the wrapper's only child.
PEAK = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def backups_of(home) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(p.name for p in home.backups.iterdir()) if home.backups.exists() else []


def history_of(kr) -> list[object]:  # type: ignore[no-untyped-def]
    result = kr("history", "--json")
    return json.loads(result.out)["data"]["entries"] if result.code == 0 else []


def test_set_refuses_300_mb_on_stdin_without_reading_it(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config('[secrets.big_key]\nkind = "api_key"\n')
    cfg = ["--config", str(home.config)]
    assert kr(*cfg, "init").code == 0
    before, kept = home.value("big_key"), backups_of(home)
    started = time.monotonic()
    # A real writer process: `head` streams 300 MB of zeros into keyroll's stdin.
    pipeline = 'head -c 300M /dev/zero | "$0" -c "$1" "${@:2}"'
    done = subprocess.run(
        ["/bin/bash", "-c", pipeline, sys.executable, PEAK, *keyroll_argv(), *cfg, "set", "big_key"],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    peak_kib = int(lines[-1].split()[1])
    assert lines[:-1] == [
        "keyroll: error: big_key: the value is larger than its limit of 65536 bytes (max_length); nothing was changed"
    ]
    assert elapsed < 10, elapsed  # (reading 300 MB through Python and refusing it took 16 s and 1.2 GB)
    assert peak_kib < 100_000, peak_kib
    assert home.value("big_key") == before and backups_of(home) == kept


def test_max_length_lowers_the_limit_for_set_init_and_restore(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config('[secrets.app_password]\nmax_length = 40\n[secrets.other_key]\nkind = "api_key"\n')
    cfg = ["--config", str(home.config)]
    assert kr(*cfg, "init").code == 0
    before, kept, history = home.value("app_password"), backups_of(home), history_of(kr)
    for size in (41, 1000):
        refused = kr(*cfg, "set", "app_password", "--allow-weak", stdin="a" * size + "\n")
        assert refused.code == 2 and "larger than its limit of 40 bytes (max_length)" in refused.err, refused.both
    assert home.value("app_password") == before and backups_of(home) == kept and history_of(kr) == history
    # init adopts no file larger than the limit (nor larger than 64 KiB, whatever the policy)
    (home.secrets / "app_password").unlink()
    (home.secrets / "app_password").write_text("b" * 50)
    (home.secrets / "other_key").unlink()
    (home.secrets / "other_key").write_text("c" * 100_000)
    home.state.joinpath("journal.sqlite3").unlink()
    for extra in ("-wal", "-shm"):
        home.state.joinpath("journal.sqlite3" + extra).unlink(missing_ok=True)
    adopted = kr(*cfg, "init")
    assert adopted.code == 1, adopted.both
    assert "app_password: failed (the existing file is 50 bytes, more than the limit of 40 bytes" in adopted.out
    assert "other_key: failed" in adopted.out and "100000 bytes, more than a value may hold (64 KiB)" in adopted.out
    assert home.value("app_password") == "b" * 50 and len(home.value("other_key")) == 100_000
    # restore brings back no value larger than the limit either
    (home.secrets / "other_key").unlink()
    home.write_config('[secrets.app_password]\n[secrets.other_key]\nkind = "api_key"\n')
    assert kr(*cfg, "set", "app_password", "--allow-weak", stdin="d" * 50).code == 0
    assert kr(*cfg, "init").code == 0
    backup = kr(*cfg, "backup").out.strip().splitlines()[-1]
    assert kr(*cfg, "rotate", "app_password").code == 0
    home.write_config('[secrets.app_password]\nmax_length = 40\n[secrets.other_key]\nkind = "api_key"\n')
    current, kept = home.value("app_password"), backups_of(home)
    restored = kr(*cfg, "restore", backup)
    assert restored.code == 2 and "app_password: the value is 50 bytes, more than the limit of 40" in restored.err
    assert home.value("app_password") == current and backups_of(home) == kept


def test_max_length_cannot_exceed_64_kib_or_fall_below_the_length(kr, home) -> None:  # type: ignore[no-untyped-def]
    for table, message in (
        ("max_length = 70000", "secrets.x_password.max_length: must be between 1 and 65536"),
        ("max_length = 20", "secrets.x_password.max_length: must be >= the length of generated values (32)"),
    ):
        home.write_config(f"[secrets.x_password]\n{table}\n")
        result = kr("--config", str(home.config), "config", "validate")
        assert result.code == 2 and message in result.err, result.err


def test_the_journal_gives_back_the_space_of_a_large_value(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config("[secrets.app_password]\n")
    cfg = ["--config", str(home.config)]
    assert kr(*cfg, "init").code == 0
    journal = home.state / "journal.sqlite3"
    # A journal written before keyroll turned incremental vacuum on is converted once.
    with sqlite3.connect(journal) as db:
        db.execute("PRAGMA auto_vacuum=NONE")
        db.execute("VACUUM")
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    baseline = journal.stat().st_size
    large = "L" * 65536
    stored = kr(*cfg, "set", "app_password", "--allow-weak", stdin=large)
    assert stored.code == 0, stored.both
    assert home.value("app_password") == large
    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert journal.stat().st_size < baseline + 16384, (baseline, journal.stat().st_size)
    wal = Path(str(journal) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert large.encode() not in journal.read_bytes()
    assert kr(*cfg, "rotate", "app_password").code == 0  # (and the next change again)
    assert journal.stat().st_size < baseline + 16384


def test_set_refuses_a_weak_value_unless_allow_weak(kr, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config('[secrets.api_key]\nkind = "api_key"\n')
    cfg = ["--config", str(home.config)]
    assert kr(*cfg, "init").code == 0
    before, kept, history = home.value("api_key"), backups_of(home), history_of(kr)
    for weak, rule in (
        ("short5", "has 6 characters; the policy says 64"),
        ("x" * 63 + "!", "outside its alphabet (alnum)"),
        ("   ", "is empty"),
        ("two\nlines", "holds several lines"),
    ):
        refused = kr(*cfg, "set", "api_key", stdin=weak)
        assert refused.code == 2 and rule in refused.err and "nothing was changed" in refused.err, refused.both
        if weak.strip():
            assert weak not in refused.both
    assert home.value("api_key") == before and backups_of(home) == kept and history_of(kr) == history
    adopted = kr(*cfg, "set", "api_key", "--allow-weak", stdin="short5")
    assert adopted.code == 0, adopted.both
    assert "stored as given, but it has 6 characters; the policy says 64" in adopted.out
    assert home.value("api_key") == "short5"
    assert kr(*cfg, "validate").code == 1  # what set refused is what validate fails
    assert kr(*cfg, "rotate", "api_key").code == 0 and kr(*cfg, "validate").code == 0


def test_set_takes_a_value_of_exactly_the_limit_with_its_line_ending(krp, home) -> None:  # type: ignore[no-untyped-def]
    home.write_config('[secrets.big_key]\nkind = "api_key"\n')
    cfg = ["--config", str(home.config)]
    for ending in ("", "\n", "\r\n"):
        stored = krp(*cfg, "set", "big_key", "--allow-weak", stdin="k" * 65536 + ending)
        assert stored.code == 0, stored.both
        assert home.value("big_key") == "k" * 65536
    refused = krp(*cfg, "set", "big_key", "--allow-weak", stdin="k" * 65537)
    assert refused.code == 2 and "larger than its limit of 65536 bytes" in refused.err
    refused = krp(*cfg, "set", "big_key", "--allow-weak", stdin="k" * 65536 + "\n\n")
    assert refused.code == 2, refused.both  # (a value and then more: not one value)
