"""Shared fixtures: an isolated environment per test, and two ways to run keyroll
(in-process through `main([...])`, and as a real subprocess)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# Variables that would leak the developer's (or CI's) own keyroll setup into a test.
_ISOLATED = (
    "KEYROLL_CONFIG",
    "KEYROLL_SECRETS_DIR",
    "KEYROLL_BACKUP_DIR",
    "KEYROLL_STATE_DIR",
    "KEYROLL_FAILPOINT",
    "REQUIRE_ENCRYPTED_SECRETS",
    "CREDENTIALS_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "SOPS_AGE_KEY_FILE",
)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


@dataclass
class Home:
    """Paths of one isolated keyroll installation."""

    root: Path
    secrets: Path
    backups: Path
    state: Path
    config: Path

    def write_config(self, text: str) -> Path:
        self.config.write_text(text)
        return self.config

    def value(self, name: str) -> str:
        return (self.secrets / name).read_text()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """Every keyroll path inside tmp_path; no outside config, state or credential."""
    for name in _ISOLATED:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "kr"
    root.mkdir()
    h = Home(root, root / "secrets", root / "backups", root / "state", root / "config.toml")
    monkeypatch.setenv("HOME", str(root))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(root / "xdg-state"))
    monkeypatch.setenv("KEYROLL_SECRETS_DIR", str(h.secrets))
    monkeypatch.setenv("KEYROLL_BACKUP_DIR", str(h.backups))
    monkeypatch.setenv("KEYROLL_STATE_DIR", str(h.state))
    return h


@pytest.fixture
def kr(home: Home, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run keyroll in-process: kr("status", "--json", stdin="...") -> Result."""
    from keyroll.cli import main

    def run(*argv: str, stdin: str | None = None) -> Result:
        capsys.readouterr()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def keyroll_argv() -> list[str]:
    return [sys.executable, "-m", "keyroll"]


@pytest.fixture
def krp(home: Home):  # type: ignore[no-untyped-def]
    """Run keyroll as a subprocess with the isolated environment."""

    def run(*argv: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        done = subprocess.run(
            [*keyroll_argv(), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def initialized(kr, home: Home) -> Home:  # type: ignore[no-untyped-def]
    """A home where `keyroll init` has created the 12 seed secrets."""
    result = kr("init")
    assert result.code == 0, result.both
    return home


def secret_values(home: Home) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(home.secrets.iterdir()) if not p.name.startswith(".")}


@pytest.fixture
def values():  # type: ignore[no-untyped-def]
    return secret_values


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def tiny_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 256 KiB tmpfs: a real full disk (needs root; skipped elsewhere unless in CI)."""
    mount_point = tmp_path_factory.mktemp("tinyfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount_point)], capture_output=True
    )
    if done.returncode != 0:
        if in_ci():
            pytest.fail(f"cannot mount a tmpfs for the full-disk test: {done.stderr.decode().strip()}")
        pytest.skip("mounting a tmpfs needs root")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)
