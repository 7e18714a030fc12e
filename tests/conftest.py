"""Shared fixtures: an isolated environment per test, and two ways to run keyroll
(in-process through `main([...])`, and as a real subprocess)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tests_helpers import ROOT_CONFIG_ENV, in_ci, keyroll_argv  # noqa: E402

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
# Read by the programs and libraries keyroll drives, so they would reach the tests' own peers differently:
# libpq's PG* (PGSSLMODE=require fails against the test PostgreSQL), sops' SOPS_* (SOPS_AGE_KEY is an identity
# that sops tries first), and the proxies that urllib (HTTP health checks) and Apprise (json://) send 127.0.0.1
# requests through.
_ISOLATED_PREFIXES = ("PG", "SOPS_")
_PROXIES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


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
def no_machine_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run as root (as in CI), keyroll's default config file is /etc/keyroll/config.toml: the machine's, present
    wherever keyroll is installed. Point it at a missing file in tmp_path, in this process and in the keyroll
    subprocesses started with keyroll_argv() (tests_helpers.py)."""
    import keyroll.paths

    path = tmp_path / "etc-keyroll" / "config.toml"
    monkeypatch.setattr(keyroll.paths, "ROOT_CONFIG_FILE", path)
    monkeypatch.setenv(ROOT_CONFIG_ENV, str(path))
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_machine_config: Path) -> Home:
    """Every keyroll path inside tmp_path; no outside config, state or credential."""
    for name in _ISOLATED:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES) or name in _PROXIES:
            monkeypatch.delenv(name)
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
    import logging

    from keyroll.cli import main

    logger = logging.getLogger("keyroll")
    pristine = (list(logger.handlers), logger.level)

    def reset_logging() -> None:
        # main() sets the "keyroll" logger up as for a whole process (-v, the logging commands), with a handler on
        # the sys.stderr of the moment: each call starts as a new process would, and no later test logs to this
        # test's closed capture ("--- Logging error ---" and a traceback in its output).
        logger.handlers[:] = pristine[0]
        logger.setLevel(pristine[1])

    def run(*argv: str, stdin: str | None = None) -> Result:
        reset_logging()
        capsys.readouterr()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield run
    reset_logging()


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


@pytest.fixture
def disk_dir(tmp_path: Path) -> Iterator[Path]:
    """A private folder on a disk filesystem, for what keyroll treats differently in memory (tmpfs, ramfs):
    under tmp_path, unless $TMPDIR or /tmp is a tmpfs (as on many distributions), then under /var/tmp."""
    from keyroll.fsutil import MEMORY_FILESYSTEMS, filesystem_type

    if filesystem_type(tmp_path) not in MEMORY_FILESYSTEMS:
        folder = tmp_path / "on-disk"
        folder.mkdir()
        yield folder
        return
    if not os.path.isdir("/var/tmp") or filesystem_type(Path("/var/tmp")) in MEMORY_FILESYSTEMS:
        message = f"{tmp_path} is on a {filesystem_type(tmp_path)} and /var/tmp is not on a disk"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="keyroll-tests-", dir="/var/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def other_user() -> Iterator[tuple[str, int, int]]:
    """A real second user account of the machine, (name, uid, gid), made for this session and removed after it:
    what owns the files a hostile other user would plant. Needs root: fails in CI, skipped elsewhere."""
    import pwd

    if os.geteuid() != 0:
        message = "needs root: creates a second user account (useradd) and files owned by it"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    name = f"kr-other-{os.getpid()}"[:31]
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        entry = pwd.getpwnam(name)
        yield name, entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of the test's own, empty (what another test left there would fill it): a real full disk
    (needs root; skipped elsewhere unless in CI)."""
    mount_point = tmp_path / "tinyfs"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount_point)], capture_output=True
    )
    if done.returncode != 0:
        if in_ci():
            pytest.fail(f"cannot mount a tmpfs for the full-disk test: {done.stderr.decode().strip()}")
        pytest.skip("mounting a tmpfs needs root")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)
