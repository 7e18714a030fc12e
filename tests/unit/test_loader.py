"""keyroll.loader: where services find their secrets, what counts as an error, and URLs built from them.

Every lookup place is a real folder under tmp_path. /run/secrets cannot be written
portably, so the autouse fixture points ``loader.DEFAULT_DIRECTORIES`` (read at call
time) at a folder under tmp_path, and clears the variables the loader reads.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from keyroll import loader
from keyroll.loader import (
    InvalidSecretName,
    SecretEmpty,
    SecretError,
    SecretNotFound,
    SecretUnreadable,
    build_postgres_url,
    build_redis_url,
    load_secret,
)

NAME = "db_password"
FALLBACK = "DB_PASSWORD"


@pytest.fixture(autouse=True)
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Five lookup places, none created yet, none set in the environment."""
    for var in ("CREDENTIALS_DIRECTORY", "KEYROLL_SECRETS_DIR", FALLBACK, "OTHER_VAR"):
        monkeypatch.delenv(var, raising=False)
    found = {
        "credentials": tmp_path / "credentials",
        "directory": tmp_path / "directory",
        "keyroll_dir": tmp_path / "keyroll-secrets",
        "run_secrets": tmp_path / "run-secrets",
    }
    monkeypatch.setattr(loader, "DEFAULT_DIRECTORIES", (str(found["run_secrets"]),))
    return found


def put(folder: Path, value: str | bytes, name: str = NAME) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(value, str):
        value = value.encode()
    path.write_bytes(value)
    return path


# ------------------------------------------------------------------ each place on its own


