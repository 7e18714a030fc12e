"""PostgreSQL `strategy = "alternating"` against a real throwaway cluster: two login
roles take turns, the stored login name and password always match one login the
server accepts, and objects created through either login belong to the main role."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import psycopg
import pytest

from conftest import keyroll, make_pg_login, pg_target_toml, unique


def acting_user(pg: Any, login: str, password: str) -> str:
    """current_user of a fresh session (what the consumer's queries act as)."""
    with psycopg.connect(pg.conninfo(login, password)) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


def pair_accepted(pg: Any, home: Any, role: str) -> tuple[str, str]:
    """The stored (login, password) logs in and acts as `role`; returns it."""
    login, password = home.value("app_db_user"), home.value("app_password")
    assert login in (role, f"{role}_clone"), login
    assert pg.login_ok(login, password), f"{login} refuses the stored password"
    assert acting_user(pg, login, password) == role
    return login, password


@pytest.fixture
def app(pg, home):  # type: ignore[no-untyped-def]
    """A login role, a CREATEROLE admin (not a superuser) and an alternating target."""
    initial = "Initial" * 4 + "pass"
    login = make_pg_login(pg, home.root, "alt", initial)
    role, admin = login.role, login.admin
    pg.execute_admin(f'GRANT CREATE ON SCHEMA public TO "{role}"')
    home.write_config(
        f"""
{pg_target_toml(pg, login, grace="1h")}
[secrets.app_password]
services = ["app"]
target = "pg_app"
"""
    )
    done = keyroll(home.config, "set", "app_password", stdin=initial)
    assert done.returncode == 0, done.stdout + done.stderr

    class App:
        name, admin_name, clone = role, admin, f"{role}_clone"

    App.initial = initial  # type: ignore[attr-defined]
    return App


def test_rotations_take_turns_and_keep_the_previous_login(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    # `set` adopted the role's password and recorded the login it belongs to.
    assert pair_accepted(pg, home, app.name) == (app.name, app.initial)
    done = keyroll(home.config, "rotate", "app_password")
    assert done.returncode == 0, done.stdout + done.stderr
    login, first = pair_accepted(pg, home, app.name)
    assert login == app.clone
    assert pg.login_ok(app.name, app.initial), "the login in use before must keep working during the grace"
    log = pg.log_text()
    assert first not in log and "SCRAM-SHA-256$" in log
    # Objects created through the clone belong to the main role.
    with psycopg.connect(pg.conninfo(app.clone, first), autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "t_{app.name}" (id int)')
    owner = pg.execute_admin("SELECT tableowner FROM pg_tables WHERE tablename = %s", (f"t_{app.name}",))
    assert owner == [(app.name,)]
    # The next rotation goes back to the main role; the clone keeps its password meanwhile.
    done = keyroll(home.config, "rotate", "app_password")
    assert done.returncode == 0, done.stdout + done.stderr
    login, second = pair_accepted(pg, home, app.name)
    assert login == app.name and second != app.initial
    assert pg.login_ok(app.clone, first) and not pg.login_ok(app.name, app.initial)
    with psycopg.connect(pg.conninfo(app.name, second)) as conn:
        conn.execute(f'SELECT * FROM "t_{app.name}"')
    # --emergency retires the previous login at once: no login keeps a known password.
    done = keyroll(home.config, "rotate", "app_password", "--emergency")
    assert done.returncode == 0, done.stdout + done.stderr
    login, _ = pair_accepted(pg, home, app.name)
    assert login == app.clone
    assert not pg.login_ok(app.name, second) and not pg.login_ok(app.clone, first)
    # The login name is a secret like any other: status lists it, `rotate all` leaves it to its password.
    status = json.loads(keyroll(home.config, "status", "--json").stdout)["data"]["secrets"]
    by_name = {s["name"]: s for s in status}
    assert by_name["app_db_user"]["kind"] == "username" and by_name["app_db_user"]["next_due"] is None
    assert by_name["app_password"]["next_due"] and by_name["app_db_user"]["state"] == "OK"
    assert by_name["app_db_user"]["entropy_bits"] == 0  # a login name, not a random value
    table = keyroll(home.config, "status").stdout
    row = next(line for line in table.splitlines() if line.startswith("app_db_user")).split()
    assert row[3] == "username" and not row[4].endswith("b")  # no length/bits of a random value
    assert (home.secrets / "app_db_user").stat().st_mode & 0o777 == 0o600
    refused = keyroll(home.config, "rotate", "app_db_user")
    assert refused.returncode == 2 and "rotate app_password" in refused.stdout + refused.stderr
    refused = keyroll(home.config, "set", "app_db_user", stdin=app.name)
    assert refused.returncode == 2 and home.value("app_db_user") == app.clone
    done = keyroll(home.config, "rotate", "all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert pair_accepted(pg, home, app.name)[0] == app.name


def test_retirement_after_the_grace(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    home.config.write_text(home.config.read_text().replace('grace = "1h"', 'grace = "1s"'))
    assert keyroll(home.config, "rotate", "app_password").returncode == 0
    assert pg.login_ok(app.name, app.initial)
    time.sleep(1.5)
    done = keyroll(home.config, "recover")  # any writing command retires what is due
    assert done.returncode == 0, done.stdout + done.stderr
    assert not pg.login_ok(app.name, app.initial)
    pair_accepted(pg, home, app.name)


@pytest.mark.parametrize(
    "step", ["create", "apply", "verify", "store-write", "store", "restart", "retire", "finish", "recover"]
)
def test_sigkill_at_every_step_then_recover(app, pg, home, step: str) -> None:  # type: ignore[no-untyped-def]
    text = home.config.read_text().replace('target = "pg_app"', 'target = "pg_app"\nrestart = ["command:true"]')
    home.config.write_text(text)
    args = ["rotate", "app_password"] + (["--emergency"] if step == "retire" else [])
    if step == "recover":  # killed again while recovering
        assert keyroll(home.config, *args, env={"KEYROLL_FAILPOINT": "store"}).returncode == -signal.SIGKILL
        killed = keyroll(home.config, "recover", env={"KEYROLL_FAILPOINT": "recover"})
    else:
        killed = keyroll(home.config, *args, env={"KEYROLL_FAILPOINT": step})
    assert killed.returncode == -signal.SIGKILL
    done = keyroll(home.config, "recover")
    assert done.returncode == 0, done.stdout + done.stderr
    login, password = pair_accepted(pg, home, app.name)
    assert keyroll(home.config, "validate").returncode == 0
    # Whatever happened, the next rotation works from the recovered pair.
    assert keyroll(home.config, "rotate", "app_password").returncode == 0
    assert pair_accepted(pg, home, app.name)[0] != login
    assert pg.login_ok(login, password)


def test_unhealthy_consumers_roll_back_the_pair(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    flag = home.root / "broken"
    text = home.config.read_text().replace(
        'target = "pg_app"',
        f'target = "pg_app"\nrestart = ["command:touch {flag}"]\nhealth = ["command:test ! -e {flag}"]\n'
        'health_timeout = "1s"',
    )
    plain = home.config.read_text()
    home.config.write_text(text)
    done = keyroll(home.config, "rotate", "app_password")
    assert done.returncode == 75 and "rolled back" in done.stdout
    assert pair_accepted(pg, home, app.name) == (app.name, app.initial)
    home.config.write_text(plain)
    # The clone that took the refused password holds a value nobody knows: the next rotation still works.
    assert keyroll(home.config, "rotate", "app_password").returncode == 0
    assert pair_accepted(pg, home, app.name)[0] == app.clone


def test_set_restore_and_rollback_keep_the_pair(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    assert keyroll(home.config, "rotate", "app_password").returncode == 0
    rotated = pair_accepted(pg, home, app.name)
    # `set` of a value no login takes: applied to the login not in use, stored with its name.
    given = "Given" * 6 + "zz"
    done = keyroll(home.config, "set", "app_password", stdin=given)
    assert done.returncode == 0, done.stdout + done.stderr
    assert pair_accepted(pg, home, app.name) == (app.name, given)
    # `rollback` goes back to the previous value, which its login (in its grace) still takes.
    done = keyroll(home.config, "rollback", "app_password")
    assert done.returncode == 0, done.stdout + done.stderr
    assert pair_accepted(pg, home, app.name) == rotated
    # `restore` of the first backup (before the first rotation) pairs the value with its login again.
    backups = json.loads(keyroll(home.config, "list-backups", "--json").stdout)["data"]
    oldest = sorted(b["name"] for b in backups["backups"])[0]
    done = keyroll(home.config, "restore", oldest)
    assert done.returncode == 0, done.stdout + done.stderr
    assert pair_accepted(pg, home, app.name) == (app.name, app.initial)  # the pair stored before the rotation


@pytest.mark.parametrize("command", ["rollback", "restore"])
@pytest.mark.parametrize(
    "step", ["create", "store-write", "store", "restart"]
)  # (the older login still takes the value: no apply)
def test_sigkill_during_rollback_or_restore_keeps_the_pair(app, pg, home, command: str, step: str) -> None:  # type: ignore[no-untyped-def]
    # Issue 12: rollback and restore go through the transaction with the pair; killed at any step,
    # recovery leaves a stored login name and password that one login accepts.
    text = home.config.read_text().replace('target = "pg_app"', 'target = "pg_app"\nrestart = ["command:true"]')
    home.config.write_text(text)
    assert keyroll(home.config, "rotate", "app_password").returncode == 0
    before = pair_accepted(pg, home, app.name)
    if command == "rollback":
        args = ["rollback", "app_password"]
    else:
        backups = json.loads(keyroll(home.config, "list-backups", "--json").stdout)["data"]
        args = ["restore", sorted(b["name"] for b in backups["backups"])[0]]
    killed = keyroll(home.config, *args, env={"KEYROLL_FAILPOINT": step})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    done = keyroll(home.config, "recover")
    assert done.returncode == 0, done.stdout + done.stderr
    after = pair_accepted(pg, home, app.name)
    assert after in (before, (app.name, app.initial))  # finished (the older pair) or undone (the current one)
    assert keyroll(home.config, "validate").returncode == 0


def test_init_creates_the_login_name_and_validate_names_missing_rights(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    (home.secrets / "app_db_user").unlink()
    done = keyroll(home.config, "init")
    assert done.returncode == 0, done.stdout + done.stderr
    assert home.value("app_db_user") == app.name
    weak = unique("weakadmin")
    pg.create_role(weak, "Weak" * 8)
    (home.root / "pg-admin").write_text("Weak" * 8)
    home.config.write_text(
        home.config.read_text().replace(f'admin_user = "{app.admin_name}"', f'admin_user = "{weak}"')
    )
    done = keyroll(home.config, "config", "validate")
    assert done.returncode == 1 and "CREATEROLE" in done.stdout + done.stderr


def test_init_whose_consumers_fail_to_restart_still_retires_the_other_login(pg, home) -> None:  # type: ignore[no-untyped-def]
    """The restart fails after init: the new pair is kept (nothing to go back to), and
    the login the consumers used before must still go after the grace, not stay valid
    until the next rotation."""
    today = "Today" * 6 + "pw"
    login = make_pg_login(pg, home.root, "altfail", today)
    role = login.role
    home.write_config(
        f"""
{pg_target_toml(pg, login, grace="1s")}
[secrets.app_password]
target = "pg_app"
restart = ["command:false"]
"""
    )
    done = keyroll(home.config, "init")
    assert done.returncode == 1 and "kept" in done.stdout, done.stdout + done.stderr
    login, _ = pair_accepted(pg, home, role)
    assert login == f"{role}_clone"
    assert pg.login_ok(role, today)  # the consumers that did not restart go on during the grace
    time.sleep(1.5)
    done = keyroll(home.config, "recover")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not pg.login_ok(role, today)
    pair_accepted(pg, home, role)


def test_loader_builds_the_url_from_both(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    assert keyroll(home.config, "rotate", "app_password").returncode == 0
    from keyroll.loader import build_postgres_url, load_secret

    url = build_postgres_url(
        user=load_secret("app_db_user", directory=home.secrets),
        password=load_secret("app_password", directory=home.secrets),
        host=pg.host,
        port=pg.port,
        database="postgres",
    )
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT session_user, current_user").fetchone()
    assert row == (app.clone, app.name)


def test_a_sops_bundle_holds_the_pair_and_renders_it(pg, home) -> None:  # type: ignore[no-untyped-def]
    """With a SOPS store the login name and the password go into the bundle in the
    same write; `bundle render` serves both (files and .env)."""
    import pyrage

    login = make_pg_login(pg, home.root, "sopsalt", None)
    role = login.role
    identity = pyrage.x25519.Identity.generate()
    (home.root / "age.key").write_text(f"{identity}\n")
    (home.root / "age.key").chmod(0o600)
    (home.root / ".sops.yaml").write_text(
        f"creation_rules:\n  - path_regex: secrets\\.sops\\.yaml$\n    age: {identity.to_public()}\n"
    )
    home.write_config(
        f"""
[store]
kind = "sops"
age_key_file = "age.key"

{pg_target_toml(pg, login, name="pg")}
[secrets.app_password]
target = "pg"
"""
    )
    # init creates the password on the login not in use (the clone: the role has none) and pairs them.
    done = keyroll(home.config, "init")
    assert done.returncode == 0, done.stdout + done.stderr
    for _ in range(2):
        rendered = home.root / "rendered"
        done = keyroll(home.config, "bundle", "render", str(rendered))
        assert done.returncode == 0, done.stdout + done.stderr
        login, password = (rendered / "app_db_user").read_text(), (rendered / "app_password").read_text()
        assert pg.login_ok(login, password) and acting_user(pg, login, password) == role
        done = keyroll(home.config, "bundle", "render", str(home.root / "app.env"), "--format", "env")
        assert done.returncode == 0, done.stdout + done.stderr
        env = (home.root / "app.env").read_text()
        assert f"APP_DB_USER='{login}'" in env and f"APP_PASSWORD='{password}'" in env
        done = keyroll(home.config, "rotate", "app_password")
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_clone_gets_the_role_settings(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL applies the settings of the login, not of the role a session switches to: a consumer moved to
    # the clone must still find its tables through the role's search_path and keep the role's timeouts.
    schema = f"app schema {app.name}"
    pg.execute_admin(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{app.name}"')
    pg.execute_admin(f'ALTER ROLE "{app.name}" SET search_path = "{schema}", public')
    pg.execute_admin(f"ALTER ROLE \"{app.name}\" IN DATABASE postgres SET statement_timeout = '7s'")
    with psycopg.connect(pg.conninfo(app.name, app.initial), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int)")
    done = keyroll(home.config, "rotate", "app_password")
    assert done.returncode == 0, done.stdout + done.stderr
    login, password = pair_accepted(pg, home, app.name)
    assert login == app.clone

    def show(name: str) -> str:
        with psycopg.connect(pg.conninfo(login, password)) as conn:
            conn.execute("SELECT * FROM orders")  # unqualified: found through the role's search_path
            row = conn.execute(f"SHOW {name}").fetchone()
        assert row is not None
        return str(row[0])

    assert show("search_path") == f'"{schema}", public' and show("statement_timeout") == "7s"
    # A setting removed from the role goes from the clone at the next rotation that moves to it.
    pg.execute_admin(f'ALTER ROLE "{app.name}" IN DATABASE postgres RESET statement_timeout')
    for _ in range(2):
        done = keyroll(home.config, "rotate", "app_password")
        assert done.returncode == 0, done.stdout + done.stderr
    login, password = pair_accepted(pg, home, app.name)
    assert login == app.clone and show("statement_timeout") == "0"


def test_metrics_give_the_login_name_no_due_time(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    # The login name changes with its password, never due alone: an alert on the due time fires for the password.
    prom = home.root / "metrics" / "keyroll.prom"
    prom.parent.mkdir()
    home.config.write_text(home.config.read_text() + f'\n[metrics]\ntextfile = "{prom}"\n')
    done = keyroll(home.config, "rotate", "app_password")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = prom.read_text().splitlines()
    assert any(line.startswith('keyroll_secret_next_due_timestamp_seconds{secret="app_password"}') for line in lines)
    assert not any(line.startswith('keyroll_secret_next_due_timestamp_seconds{secret="app_db_user"}') for line in lines)
    assert any(
        line.startswith('keyroll_secret_last_rotation_timestamp_seconds{secret="app_db_user"}') for line in lines
    )


def test_kubernetes_gets_the_login_name_beside_the_password(app, pg, home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A pod that reads the password from a Kubernetes Secret needs the login name that goes with it: it is
    # published to the same Secret (under its own name) in the same write. The API server is the fake of
    # tests/kube_fake.py (no real one can run here).
    from tests.kube_fake import serve

    with serve(tmp_path / "kube") as (fake, kubeconfig):
        fake.add_workload("deployment", "apps", "app")
        home.config.write_text(
            home.config.read_text()
            + 'kubernetes = ["db/password"]\nrestart = ["kubernetes:deployment/app"]\n'
            + f'\n[kubernetes]\nkubeconfig = "{kubeconfig}"\nnamespace = "apps"\n'
        )
        for _ in range(2):
            done = keyroll(home.config, "rotate", "app_password")
            assert done.returncode == 0, done.stdout + done.stderr
            login, password = pair_accepted(pg, home, app.name)
            assert fake.secret_value("apps", "db", "password") == password
            assert fake.secret_value("apps", "db", "app_db_user") == login


def test_status_after_a_kill_shows_the_pair_in_flight(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    # Killed after the pair was stored, before it was recorded: both are in flight (run `keyroll recover`),
    # neither "changed outside keyroll".
    text = home.config.read_text().replace('target = "pg_app"', 'target = "pg_app"\nrestart = ["command:true"]')
    home.config.write_text(text)
    killed = keyroll(home.config, "rotate", "app_password", env={"KEYROLL_FAILPOINT": "restart"})
    assert killed.returncode == -signal.SIGKILL
    status = {s["name"]: s for s in json.loads(keyroll(home.config, "status", "--json").stdout)["data"]["secrets"]}
    for name in ("app_password", "app_db_user"):
        assert status[name]["state"] == "IN FLIGHT", status[name]
        assert not any("outside keyroll" in problem for problem in status[name]["problems"]), status[name]
    checked = keyroll(home.config, "validate")
    assert checked.returncode == 1 and "outside keyroll" not in checked.stdout + checked.stderr
    assert keyroll(home.config, "recover").returncode == 0
    status = {s["name"]: s for s in json.loads(keyroll(home.config, "status", "--json").stdout)["data"]["secrets"]}
    assert status["app_password"]["state"] == status["app_db_user"]["state"] == "OK"
    pair_accepted(pg, home, app.name)


def test_status_with_the_strategies_loads_no_database_client(home, krp) -> None:  # type: ignore[no-untyped-def]
    home.write_config(
        """
[targets.pg]
type = "postgres"
user = "app"
admin_user = "admin"
strategy = "alternating"
username_secret = "app_db_user"

[targets.db]
type = "mysql"
user = "app"
admin_user = "root"
strategy = "dual"

[secrets.app_password]
target = "pg"

[secrets.db_password]
target = "db"
"""
    )
    result = krp("--config", str(home.config), "status", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.code == 0, result.both
    loaded = {line.split("|")[-1].strip() for line in result.err.splitlines() if line.startswith("import time:")}
    assert "keyroll.journal" in loaded and "app_db_user" in result.out
    assert not any(m.startswith("keyroll.targets") for m in loaded)
    assert not {m for m in loaded if m.split(".")[0] in ("psycopg", "pymysql", "redis", "rich", "apscheduler")}


@pytest.mark.parametrize("how", ["init", "set"])
def test_adopting_a_password_of_an_existing_clone_makes_it_act_as_the_role(pg, home, how: str) -> None:  # type: ignore[no-untyped-def]
    # The clone's name was already taken by a login of its own (made by hand, not a member of the role): when
    # its password is adopted, keyroll first makes it act as the role, so consumers given it own nothing apart.
    clone_value = "Clone" * 6 + "pw"
    login = make_pg_login(pg, home.root, "adopt", "Role" * 8)
    role = login.role
    pg.create_role(login.clone, clone_value)
    home.write_config(
        f"""
{pg_target_toml(pg, login, name="pg")}
[secrets.app_password]
target = "pg"
"""
    )
    if how == "init":
        home.secrets.mkdir(mode=0o700)
        (home.secrets / "app_password").write_text(clone_value)
        (home.secrets / "app_password").chmod(0o600)
        done = keyroll(home.config, "init")
    else:
        done = keyroll(home.config, "set", "app_password", stdin=clone_value)
    assert done.returncode == 0, done.stdout + done.stderr
    assert home.value("app_db_user") == f"{role}_clone" and home.value("app_password") == clone_value
    assert acting_user(pg, f"{role}_clone", clone_value) == role


def test_a_setting_only_a_superuser_may_copy_is_named(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    # The admin (CREATEROLE, not a superuser) may not copy log_statement: the rotation stops before any consumer
    # is moved to a clone that would go unlogged, says what to run, and works once a superuser has run it.
    pg.execute_admin(f"ALTER ROLE \"{app.name}\" SET log_statement = 'all'")
    refused = keyroll(home.config, "rotate", "app_password")
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1 and f"do it as a superuser: ALTER ROLE {app.clone} SET log_statement" in said
    assert said.count(f"PostgreSQL role '{app.name}'") == 1
    assert pair_accepted(pg, home, app.name) == (app.name, app.initial)
    pg.execute_admin(f"ALTER ROLE \"{app.clone}\" SET log_statement = 'all'")
    done = keyroll(home.config, "rotate", "app_password")
    assert done.returncode == 0, done.stdout + done.stderr
    assert pair_accepted(pg, home, app.name)[0] == app.clone


def test_leaks_scan_does_not_report_the_login_name(app, pg, home) -> None:  # type: ignore[no-untyped-def]
    # The login name is written in configs on purpose: it is no secret, so no leak (and `rotate --emergency` of
    # it would be refused anyway). The password beside it still is one.
    assert keyroll(home.config, "rotate", "app_password").returncode == 0
    folder = home.root / "deploy"
    folder.mkdir()
    (folder / "app.env").write_text(f"DB_USER={home.value('app_db_user')}\n")
    scanned = keyroll(home.config, "leaks", "scan", str(folder))
    assert scanned.returncode == 0 and "app_db_user" not in scanned.stdout + scanned.stderr, scanned.stdout
    (folder / "app.env").write_text(f"DB_USER={home.value('app_db_user')}\nDB_PASSWORD={home.value('app_password')}\n")
    scanned = keyroll(home.config, "leaks", "scan", str(folder))
    assert scanned.returncode == 1 and "app_password" in scanned.stdout and "app_db_user" not in scanned.stdout
