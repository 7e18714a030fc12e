"""`keyroll rotate all` publishing to Kubernetes: 100 secrets mapped into 10
Kubernetes Secrets, consumed by 20 Deployments, against the in-process fake API
server of tests/kube_fake.py (no real API server can run on these machines).
Reports the API calls by kind, the rollouts started (one per Deployment is the
goal: 20) and the time per step.

    .venv/bin/python bench/bench_kubernetes.py [--rollout-seconds 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.kube_fake import serve  # noqa: E402

SECRETS, KUBE_SECRETS, DEPLOYMENTS = 100, 10, 20


def config(kubeconfig: Path, tmp: Path) -> str:
    lines = [
        f'[paths]\nsecrets_dir = "{tmp}/s"\nbackup_dir = "{tmp}/b"\nstate_dir = "{tmp}/st"\n',
        f'[kubernetes]\nkubeconfig = "{kubeconfig}"\nnamespace = "bench"\nrollout_timeout = "5m"\n',
    ]
    for i in range(SECRETS):
        workloads = sorted(
            {f"kubernetes:deployment/app-{i % DEPLOYMENTS}", f"kubernetes:deployment/app-{(i * 7) % DEPLOYMENTS}"}
        )
        lines.append(
            f'[secrets.s{i:03}]\nkubernetes = ["secret-{i % KUBE_SECRETS}/key-{i:03}"]\n'
            f"restart = {json.dumps(workloads)}\n"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rollout-seconds", type=float, default=0.5, help="how long the fake takes per rollout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with serve(tmp / "kube") as (fake, kubeconfig):
            fake.rollout_seconds = args.rollout_seconds
            for d in range(DEPLOYMENTS):
                fake.add_workload("deployment", "bench", f"app-{d}", replicas=3)
            cfg = tmp / "config.toml"
            cfg.write_text(config(kubeconfig, tmp))
            env = {**os.environ, "HOME": str(tmp)}
            keyroll = [sys.executable, "-m", "keyroll", "--config", str(cfg)]
            subprocess.run([*keyroll, "init"], env=env, stdout=subprocess.DEVNULL, check=True)
            fake.calls.clear()
            before = sum(fake.rollouts.values())
            started = time.perf_counter()
            done = subprocess.run([*keyroll, "rotate", "all", "--json"], env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - started
            if done.returncode != 0:
                sys.exit(f"rotate all failed ({done.returncode}): {done.stderr[-500:]}")
            report = json.loads(done.stdout)["data"]
            calls = Counter(
                f"{method} {'secrets' if '/secrets/' in path else 'deployments'}" for method, path in fake.calls
            )
            rollouts = sum(fake.rollouts.values()) - before
    print(f"rotate all: {SECRETS} secrets -> {KUBE_SECRETS} Secrets, {DEPLOYMENTS} deployments")
    print(f"exit {done.returncode}, {elapsed:.2f} s wall (process start included)")
    print(f"API calls: {sum(calls.values())} ({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))})")
    print(f"rollouts started: {rollouts}")
    timings = report.get("timings") or (report.get("report") or {}).get("timings") or {}
    for step, seconds in timings.items():
        print(f"  {step:20} {seconds * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
