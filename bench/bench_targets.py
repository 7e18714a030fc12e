"""Rotate 100 PostgreSQL roles and 100 Redis ACL users in one cycle, each applied
and verified with a fresh login: total time, and time per secret split by step
(TxReport.timings).  Throwaway servers on free loopback ports (tests/peers.py).

    .venv/bin/python bench/bench_targets.py [--roles 100] [--users 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import peers  # noqa: E402

STEPS = ("read", "check", "backup", "create", "apply", "verify", "store", "consumers", "retire", "finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--roles", type=int, default=100)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        peers.PostgresServer(Path(tmp) / "pg") as pg,
        peers.RedisServer(Path(tmp) / "redis") as redis_server,
    ):
        base = Path(tmp)
        (base / "pg-admin").write_text(pg.admin_password)
        (base / "redis-admin").write_text(redis_server.default_password)
        secrets_dir = base / "secrets"
        secrets_dir.mkdir(mode=0o700)
        tables = []
        for i in range(args.roles):
            value = f"Pg{i:04d}" + "x" * 26
            pg.create_role(f"bench_role_{i}", value)
            (secrets_dir / f"pg_{i}").write_text(value)
            tables.append(
                f'[targets.pg_{i}]\ntype = "postgres"\nhost = "{pg.host}"\nport = {pg.port}\nuser = "bench_role_{i}"\n'
                f'admin_user = "postgres"\nadmin_password_file = "{base / "pg-admin"}"\n'
                f'[secrets.pg_{i}]\ntarget = "pg_{i}"\n'
            )
        for i in range(args.users):
            value = f"Rd{i:04d}" + "y" * 26
            redis_server.create_user(f"bench_user_{i}", value)
            (secrets_dir / f"redis_{i}").write_text(value)
            tables.append(
                f'[targets.redis_{i}]\ntype = "redis"\nhost = "{redis_server.host}"\nport = {redis_server.port}\n'
                f'user = "bench_user_{i}"\nadmin_user = "default"\nadmin_password_file = "{base / "redis-admin"}"\n'
                f'[secrets.redis_{i}]\ntarget = "redis_{i}"\n'
            )
        config = base / "config.toml"
        config.write_text("[backup]\nkeep = 3\n" + "".join(tables))
        os.environ.update(
            KEYROLL_SECRETS_DIR=str(secrets_dir), KEYROLL_BACKUP_DIR=str(base / "b"), KEYROLL_STATE_DIR=str(base / "st")
        )
        from keyroll.actions.init import initialize
        from keyroll.actions.rotate import rotate
        from keyroll.config.policy import load_policy

        policy = load_policy(str(config))
        initialize(policy)
        totals, step_samples = [], {step: [] for step in STEPS}
        count = args.roles + args.users
        for _ in range(args.runs):
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                report = rotate(policy, ["all"])
            totals.append(time.perf_counter() - started)
            assert report.exit_code == 0, [o.message for o in report.outcomes if not o.ok][:3]
            for step in STEPS:
                step_samples[step].append(report.timings.get(step, 0.0))
        # Spot-check that the services really took the new values.
        sample = report.outcomes[0].name
        value = (secrets_dir / sample).read_text()
        assert pg.login_ok(sample.replace("pg_", "bench_role_"), value) if sample.startswith("pg_") else True
        total = statistics.median(totals)
        print(
            f"{count} secrets ({args.roles} PostgreSQL roles, {args.users} Redis ACL users), median of {args.runs} runs"
        )
        print(f"total {total:.2f}s, {total / count * 1000:.1f} ms per secret")
        print(f"{'step':10} {'total':>8} {'per secret':>11}")
        for step in STEPS:
            median = statistics.median(step_samples[step])
            print(f"{step:10} {median:7.3f}s {median / count * 1000:9.2f}ms")


if __name__ == "__main__":
    main()
