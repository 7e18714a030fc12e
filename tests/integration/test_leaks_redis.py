"""Live or retired, as a real Redis sees it: an old password still inside its grace
period is live; `leaks scan --rotate` revokes it at once."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import keyroll, unique
from leaks_helpers import Repo


def test_a_previous_value_in_its_grace_period_is_live_until_rotate_revokes_it(  # type: ignore[no-untyped-def]
    redis_server, home, tmp_path: Path
) -> None:
    user = unique("leaky")
    initial = "Leaked" * 5 + "ok"
    redis_server.create_user(user, initial)
    admin_file = home.root / "redis-admin"
    admin_file.write_text(redis_server.default_password + "\n")
    home.write_config(
        f"""
[targets.cache]
type = "redis"
host = "{redis_server.host}"
port = {redis_server.port}
user = "{user}"
admin_user = "default"
admin_password_file = "{admin_file}"
grace = "10m"

[secrets.redis_password]
target = "cache"
"""
    )
    assert keyroll(home.config, "set", "redis_password", stdin=initial).returncode == 0
    done = keyroll(home.config, "rotate", "redis_password")
    assert done.returncode == 0, done.stdout + done.stderr
    assert redis_server.login_ok(user, initial), "the old password is still valid: its grace has 10 minutes to go"
    repo = Repo(tmp_path / "repo")
    repo.commit("oops", **{"redis.conf": f"masterauth {initial}\n"})

    scan = keyroll(home.config, "--json", "leaks", "scan", str(repo.path))
    assert scan.returncode == 1, scan.stdout + scan.stderr
    [finding] = json.loads(scan.stdout)["data"]["scan"]["findings"]
    assert (finding["status"], finding["state"]) == ("live", "previous, not yet retired")

    fixed = keyroll(home.config, "--json", "leaks", "scan", "--rotate", str(repo.path))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    data = json.loads(fixed.stdout)["data"]
    assert [o["status"] for o in data["rotation"]["outcomes"]] == ["rotated"]
    assert [f["status"] for f in data["after"]["findings"]] == ["retired"]
    assert not redis_server.login_ok(user, initial), "--rotate revoked the leaked password at once"
    assert redis_server.login_ok(user, home.value("redis_password"))
    assert initial not in fixed.stdout + fixed.stderr + scan.stdout + scan.stderr
