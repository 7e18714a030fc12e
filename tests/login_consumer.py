"""A consumer that opens a NEW database connection every 10 ms with the credentials
it read at its last (re)start, the way a service whose pool reconnects does.

    python login_consumer.py run KIND HOST PORT SECRETS_DIR PASSWORD_SECRET USER READY_FILE
        KIND: postgres | mysql; USER: a login name, or @SECRET to read it from the store.
        SIGUSR1 re-reads the stored files (a restart); each (re)read is acknowledged by
        writing the reload count to READY_FILE.  SIGTERM prints a JSON summary
        ({"attempts", "failures", "reloads"}) and exits.
    python login_consumer.py reload PID READY_FILE
        What keyroll's restart runs (`command:`): signal the consumer, wait until it has
        read the new files (like `systemctl restart` waits for the service to start).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

INTERVAL = 0.010


def _read(folder: Path, name: str) -> str:
    return (folder / name).read_text().rstrip("\n")


def _connector(kind: str, host: str, port: int) -> Any:
    if kind == "postgres":
        import psycopg

        def connect_pg(user: str, password: str) -> None:
            psycopg.connect(
                host=host,
                port=port,
                user=user,
                password=password,
                dbname="postgres",
                connect_timeout=2,
                sslmode="disable",
                gssencmode="disable",
            ).close()

        return connect_pg, psycopg.OperationalError
    import pymysql

    def connect_my(user: str, password: str) -> None:
        pymysql.connect(
            host=host, port=port, user=user, password=password, connect_timeout=2, ssl_disabled=True
        ).close()

    return connect_my, pymysql.err.OperationalError


def _ack(ready: Path, count: int) -> None:
    temp = ready.with_name(ready.name + ".tmp")
    temp.write_text(str(count))
    temp.replace(ready)


def run(kind: str, host: str, port: str, folder: str, password_secret: str, user: str, ready: str) -> None:
    connect, refused = _connector(kind, host, int(port))
    store, ready_path = Path(folder), Path(ready)
    state = {"reload": True, "stop": False}
    signal.signal(signal.SIGUSR1, lambda *_: state.update(reload=True))
    signal.signal(signal.SIGTERM, lambda *_: state.update(stop=True))
    attempts = failures = reloads = 0
    login = password = ""
    failed_at: list[float] = []
    next_at = time.monotonic()
    while not state["stop"]:
        if state["reload"]:
            state["reload"] = False
            login = _read(store, user[1:]) if user.startswith("@") else user
            password = _read(store, password_secret)
            _ack(ready_path, reloads)
            reloads += 1
        attempts += 1
        try:
            connect(login, password)
        except refused:
            failures += 1
            failed_at.append(time.time())
        next_at += INTERVAL
        time.sleep(max(0.0, next_at - time.monotonic()))
    print(json.dumps({"attempts": attempts, "failures": failures, "reloads": reloads - 1, "failed_at": failed_at}))


def reload(pid: str, ready: str) -> None:
    path = Path(ready)
    before = path.read_text()
    os.kill(int(pid), signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while path.read_text() == before:
        if time.monotonic() > deadline:
            sys.exit("the consumer did not re-read its credentials within 10 s")
        time.sleep(0.002)


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "run":
        run(*rest)
    else:
        reload(*rest)
