"""A fleet repository for the [gitops] tests: a bare remote, keyroll's clone and a colleague's clone, real git
and sops (the `fleet` fixture of tests/integration/conftest.py is `make_fleet(home)`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from test_command_target import SERVICE
from test_sops_store import new_identity, sops_decrypt, write_sops_yaml

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Colleague",
    "GIT_AUTHOR_EMAIL": "colleague@example.com",
    "GIT_COMMITTER_NAME": "Colleague",
    "GIT_COMMITTER_EMAIL": "colleague@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@dataclass
class Fleet:
    root: Path
    remote: Path  # the bare repository everyone pushes to
    repo: Path  # keyroll's clone
    other: Path  # a colleague's clone
    config: Path
    key: Path
    state: Path  # what the stand-in service accepts
    bundle: Path  # the store

    @property
    def cfg(self) -> tuple[str, str]:
        return ("--config", str(self.config))

    @property
    def published(self) -> Path:
        return self.repo / "secrets" / "secrets.sops.yaml"

    def values(self) -> dict[str, object]:
        return sops_decrypt(self.bundle.read_bytes(), self.key)

    def accepted(self) -> list[str]:
        return list(json.loads(self.state.read_text()))

    def remote_file(self, path: str = "secrets/secrets.sops.yaml") -> bytes:
        return subprocess.run(
            ["git", "--git-dir", str(self.remote), "cat-file", "blob", f"main:{path}"],
            capture_output=True,
            check=True,
        ).stdout

    def remote_log(self) -> list[str]:
        return git(self.remote, "log", "--format=%s", "main").splitlines()

    def write_config(self, gitops: str = "", secrets_extra: str = "") -> None:
        self.config.write_text(
            textwrap.dedent(
                f"""\
                [store]
                kind = "sops"
                age_key_file = "age.key"

                [gitops]
                repo = "fleet"
                path = "secrets/"
                push = "origin main"
                author = "keyroll <keyroll@fleet.example>"
                {gitops}

                [targets.svc]
                type = "command"
                argv = ["{self.root / "service.py"}"]
                env = ["FAKE_STATE={self.state}", "FAKE_LOG={self.root / "service.log"}"]

                [secrets.db_password]
                target = "svc"
                {secrets_extra}

                [secrets.api_token]
                kind = "api_key"
                """
            )
        )


def make_fleet(home) -> Fleet:  # type: ignore[no-untyped-def]
    """In `home` (tests/conftest.py): a bare remote with one commit, keyroll's clone and a colleague's clone of
    it, an age key with its .sops.yaml, the stand-in service, and a config publishing the SOPS store."""
    root = home.root
    remote, repo, other = root / "remote.git", root / "fleet", root / "colleague"
    git(root, "init", "--quiet", "--bare", "-b", "main", str(remote))
    git(root, "clone", "--quiet", str(remote), str(repo))
    (repo / "README.md").write_text("fleet\n")
    (repo / "hosts").mkdir()
    (repo / "hosts" / "web.nix").write_text("{ }\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "fleet: start")
    git(repo, "push", "--quiet", "origin", "main")
    git(root, "clone", "--quiet", str(remote), str(other))
    key = root / "age.key"
    write_sops_yaml(root / ".sops.yaml", new_identity(key))
    service = root / "service.py"
    service.write_text(SERVICE.format(python=sys.executable))
    service.chmod(0o755)
    state = root / "service.json"
    f = Fleet(root, remote, repo, other, home.config, key, state, root / "secrets.sops.yaml")
    f.write_config()
    return f


def init(kr, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    fleet.state.write_text(json.dumps(["InitialPassword0123456789abcdefg"]))
    assert kr(*fleet.cfg, "set", "db_password", stdin="InitialPassword0123456789abcdefg").code == 0
    result = kr(*fleet.cfg, "init")
    assert result.code == 0, result.both


def colleague_pushes(fleet: Fleet, path: str, text: str) -> None:
    git(fleet.other, "pull", "--quiet", "--rebase", "origin", "main")
    target = fleet.other / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    git(fleet.other, "add", path)
    git(fleet.other, "commit", "--quiet", "-m", f"colleague: {path}")
    git(fleet.other, "push", "--quiet", "origin", "main")
