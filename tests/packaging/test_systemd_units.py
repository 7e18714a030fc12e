"""The systemd units in systemd/, checked with systemd-analyze (systemd 252 here).

Checked here:
- `systemd-analyze verify` passes on each unit with an EMPTY stderr: verify only
  warns about a bad value and still exits 0, so the exit code alone proves
  nothing (a test below shows that with a deliberately bad unit).  verify also
  insists that every Exec* binary exists, so the units are verified from a
  temporary copy in which /usr/bin/keyroll is replaced by a real executable (the
  venv's keyroll, else /bin/true); nothing else is changed.  SYSTEMD_LOG_LEVEL is
  removed from the environment so that verify logs at its default level.
- `systemd-analyze security --offline=yes` scores both services at or under 4.5.
- `systemd-analyze calendar` accepts the timer's OnCalendar.
- the system-call filter (nixpkgs' ACME filter: @system-service, ~@privileged
  @resources, @chown) allows chown but not setuid, mount or setrlimit, expanded
  from `systemd-analyze syscall-filter` with systemd's order semantics; and
  every system call keyroll makes for the commands the units and an admin run
  (init, rotate with a command target and a group-owned file, status,
  validate, backup, run, the daemon up to a SIGTERM), traced with strace -f,
  is one the filter allows.
- the [Service] hardening of keyroll.service and keyroll-rotate.service is the
  same, holds what the design asks for, and leaves out what would stop keyroll
  from restarting other units (systemctl over AF_UNIX) or reaching its services.
- the commands the units run (`keyroll daemon`, `keyroll run`) exist in the CLI.

Not checked here: the units under a running systemd (PID 1 on these machines is
not systemd): start-up with Type=notify, the watchdog, LoadCredential, and
`systemctl try-restart` from inside the sandbox are exercised by the NixOS VM
test, nix/tests/vm.nix, which needs Nix, nixpkgs and KVM.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "systemd"
UNITS = ("keyroll.service", "keyroll-rotate.service", "keyroll-rotate.timer")
SERVICES = ("keyroll.service", "keyroll-rotate.service")
MAX_EXPOSURE = 4.5

# [Service] keys that differ between the daemon and the oneshot on purpose.
MODE_KEYS = {
    "Type",
    "ExecStart",
    "ExecReload",
    "WatchdogSec",
    "WatchdogSignal",
    "Restart",
    "RestartSec",
    "RestartPreventExitStatus",
    "NotifyAccess",
    "TimeoutStopSec",
    "TimeoutStartSec",
}


def require_tool(name: str) -> str:
    """The tool's path; skip when it is missing, but fail under CI=true."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not installed (scripts/setup --test installs it)")
    pytest.skip(f"{name} is not installed")


def analyze_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SYSTEMD_LOG_LEVEL", None)
    env.pop("SYSTEMD_LOG_TARGET", None)
    return env


