"""PostgreSQL target against a real throwaway cluster (SCRAM in pg_hba, log_statement = 'all')."""

from __future__ import annotations

import json
import signal

import pytest

from conftest import CmdlineWatcher, keyroll, unique


@pytest.fixture
def app(pg, home):  # type: ignore[no-untyped-def]
    """A login role for the application, an admin role whose password is another
    keyroll secret, and a config that rotates both."""
    role, admin = unique("app"), unique("kradmin")
    admin_value = "Adm1n" * 6 + "xy"
    pg.create_role(admin, admin_value, createrole=True)
    pg.create_role(role, "Initial" * 4 + "pass")
    home.write_config(
        f"""
[targets.pg_app]
type = "postgres"
host = "{pg.host}"
port = {pg.port}
user = "{role}"
admin_user = "{admin}"
admin_password_secret = "pg_admin_password"

[targets.pg_admin]
type = "postgres"
host = "{pg.host}"
port = {pg.port}
user = "{admin}"

[secrets.app_password]
services = ["app"]
target = "pg_app"

[secrets.pg_admin_password]
services = ["keyroll"]
target = "pg_admin"
"""
    )

    class App:
        config = home.config
        name, admin_name = role, admin
        initial, admin_initial = "Initial" * 4 + "pass", admin_value

    return App()


def adopt(app, pg) -> None:  # type: ignore[no-untyped-def]
    """The existing credentials come under keyroll's care with `set` (it only records them)."""
    for secret, value in (("pg_admin_password", app.admin_initial), ("app_password", app.initial)):
        done = keyroll(app.config, "set", secret, stdin=value)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{secret}: adopted" in done.stdout


