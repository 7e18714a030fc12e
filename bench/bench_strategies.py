"""Zero downtime, measured: a consumer opens a NEW connection every 10 ms with the
credentials it read at its last restart (keyroll restarts it after each rotation:
a `command:` restart that signals it and waits until it has re-read the files),
through N consecutive `keyroll rotate` runs, for each strategy in the same run:
PostgreSQL single / alternating, MariaDB single / dual.  Reports the consumer's
failed logins and the time per rotation (a whole keyroll process each, restart
included).  Throwaway servers on free loopback ports (tests/peers.py).

    .venv/bin/python bench/bench_strategies.py [--rotations 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import peers  # noqa: E402
from zero_downtime import measure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rotations", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        peers.PostgresServer(Path(tmp) / "pg") as pg,
        peers.MariaDBServer(Path(tmp) / "mariadb") as mariadb,
    ):
        admin = "Adm1n" * 6 + "xy"
        pg.create_role("bench_admin", admin, createrole=True)
        for strategy in ("single", "alternating"):
            role, initial = f"bench_{strategy}", "Initial" * 4 + "pass"
            pg.create_role(role, initial)
            result = measure(
                Path(tmp) / f"pg-{strategy}",
                kind="postgres",
                server=pg,
                user=role,
                initial=initial,
                admin_user="bench_admin",
                admin_password=admin,
                strategy=strategy,
                rotations=args.rotations,
            )
            rows.append(("PostgreSQL 15", result))
        for strategy in ("single", "dual"):
            user, initial = f"bench_{strategy}", "Maria" * 6 + "db"
            mariadb.create_user(user, initial)
            result = measure(
                Path(tmp) / f"my-{strategy}",
                kind="mysql",
                server=mariadb,
                user=user,
                initial=initial,
                admin_user="root",
                admin_password=mariadb.admin_password,
                strategy=strategy,
                rotations=args.rotations,
            )
            rows.append(("MariaDB 10.11", result))
    print("| server | strategy | rotations | logins tried | failed logins | time per rotation |")
    print("|---|---|---:|---:|---:|---:|")
    for server, r in rows:
        print(
            f"| {server} | {r.strategy} | {r.rotations} | {r.attempts} | {r.failures} | "
            f"{r.seconds_per_rotation * 1000:.0f} ms |"
        )


if __name__ == "__main__":
    main()