def real_keyroll() -> str:
    """An executable to stand in for /usr/bin/keyroll."""
    candidate = Path(sys.executable).parent / "keyroll"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("keyroll") or "/bin/true"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value given, in order (systemd keys repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit((UNIT_DIR / name).read_text())


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key)
    assert values, f"{key}= is missing"
    assert len(values) == 1, f"{key}= is given {len(values)} times"
    return values[0]


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The units with /usr/bin/keyroll replaced by an executable that exists
    (systemd-analyze verify checks that ExecStart's binary is there)."""
    exe = real_keyroll()
    for name in UNITS:
        text = (UNIT_DIR / name).read_text()
        (tmp_path / name).write_text(text.replace("/usr/bin/keyroll", exe))
    return tmp_path


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("systemd-analyze")
    return subprocess.run(
        [tool, "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        env=analyze_env(),
        cwd=path.parent,
        timeout=120,
    )


def exposure(path: Path) -> float:
    tool = require_tool("systemd-analyze")
    done = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        env=analyze_env(),
        cwd=path.parent,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    match = re.search(r"Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?)", done.stdout)
    assert match, f"no 'Overall exposure level' line in:\n{done.stdout[-2000:]}"
    return float(match.group(1))


def test_units_exist() -> None:
    for name in UNITS:
        assert (UNIT_DIR / name).is_file(), name


@pytest.mark.parametrize("name", UNITS)
def test_verify_passes_with_empty_stderr(unit_copy: Path, name: str) -> None:
    done = verify(unit_copy / name)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", f"systemd-analyze verify {name} warned:\n{done.stderr}"


def test_verify_warns_on_bad_values_but_exits_zero(unit_copy: Path) -> None:
    """Why the tests demand an empty stderr: a bad value is only a warning."""
    path = unit_copy / "keyroll.service"
    path.write_text(path.read_text().replace("ProtectSystem=strict", "ProtectSystem=bogus"))
    done = verify(path)
    assert done.returncode == 0
    assert "bogus" in done.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_security_exposure_at_most_4_5(unit_copy: Path, name: str) -> None:
    score = exposure(unit_copy / name)
    print(f"systemd-analyze security --offline=yes {name}: overall exposure {score}")
    assert score <= MAX_EXPOSURE


def test_timer_calendar_is_accepted() -> None:
    tool = require_tool("systemd-analyze")
    timer = unit("keyroll-rotate.timer")["Timer"]
    calendar = one(timer, "OnCalendar")
    assert calendar == "daily"
    done = subprocess.run([tool, "calendar", calendar], capture_output=True, text=True, env=analyze_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Next elapse:" in done.stdout
    assert one(timer, "Persistent") == "true"
    span = subprocess.run(
        [tool, "timespan", one(timer, "RandomizedDelaySec")],
        capture_output=True,
        text=True,
        env=analyze_env(),
        timeout=60,
    )
    assert span.returncode == 0, span.stderr


def test_daemon_unit_contract() -> None:
    daemon = unit("keyroll.service")
    service = daemon["Service"]
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert one(service, "ExecStart") == "/usr/bin/keyroll daemon"
    assert one(service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(service, "Restart") == "on-failure"
    assert re.fullmatch(r"[0-9]+(s|min)?", one(service, "WatchdogSec"))
    assert one(daemon["Install"], "WantedBy") == "multi-user.target"


def test_the_watchdog_kills_without_a_core_dump() -> None:
    """A core dump of keyroll holds plaintext values: none, whatever kills it."""
    daemon = unit("keyroll.service")["Service"]
    assert one(daemon, "WatchdogSignal") == "SIGKILL"
    for name in SERVICES:
        assert one(unit(name)["Service"], "LimitCORE") == "0", name


def test_oneshot_and_timer_contract() -> None:
    rotate = unit("keyroll-rotate.service")["Service"]
    assert one(rotate, "Type") == "oneshot"
    assert one(rotate, "ExecStart") == "/usr/bin/keyroll run"
    assert "WatchdogSec" not in rotate
    timer = unit("keyroll-rotate.timer")
    assert one(timer["Install"], "WantedBy") == "timers.target"


@pytest.mark.parametrize("name", ["keyroll.service", "keyroll-rotate.service"])
def test_a_stop_reaches_keyroll_alone(name: str) -> None:
    """SIGTERM to keyroll only, so the command target or restart it runs completes the
    step in progress (tests/integration/test_cli_signals.py shows what keyroll does)."""
    assert one(unit(name)["Service"], "KillMode") == "mixed"


def test_the_two_modes_conflict() -> None:
    daemon_conflicts = " ".join(unit("keyroll.service")["Unit"].get("Conflicts", [])).split()
    timer_conflicts = " ".join(unit("keyroll-rotate.timer")["Unit"].get("Conflicts", [])).split()
    assert "keyroll-rotate.timer" in daemon_conflicts
    assert "keyroll.service" in timer_conflicts


def test_hardening_is_the_same_in_both_services() -> None:
    daemon = {k: v for k, v in unit("keyroll.service")["Service"].items() if k not in MODE_KEYS}
    rotate = {k: v for k, v in unit("keyroll-rotate.service")["Service"].items() if k not in MODE_KEYS}
    assert daemon == rotate


@pytest.mark.parametrize("name", SERVICES)
def test_hardening_values(name: str) -> None:
    service = unit(name)["Service"]
    expected = {
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/keyroll",
        "StateDirectory": "keyroll",
        "ConfigurationDirectory": "keyroll",
        "UMask": "0077",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "DevicePolicy": "closed",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LimitCORE": "0",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "CAP_CHOWN CAP_FOWNER",
    }
    for key, value in expected.items():
        assert one(service, key) == value, key
    # nixpkgs' ACME filter: later allow lists add back what a ~deny list removed.
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources", "@chown"]
    families = one(service, "RestrictAddressFamilies").split()
    # AF_UNIX: systemctl try-restart talks to PID 1; AF_INET(6): databases, notices.
    assert set(families) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # These would stop keyroll from restarting units or reaching its services.
    for forbidden in ("PrivateUsers", "PrivateNetwork", "IPAddressDeny", "User", "DynamicUser", "InaccessiblePaths"):
        assert forbidden not in service, f"{forbidden}= must not be set (see the unit's comments)"
    # Credentials are shown as commented examples only; the NixOS module adds real ones.
    assert "LoadCredential" not in service
    text = (UNIT_DIR / name).read_text()
    for credential in ("notify-urls", "pg-admin", "age-key"):
        assert f"#LoadCredential={credential}:" in text


@pytest.mark.parametrize("command", ["daemon", "run"])
def test_unit_commands_exist_in_the_cli(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "keyroll", command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert command in done.stdout


def test_credential_options_in_the_comments_exist_in_the_schema() -> None:
    import json

    done = subprocess.run(
        [sys.executable, "-m", "keyroll", "--json", "config", "schema"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)["data"]
    assert "urls_file" in schema["notify"]["options"]
    assert "age_key_file" in schema["store"]["options"]
    for kind in ("postgres", "redis"):
        assert "admin_password_file" in schema[f"targets.<name> (type = {kind})"]["options"]


def syscall_groups() -> dict[str, list[str]]:
    """`systemd-analyze syscall-filter`: every @group and its entries (system calls or @groups)."""
    tool = require_tool("systemd-analyze")
    done = subprocess.run(
        [tool, "syscall-filter", "--no-pager"], capture_output=True, text=True, env=analyze_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in done.stdout.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.split()[0], [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.split()[0])
    return groups


def expand(entries: list[str], groups: dict[str, list[str]]) -> set[str]:
    calls: set[str] = set()
    for entry in entries:
        calls |= expand(groups[entry], groups) if entry.startswith("@") else {entry}
    return calls


def filter_allows(values: list[str], groups: dict[str, list[str]]) -> set[str]:
    """What a list of SystemCallFilter= lines allows, in systemd's order semantics: the first (an
    allow list) sets the list, a later ~list removes from it, a later allow list adds back."""
    allowed: set[str] = set()
    for value in values:
        if value.startswith("~"):
            allowed -= expand(value[1:].split(), groups)
        else:
            allowed |= expand(value.split(), groups)
    return allowed


def test_the_filter_denies_privileged_calls_but_allows_chown(unit_copy: Path) -> None:
    # systemd's own reading of the three lines: no @resources, and of @privileged only chown.
    tool = require_tool("systemd-analyze")
    done = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(unit_copy / "keyroll.service")],
        capture_output=True,
        text=True,
        env=analyze_env(),
        cwd=unit_copy,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"SystemCallFilter=~@resources .*@resources is not included", done.stdout), done.stdout
    assert re.search(r"SystemCallFilter=~@privileged .*\(e\.g\. [a-z0-9]*chown[a-z0-9]* is allowed\)", done.stdout)
    groups = syscall_groups()
    allowed = filter_allows(unit("keyroll.service")["Service"]["SystemCallFilter"], groups)
    assert {"fchown", "fchownat", "chown"} <= allowed
    assert not {"setuid", "setgroups", "mount", "setrlimit", "setpriority", "sched_setaffinity"} & allowed
    # Order matters: with @chown first, the deny list would remove it again.
    reordered = filter_allows(["@system-service", "@chown", "~@privileged @resources"], groups)
    assert "fchown" not in reordered


def test_keyroll_uses_no_system_call_the_filter_denies(tmp_path: Path) -> None:
    """Every system call keyroll makes (and the threads and children it starts) for the
    commands the units and an admin run, traced with strace, is one the units' filter
    allows: a denied one would fail with EPERM (SystemCallErrorNumber=) under systemd."""
    strace = require_tool("strace")
    groups = syscall_groups()
    # systemd always allows these besides the list (systemd.exec(5), SystemCallFilter=).
    implicit = {"execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn", "restart_syscall"}
    allowed = filter_allows(unit("keyroll.service")["Service"]["SystemCallFilter"], groups) | implicit
    config = tmp_path / "keyroll.toml"
    # A command target (a child process, its stdin) and a secret given to another group (fchown).
    group = grp.getgrgid(os.getgid()).gr_name
    config.write_text(
        f'[paths]\nsecrets_dir = "{tmp_path}/secrets"\nbackup_dir = "{tmp_path}/backups"\n'
        f'state_dir = "{tmp_path}/state"\n'
        '[targets.app]\ntype = "command"\nargv = ["/bin/sh", "-c", "cat > /dev/null"]\n'
        f'[secrets.api]\nkind = "api_key"\ntarget = "app"\n[secrets.db]\nkind = "password"\ngroup = "{group}"\n'
        'mode = "0640"\n'
    )
    exe = real_keyroll()
    if exe == "/bin/true":
        pytest.skip("no keyroll executable next to the test's Python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYROLL_", "NOTIFY_", "WATCHDOG_"))}
    traces: list[Path] = []
    commands = [["init"], ["rotate", "all"], ["status"], ["validate"], ["backup"], ["run"], ["list-backups"]]
    for number, command in enumerate(commands):
        trace = tmp_path / f"trace.{number}"
        traces.append(trace)
        done = subprocess.run(
            [strace, "-f", "-qq", "-o", str(trace), exe, "--config", str(config), *command],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if done.returncode != 0 and "ptrace" in done.stderr:
            pytest.skip(f"strace cannot trace here: {done.stderr.strip()}")
        assert done.returncode == 0, f"keyroll {' '.join(command)}: {done.stdout}{done.stderr}"
    # The daemon: start-up, a cycle, and a stop by SIGTERM.
    trace = tmp_path / "trace.daemon"
    traces.append(trace)
    daemon = subprocess.Popen(
        [strace, "-f", "-qq", "-o", str(trace), exe, "--config", str(config), "daemon"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        time.sleep(3)
        # SIGTERM to keyroll itself (strace's child), as systemctl stop sends it.
        children = Path(f"/proc/{daemon.pid}/task/{daemon.pid}/children").read_text().split()
        assert children, "keyroll daemon did not start under strace"
        os.kill(int(children[0]), signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    used: set[str] = set()
    assert any('execve("/bin/sh"' in path.read_text() for path in traces), "the command target never ran"
    for path in traces:
        for line in path.read_text().splitlines():
            match = re.match(r"\d+\s+([a-z_0-9]+)\(", line)
            if match:
                used.add(match.group(1))
    # The trace is real: files written and given to a group, the target program started.
    assert {"fchown", "openat", "execve"} <= used and {"clone", "clone3", "vfork"} & used, sorted(used)
    assert used - allowed == set(), f"denied by the units' SystemCallFilter=: {sorted(used - allowed)}"
