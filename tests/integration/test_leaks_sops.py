"""A SOPS store: its values and those in its (encrypted) backups are searched, read
through the real sops binary; the encrypted bundle itself in a repository is no leak."""

from __future__ import annotations

import json
from pathlib import Path

from test_sops_store import sops  # noqa: F401 (the fixture: an age key, .sops.yaml and a config)

from leaks_helpers import Repo


def test_sops_values_live_and_retired(kr, sops, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    assert kr(*sops.cfg, "init").code == 0
    old = sops.values()["db_password"]
    assert kr(*sops.cfg, "rotate", "db_password").code == 0
    now = sops.values()
    repo = Repo(tmp_path / "repo")
    repo.commit("bundle", **{"secrets.sops.yaml": sops.bundle.read_bytes()})  # encrypted: as SOPS intends
    assert json.loads(kr(*sops.cfg, "--json", "leaks", "scan", str(repo.path)).out)["data"]["scan"]["findings"] == []
    repo.commit("oops", **{"app.env": f"OLD={old}\nTOKEN={now['worker_token']}\n"})
    result = kr(*sops.cfg, "--json", "leaks", "scan", str(repo.path))
    assert result.code == 1, result.both
    found = {(f["secret"], f["status"], tuple(f["lines"])) for f in json.loads(result.out)["data"]["scan"]["findings"]}
    assert found == {("db_password", "retired", (1,)), ("worker_token", "live", (2,))}
    assert old not in result.out and str(now["worker_token"]) not in result.out