def test_credentials_directory(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    put(places["credentials"], "from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(places["credentials"]))
    assert load_secret(NAME) == "from-systemd"


def test_directory_argument_str_and_pathlike(places: dict[str, Path]) -> None:
    put(places["directory"], "from-arg")
    assert load_secret(NAME, directory=str(places["directory"])) == "from-arg"
    assert load_secret(NAME, directory=places["directory"]) == "from-arg"


def test_keyroll_secrets_dir(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    put(places["keyroll_dir"], "from-keyroll-dir")
    monkeypatch.setenv("KEYROLL_SECRETS_DIR", str(places["keyroll_dir"]))
    assert load_secret(NAME) == "from-keyroll-dir"


def test_default_directories(places: dict[str, Path]) -> None:
    put(places["run_secrets"], "from-run-secrets")
    assert load_secret(NAME) == "from-run-secrets"


def test_default_directories_is_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    put(second, "in-second")
    monkeypatch.setattr(loader, "DEFAULT_DIRECTORIES", (str(first), str(second)))
    assert load_secret(NAME) == "in-second"
    put(first, "in-first")
    assert load_secret(NAME) == "in-first"


def test_fallback_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FALLBACK, "from-env")
    assert load_secret(NAME, fallback_env_var=FALLBACK) == "from-env"
    assert load_secret(NAME, FALLBACK) == "from-env"


# ------------------------------------------------------------------ precedence


# `directory` and $KEYROLL_SECRETS_DIR are alternatives (the argument replaces the variable), hence two chains.
WITH_DIRECTORY = ["credentials", "directory", "run_secrets", "env"]
WITHOUT_DIRECTORY = ["credentials", "keyroll_dir", "run_secrets", "env"]


@pytest.mark.parametrize(
    ("chain", "winner"),
    [(WITH_DIRECTORY, place) for place in WITH_DIRECTORY] + [(WITHOUT_DIRECTORY, place) for place in WITHOUT_DIRECTORY],
)
def test_precedence(chain: list[str], winner: str, places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """CREDENTIALS_DIRECTORY > directory (else KEYROLL_SECRETS_DIR) > DEFAULT_DIRECTORIES > env var.

    Every place from `winner` down holds its own value; the places above it exist but lack the secret.
    """
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(places["credentials"]))
    monkeypatch.setenv("KEYROLL_SECRETS_DIR", str(places["keyroll_dir"]))
    for folder in places.values():
        folder.mkdir()
    for place in chain[chain.index(winner) :]:
        if place == "env":
            monkeypatch.setenv(FALLBACK, "value-env")
        else:
            put(places[place], f"value-{place}\n")
    directory = places["directory"] if chain is WITH_DIRECTORY else None
    assert load_secret(NAME, fallback_env_var=FALLBACK, directory=directory) == f"value-{winner}"


def test_directory_argument_replaces_keyroll_secrets_dir(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    put(places["keyroll_dir"], "from-keyroll-dir")
    monkeypatch.setenv("KEYROLL_SECRETS_DIR", str(places["keyroll_dir"]))
    places["directory"].mkdir()
    with pytest.raises(SecretNotFound) as caught:
        load_secret(NAME, directory=places["directory"])
    assert str(places["keyroll_dir"]) not in str(caught.value)
    assert "KEYROLL_SECRETS_DIR" not in str(caught.value)


def test_empty_directory_variables_count_as_unset(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    put(places["run_secrets"], "v")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "")
    monkeypatch.setenv("KEYROLL_SECRETS_DIR", "")
    assert load_secret(NAME) == "v"


def test_a_folder_that_is_a_file_is_just_absent(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_folder = places["credentials"].with_name("plain-file")
    not_a_folder.write_text("x")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(not_a_folder))
    put(places["run_secrets"], "v")
    assert load_secret(NAME) == "v"


# ------------------------------------------------------------------ values


@pytest.mark.parametrize(
    ("content", "value"),
    [
        ("v", "v"),
        ("v\n", "v"),
        ("v\n\n", "v\n"),
        ("v\r\n", "v"),
        ("v\r\n\r\n", "v\r\n"),
        ("v\r", "v\r"),
        ("  spaced value \t\n", "  spaced value \t"),
        ("line1\nline2\n", "line1\nline2"),
        ("ünïcødé-€\n", "ünïcødé-€"),
    ],
)
def test_exactly_one_trailing_newline_is_stripped(content: str, value: str, places: dict[str, Path]) -> None:
    put(places["run_secrets"], content)
    assert load_secret(NAME) == value


def test_env_var_gets_the_same_newline_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FALLBACK, "v\n\n")
    assert load_secret(NAME, FALLBACK) == "v\n"


@pytest.mark.parametrize("content", ["", "\n", "\r\n"])
def test_empty_file_is_an_error_and_does_not_fall_through(
    content: str, places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = put(places["run_secrets"], content)
    monkeypatch.setenv(FALLBACK, "stale-env-value")
    with pytest.raises(SecretEmpty) as caught:
        load_secret(NAME, FALLBACK)
    assert str(caught.value) == f"secret {NAME!r} at {path} is empty"
    assert caught.value.path == str(path)
    assert isinstance(caught.value, SecretError)
    assert SecretNotFound not in type(caught.value).__mro__  # code catching "missing" must not swallow this


@pytest.mark.parametrize("content", ["", "\n"])
def test_empty_env_var_is_an_error(content: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FALLBACK, content)
    with pytest.raises(SecretEmpty, match=r"at \$DB_PASSWORD is empty"):
        load_secret(NAME, FALLBACK)


def test_invalid_utf8_is_an_error_without_the_bytes(places: dict[str, Path]) -> None:
    path = put(places["run_secrets"], b"sec\xffret")
    with pytest.raises(SecretUnreadable) as caught:
        load_secret(NAME)
    message = str(caught.value)
    assert message == f"secret {NAME!r} at {path} cannot be read: not valid UTF-8"
    assert "sec" not in message.replace("secret", "")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# ------------------------------------------------------------------ not found


def test_not_found_names_every_place_on_one_line_without_values(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(places["credentials"]))
    monkeypatch.setenv("KEYROLL_SECRETS_DIR", str(places["keyroll_dir"]))
    # Other secrets live in every folder; none of their values may show up.
    for folder in (places["credentials"], places["keyroll_dir"], places["run_secrets"]):
        put(folder, "other-value-xyz", name="other_secret")
    monkeypatch.setenv("OTHER_VAR", "other-env-value")
    with pytest.raises(SecretNotFound) as caught:
        load_secret(NAME, fallback_env_var=FALLBACK)
    error = caught.value
    expected_places = (
        str(places["credentials"] / NAME),
        str(places["keyroll_dir"] / NAME),
        str(places["run_secrets"] / NAME),
        "$DB_PASSWORD (unset)",
    )
    assert error.places == expected_places
    assert str(error) == f"secret {NAME!r} not found; looked in: {', '.join(expected_places)}"
    assert "\n" not in str(error)
    assert "other-value" not in str(error) and "other-env" not in str(error)
    assert error.name == NAME
    assert isinstance(error, LookupError) and isinstance(error, SecretError)


def test_not_found_says_which_variables_were_unset(places: dict[str, Path]) -> None:
    with pytest.raises(SecretNotFound) as caught:
        load_secret(NAME)
    assert caught.value.places == (
        "$CREDENTIALS_DIRECTORY (unset)",
        "$KEYROLL_SECRETS_DIR (unset)",
        str(places["run_secrets"] / NAME),
    )


def test_not_found_lists_a_folder_once(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(places["run_secrets"]))
    with pytest.raises(SecretNotFound) as caught:
        load_secret(NAME, directory=places["run_secrets"])
    assert caught.value.places == (str(places["run_secrets"] / NAME),)


@pytest.mark.parametrize(
    "error",
    [
        SecretNotFound(NAME, ("/a/db_password", "$X (unset)")),
        SecretUnreadable(NAME, "/a/db_password", "Permission denied"),
        SecretEmpty(NAME, "/a/db_password"),
        InvalidSecretName("bad"),
    ],
)
def test_errors_survive_pickling(error: SecretError) -> None:
    """Services hand exceptions across processes (multiprocessing, task queues)."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


# ------------------------------------------------------------------ names


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../x", "a/b", "/etc/passwd", ".hidden", "-dash", "a.b", "a b", "a\n", "a\0b", "é", "x" * 129],
)
def test_bad_names_are_refused(name: str, places: dict[str, Path]) -> None:
    put(places["run_secrets"].parent, "must not be read", name="x")  # a file ../x would reach
    with pytest.raises(InvalidSecretName) as caught:
        load_secret(name, directory=places["run_secrets"])
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, SecretError)
    assert "must not be read" not in str(caught.value)


@pytest.mark.parametrize("name", ["a", "_", "A-b_9", "9lives", "_hidden-ish", "x" * 128])
def test_good_names_are_accepted(name: str, places: dict[str, Path]) -> None:
    put(places["run_secrets"], "v", name=name)
    assert load_secret(name) == "v"


def test_bad_fallback_env_var_name_is_refused() -> None:
    for bad in ("", "A=B", "A\0B"):
        with pytest.raises(ValueError):
            load_secret(NAME, fallback_env_var=bad)


# ------------------------------------------------------------------ symlinks (sops-nix)


def test_sops_nix_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sops-nix: /run/secrets -> /run/secrets.d/<generation>/, entries may link anywhere (`path = ...`)."""
    generation = tmp_path / "run" / "secrets.d" / "7"
    put(generation, "pw-in-generation\n")
    elsewhere = put(tmp_path / "etc" / "app", "pw-elsewhere\n", name="custom-path")
    run_secrets = tmp_path / "run" / "secrets"
    run_secrets.symlink_to(generation, target_is_directory=True)
    (generation / "api_key").symlink_to(elsewhere)
    monkeypatch.setattr(loader, "DEFAULT_DIRECTORIES", (str(run_secrets),))
    assert load_secret(NAME) == "pw-in-generation"
    assert load_secret("api_key") == "pw-elsewhere"


def test_relative_symlink_is_followed(places: dict[str, Path]) -> None:
    put(places["run_secrets"].parent / "store", "linked")
    places["run_secrets"].mkdir()
    (places["run_secrets"] / NAME).symlink_to(Path("..") / "store" / NAME)
    assert load_secret(NAME) == "linked"


def test_dangling_symlink_is_an_error_not_a_fall_through(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    places["run_secrets"].mkdir()
    link = places["run_secrets"] / NAME
    link.symlink_to(places["run_secrets"].parent / "secrets.d" / "gone" / NAME)
    monkeypatch.setenv(FALLBACK, "stale-env-value")
    with pytest.raises(SecretUnreadable, match="dangling symlink") as caught:
        load_secret(NAME, FALLBACK)
    assert caught.value.path == str(link)


# ------------------------------------------------------------------ present but unusable


def _as_nobody(call: Callable[[], str]) -> tuple[str, str]:
    """Run `call` in a forked child with uid/gid 65534 (a real EACCES even when tests run as root)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        outcome: tuple[str, str]
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            outcome = ("value", call())
        except BaseException as exc:
            outcome = (type(exc).__name__, str(exc))
        os.write(write_end, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    kind, text = json.loads(data)
    return kind, text


def test_permission_denied_is_an_error_not_a_fall_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the service may not read names its path; the stale env var is NOT used instead."""
    # A folder others can traverse (tmp_path's parents are 0700), with a 0000 file in it.
    folder = Path(tempfile.mkdtemp(prefix="keyroll-loader-"))
    try:
        folder.chmod(0o755)
        path = put(folder, "real-value")
        path.chmod(0)
        monkeypatch.setenv(FALLBACK, "stale-env-value")
        monkeypatch.setattr(loader, "DEFAULT_DIRECTORIES", (str(folder),))

        def call() -> str:
            return load_secret(NAME, FALLBACK)

        if os.geteuid() == 0:  # root reads mode 0000 files: drop to nobody in a child
            kind, text = _as_nobody(call)
        else:
            with pytest.raises(SecretUnreadable) as caught:
                call()
            kind, text = type(caught.value).__name__, str(caught.value)
        assert kind == "SecretUnreadable"
        assert text == f"secret {NAME!r} at {path} cannot be read: Permission denied"
        assert "real-value" not in text and "stale" not in text
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def test_os_error_on_open_is_an_error_naming_the_path(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rule without privileges: whatever OSError open() meets (here EACCES) stops the search."""
    path = put(places["run_secrets"], "real-value")
    monkeypatch.setenv(FALLBACK, "stale-env-value")
    real_open = os.open

    def deny(target: str, *args: int) -> int:
        if target == str(path):
            raise PermissionError(13, "Permission denied", target)
        return real_open(target, *args)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(SecretUnreadable) as caught:
        load_secret(NAME, FALLBACK)
    assert str(caught.value) == f"secret {NAME!r} at {path} cannot be read: Permission denied"
    assert isinstance(caught.value.__cause__, PermissionError)


def test_a_directory_in_place_of_the_file_is_an_error(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    (places["run_secrets"] / NAME).mkdir(parents=True)  # sops-nix renders nested keys as folders
    monkeypatch.setenv(FALLBACK, "stale-env-value")
    with pytest.raises(SecretUnreadable, match="not a regular file"):
        load_secret(NAME, FALLBACK)


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_without_hanging(places: dict[str, Path]) -> None:
    places["run_secrets"].mkdir()
    os.mkfifo(places["run_secrets"] / NAME)
    with pytest.raises(SecretUnreadable, match="not a regular file"):
        load_secret(NAME)


def test_symlink_loop_is_an_error(places: dict[str, Path]) -> None:
    places["run_secrets"].mkdir()
    link = places["run_secrets"] / NAME
    link.symlink_to(link)
    with pytest.raises(SecretUnreadable, match=r"cannot be read: Too many levels of symbolic links"):
        load_secret(NAME)


def test_file_mode_does_not_matter_when_readable(places: dict[str, Path]) -> None:
    path = put(places["run_secrets"], "v")
    path.chmod(stat.S_IRUSR)
    assert load_secret(NAME) == "v"


# ------------------------------------------------------------------ import cost


def test_import_is_light_and_fast(tmp_path: Path) -> None:
    """Fresh interpreter: keyroll.loader costs < 20 ms cumulative and drags in nothing heavy."""
    env = dict(os.environ)
    # Timed from compiled bytecode, as an installed keyroll is: compiling the sources on every import (as under
    # PYTHONDONTWRITEBYTECODE=1, set on some machines) alone takes about 10 ms, and twice that on a loaded one.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pycache")  # (the bytecode stays out of the checkout)
    subprocess.run([sys.executable, "-c", "import keyroll.loader"], check=True, env=env)
    cumulative_us = []
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import keyroll.loader"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        lines = [line for line in run.stderr.splitlines() if line.rstrip().endswith("| keyroll.loader")]
        assert len(lines) == 1, run.stderr
        cumulative_us.append(int(lines[0].split("|")[1]))
    assert min(cumulative_us) < 20_000, cumulative_us

    probe = "import sys, json, keyroll.loader; print(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    modules = set(json.loads(run.stdout))
    heavy = {"psycopg", "redis", "apprise", "apscheduler", "rich", "sqlite3", "_sqlite3", "tomllib", "tomli_w"}
    assert not {m for m in modules if m.split(".")[0] in heavy}
    assert {m for m in modules if m.split(".")[0] == "keyroll"} == {"keyroll", "keyroll.loader"}
    assert "urllib.parse" not in modules  # imported lazily by the URL builders only


# ------------------------------------------------------------------ URL builders


NASTY = [
    "p@ss:w/rd?#%+ x",
    "@:/?#%+ ",
    "%41%2F",
    "a+b",
    "[::1]",
    ";&=,'\"\\",
    "ünï€",
    "tab\there",
]


@pytest.mark.parametrize("password", NASTY)
def test_postgres_url_round_trips(password: str) -> None:
    user = "app@host:1/x y"
    database = "my db/?#%"
    url = build_postgres_url(password=password, user=user, host="db.internal", port=5433, database=database)
    parts = urlsplit(url)
    assert parts.scheme == "postgresql"
    assert parts.username is not None and unquote(parts.username) == user
    assert parts.password is not None and unquote(parts.password) == password
    assert parts.hostname == "db.internal"
    assert parts.port == 5433
    assert unquote(parts.path[1:]) == database
    assert parts.query == "" and parts.fragment == ""

    from psycopg.conninfo import conninfo_to_dict

    assert conninfo_to_dict(url) == {
        "user": user,
        "password": password,
        "host": "db.internal",
        "port": "5433",
        "dbname": database,
    }


@pytest.mark.parametrize(
    ("host", "netloc_host", "libpq_host"),
    [
        ("::1", "[::1]", "::1"),
        ("[::1]", "[::1]", "::1"),
        ("2001:db8::5", "[2001:db8::5]", "2001:db8::5"),
        ("fe80::1%eth0", "[fe80::1%25eth0]", "fe80::1%eth0"),
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ("my_db-1.local", "my_db-1.local", "my_db-1.local"),
    ],
)
def test_postgres_hosts(host: str, netloc_host: str, libpq_host: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    url = build_postgres_url(password="pw", user="u", host=host, database="d")
    assert url == f"postgresql://u:pw@{netloc_host}:5432/d"
    assert conninfo_to_dict(url)["host"] == libpq_host


@pytest.mark.parametrize("socket_dir", ["/run/postgresql", "/tmp/my sockets/pg"])
def test_postgres_unix_socket_goes_in_the_host_parameter(socket_dir: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    url = build_postgres_url(password="p@ss word", user="app", host=socket_dir, port=5433, database="app")
    parts = urlsplit(url)
    assert parts.hostname is None
    assert url.startswith("postgresql://app:p%40ss%20word@:5433/app?host=/")
    assert conninfo_to_dict(url) == {
        "user": "app",
        "password": "p@ss word",
        "host": socket_dir,
        "port": "5433",
        "dbname": "app",
    }


def test_postgres_query_parameters_and_defaults() -> None:
    from psycopg.conninfo import conninfo_to_dict

    url = build_postgres_url(
        password="pw", user="u", host="h", port=None, sslmode="verify-full", application_name="a b+c&d", options=None
    )
    assert url == "postgresql://u:pw@h/?sslmode=verify-full&application_name=a%20b%2Bc%26d"
    assert conninfo_to_dict(url) == {
        "user": "u",
        "password": "pw",
        "host": "h",
        "sslmode": "verify-full",
        "application_name": "a b+c&d",
    }
    assert build_postgres_url(password="pw", user="u") == "postgresql://u:pw@localhost:5432/"
    assert build_postgres_url(password="pw", user="u", connect_timeout=5).endswith("?connect_timeout=5")


def test_postgres_scheme_for_sqlalchemy() -> None:
    url = build_postgres_url(password="pw", user="u", database="d", scheme="postgresql+psycopg")
    assert urlsplit(url).scheme == "postgresql+psycopg"
    with pytest.raises(ValueError):
        build_postgres_url(password="pw", user="u", scheme="http://evil/")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "evil.com/x"},
        {"host": "a@b"},
        {"host": "a b"},
        {"host": ""},
        {"host": "h?x"},
        {"host": "[::1]/x"},
        {"host": "::g"},
        {"port": 0},
        {"port": 65536},
        {"port": True},
    ],
)
def test_postgres_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build_postgres_url(password="pw", user="u", **kwargs)  # type: ignore[arg-type]


def test_url_builders_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        build_postgres_url("pw", "u")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        build_redis_url("pw")  # type: ignore[call-arg]


def _redis_kwargs(url: str) -> dict[str, object]:
    from redis.connection import parse_url

    parsed: dict[str, object] = parse_url(url)  # type: ignore[no-untyped-call]
    return {key: value for key, value in parsed.items() if key != "connection_class"}


@pytest.mark.parametrize("password", NASTY)
def test_redis_url_round_trips(password: str) -> None:
    import redis

    url = build_redis_url(password=password, user="svc@x:y", host="cache.internal", port=6380, db=3)
    parts = urlsplit(url)
    assert parts.scheme == "redis"
    assert parts.username is not None and unquote(parts.username) == "svc@x:y"
    assert parts.password is not None and unquote(parts.password) == password
    assert (parts.hostname, parts.port, parts.path) == ("cache.internal", 6380, "/3")
    expected = {"username": "svc@x:y", "password": password, "host": "cache.internal", "port": 6380, "db": 3}
    assert _redis_kwargs(url) == expected
    client = redis.Redis.from_url(url)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert {key: kwargs[key] for key in expected} == expected
    finally:
        client.close()


def test_redis_default_user_tls_and_ipv6() -> None:
    from redis.connection import SSLConnection, parse_url

    url = build_redis_url(password="p@ss", host="::1", tls=True)
    assert url == "rediss://:p%40ss@[::1]:6379/0"
    parsed = parse_url(url)  # type: ignore[no-untyped-call]
    assert parsed["connection_class"] is SSLConnection
    assert "username" not in parsed
    assert (parsed["password"], parsed["host"], parsed["port"], parsed["db"]) == ("p@ss", "::1", 6379, 0)


def test_redis_without_password() -> None:
    assert build_redis_url(password=None) == "redis://localhost:6379/0"
    assert _redis_kwargs(build_redis_url(password=None, host="h", port=None, db=1)) == {"host": "h", "db": 1}


def test_redis_unix_socket() -> None:
    from redis.connection import UnixDomainSocketConnection, parse_url

    url = build_redis_url(password="a b#c", host="/run/redis app/redis.sock", db=2)
    assert url == "unix://:a%20b%23c@/run/redis%20app/redis.sock?db=2"
    parsed = parse_url(url)  # type: ignore[no-untyped-call]
    assert parsed["connection_class"] is UnixDomainSocketConnection
    assert (parsed["password"], parsed["path"], parsed["db"]) == ("a b#c", "/run/redis app/redis.sock", 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"db": -1},
        {"db": True},
        {"host": "/run/redis.sock", "tls": True},
        {"host": "x/y"},
        {"port": 70000},
    ],
)
def test_redis_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build_redis_url(password="pw", **kwargs)  # type: ignore[arg-type]
