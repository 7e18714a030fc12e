"""Real git repositories for the leak-scan tests and the benchmark."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path


class Repo:
    """A git repository built with the real git binary, with fixed identities and dates."""

    def __init__(self, path: Path, *, bare: bool = False) -> None:
        self.path = path
        self.clock = int(time.time()) - 86_400  # recent: `git gc` keeps recent reflog entries
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main", *(["--bare"] if bare else []))

    def env(self) -> dict[str, str]:
        self.clock += 60
        stamp = f"{self.clock} +0000"
        return {
            **os.environ,
            "GIT_AUTHOR_NAME": "Dev",
            "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "Dev",
            "GIT_COMMITTER_EMAIL": "dev@example.com",
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_DATE": stamp,
            "GIT_CONFIG_NOSYSTEM": "1",
        }

    def git(self, *args: str, input: bytes | None = None) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), *args], input=input, capture_output=True, env=self.env(), check=False
        )
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr.decode()}"
        return done.stdout.decode().strip()

    def write(self, name: str, content: str | bytes) -> None:
        file = self.path / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(content.encode() if isinstance(content, str) else content)

    def commit(self, message: str, **files: str | bytes) -> str:
        for name, content in files.items():
            self.write(name, content)
            self.git("add", "--", name)
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def blob_id(self, content: str | bytes) -> str:
        data = content.encode() if isinstance(content, str) else content
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every file and folder under `root`: mode, size, mtime (ns) and content hash."""
    seen: dict[str, tuple[int, int, int, str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
            seen[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return seen