def test_rotation_changes_the_live_password_and_never_shows_the_plaintext(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    adopt(app, pg)
    with CmdlineWatcher() as watcher:
        done = keyroll(app.config, "rotate", "all")
    assert done.returncode == 0, done.stdout + done.stderr
    new, new_admin = home.value("app_password"), home.value("pg_admin_password")
    assert pg.login_ok(app.name, new) and not pg.login_ok(app.name, app.initial)
    assert pg.login_ok(app.admin_name, new_admin) and not pg.login_ok(app.admin_name, app.admin_initial)
    # The admin credential is rotated after the secret it administers.
    lines = [ln.split(":")[0] for ln in done.stdout.splitlines() if ln.endswith(")") or "rotated" in ln]
    assert lines.index("app_password") < lines.index("pg_admin_password")
    log = pg.log_text()
    assert "ALTER ROLE" in log and "SCRAM-SHA-256$" in log
    for value in (new, new_admin, app.initial, app.admin_initial):
        assert value not in log, "a plaintext reached the PostgreSQL server log"
        assert not watcher.carries(value), "a plaintext appeared in a process's argv"
        assert value not in done.stdout + done.stderr
    status = json.loads(keyroll(app.config, "status", "--json").stdout)["data"]["secrets"]
    assert {s["name"]: s["state"] for s in status} == {"app_password": "OK", "pg_admin_password": "OK"}


def test_open_connections_keep_working(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    adopt(app, pg)
    with psycopg.connect(pg.conninfo(app.name, app.initial)) as connection:
        assert keyroll(app.config, "rotate", "app_password").returncode == 0
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_init_creates_what_it_can_and_says_what_needs_adopting(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    done = keyroll(app.config, "init")
    # The admin changes its own password: without its current value keyroll cannot log in,
    # and the application's target needs that admin.
    assert done.returncode == 1
    assert "adopt it first with `keyroll set pg_admin_password`" in done.stdout
    assert "the admin secret pg_admin_password is missing from the store" in done.stdout
    wrong = keyroll(app.config, "set", "pg_admin_password", stdin="NotTheAdminPassword1234567890abc")
    assert wrong.returncode == 1 and "the service does not accept this value" in wrong.stdout
    assert "adopt it first" not in wrong.stdout  # (not the command that just failed)
    assert keyroll(app.config, "set", "pg_admin_password", stdin=app.admin_initial).returncode == 0
    created = keyroll(app.config, "init")
    assert created.returncode == 0, created.stdout
    assert pg.login_ok(app.name, home.value("app_password"))


def test_health_failure_rolls_the_role_back(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    adopt(app, pg)
    text = app.config.read_text().replace('services = ["app"]', 'services = ["app"]\nhealth = ["command:false"]')
    app.config.write_text(text)
    # Healthy before the change (true), broken after (false): use a flag file.
    flag = home.root / "broken"
    app.config.write_text(text.replace("command:false", f"command:test ! -e {flag}"))
    restart = f'restart = ["command:touch {flag}"]'
    app.config.write_text(app.config.read_text().replace('target = "pg_app"', f'target = "pg_app"\n{restart}'))
    done = keyroll(app.config, "rotate", "app_password")
    assert done.returncode == 75, done.stdout
    assert "health check failed" in done.stdout and "rolled back" in done.stdout
    assert home.value("app_password") == app.initial
    assert pg.login_ok(app.name, app.initial)


def test_a_server_that_is_down(app, pg, home, running) -> None:  # type: ignore[no-untyped-def]
    adopt(app, pg)
    running(pg)
    pg.stop()
    done = keyroll(app.config, "rotate", "app_password")
    assert done.returncode == 75
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("app_password:")]
    assert f"PostgreSQL role '{app.name}' at {pg.host}:{pg.port}: unreachable" in line
    assert home.value("app_password") == app.initial
    history = json.loads(keyroll(app.config, "history", "app_password", "--json").stdout)["data"]["entries"]
    assert history[0]["outcome"] == "failed"
    pg.start()
    assert keyroll(app.config, "rotate", "app_password").returncode == 0
    assert pg.login_ok(app.name, home.value("app_password"))


def test_wrong_admin_credentials_name_the_target(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    adopt(app, pg)
    (home.secrets / "pg_admin_password").write_text("W" * 32)  # someone broke it by hand
    done = keyroll(app.config, "rotate", "app_password")
    assert done.returncode == 1
    assert f"PostgreSQL role '{app.name}' at {pg.host}:{pg.port}: login as '{app.admin_name}' refused" in done.stdout
    assert "wrong admin credentials (secret pg_admin_password)" in done.stdout
    assert pg.login_ok(app.name, app.initial)


def test_rollback_and_restore_take_the_service_along(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    adopt(app, pg)
    assert keyroll(app.config, "rotate", "app_password").returncode == 0
    second = home.value("app_password")
    done = keyroll(app.config, "rollback", "app_password")
    assert done.returncode == 0, done.stdout + done.stderr
    assert home.value("app_password") == app.initial and pg.login_ok(app.name, app.initial)
    assert not pg.login_ok(app.name, second)
    backups = sorted(p for p in home.backups.iterdir() if p.name.startswith("secrets_"))
    newest = backups[-1]  # taken before the rollback: holds the second value
    restored = keyroll(app.config, "restore", newest.name)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert home.value("app_password") == second and pg.login_ok(app.name, second)
    history = json.loads(keyroll(app.config, "history", "app_password", "--json").stdout)["data"]["entries"]
    assert [h["outcome"] for h in history[:3]] == ["restored", "rolled back", "rotated"]


def test_init_force_takes_the_services_along(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    adopt(app, pg)
    assert keyroll(app.config, "init", "--force").returncode == 0
    assert pg.login_ok(app.name, home.value("app_password"))
    assert pg.login_ok(app.admin_name, home.value("pg_admin_password"))


@pytest.mark.parametrize("step", ["backup", "create", "apply", "verify", "store-write", "store", "restart", "finish"])
def test_sigkill_at_every_step_leaves_store_and_server_in_step(app, pg, home, step: str) -> None:  # type: ignore[no-untyped-def]
    adopt(app, pg)
    marker = home.root / "restarted"
    app.config.write_text(
        app.config.read_text().replace('target = "pg_app"', f'target = "pg_app"\nrestart = ["command:touch {marker}"]')
    )
    killed = keyroll(app.config, "rotate", "all", env={"KEYROLL_FAILPOINT": step})
    assert killed.returncode == -signal.SIGKILL
    status = json.loads(keyroll(app.config, "status", "--json").stdout)["data"]["secrets"]
    assert any(s["state"] == "IN FLIGHT" for s in status) == (step != "backup")
    recovered = keyroll(app.config, "recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert pg.login_ok(app.name, home.value("app_password"))
    assert pg.login_ok(app.admin_name, home.value("pg_admin_password"))
    if home.value("app_password") != app.initial:
        assert marker.exists(), "driven forward: the consumer was restarted"
    assert keyroll(app.config, "validate").returncode == 0


def test_many_roles_on_a_server_with_few_connections(home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One admin connection per server and login, however many roles are rotated:
    12 roles on a server that allows 7 client connections."""
    import peers

    with peers.PostgresServer(
        tmp_path / "small", settings={"max_connections": "10", "superuser_reserved_connections": "3"}
    ) as small:
        admin_file = home.root / "admin"
        admin_file.write_text(small.admin_password)
        tables = []
        for i in range(12):
            small.create_role(f"r{i}", f"Start{i:02d}" + "s" * 25)
            home.secrets.mkdir(mode=0o700, exist_ok=True)
            (home.secrets / f"role_{i}").write_text(f"Start{i:02d}" + "s" * 25)
            tables.append(
                f'[targets.t{i}]\ntype = "postgres"\nhost = "{small.host}"\nport = {small.port}\nuser = "r{i}"\n'
                f'admin_user = "postgres"\nadmin_password_file = "{admin_file}"\n[secrets.role_{i}]\ntarget = "t{i}"\n'
            )
        home.write_config("".join(tables))
        assert keyroll(home.config, "init").returncode == 0
        done = keyroll(home.config, "rotate", "all")
        assert done.returncode == 0, done.stdout
        assert all(small.login_ok(f"r{i}", home.value(f"role_{i}")) for i in range(12))


def test_init_adopts_an_existing_file_only_if_the_service_takes_it(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    home.secrets.mkdir(mode=0o700)
    (home.secrets / "pg_admin_password").write_text(app.admin_initial + "\n")  # right
    (home.secrets / "app_password").write_text("Stale" * 6 + "xx\n")  # not what PostgreSQL has
    done = keyroll(app.config, "init")
    assert done.returncode == 1
    assert "pg_admin_password: adopted the existing file" in done.stdout
    assert "app_password: failed" in done.stdout and "does not accept the existing file's value" in done.stdout
    assert "`keyroll set app_password`" in done.stdout
    assert home.value("app_password") == "Stale" * 6 + "xx\n"  # left as it was
    assert pg.login_ok(app.name, app.initial)  # and so is the service
    assert keyroll(app.config, "set", "app_password", stdin=app.initial).returncode == 0
    assert keyroll(app.config, "init").returncode == 0
