"""What keeps values from leaving keyroll's process by the side doors: a core file,
and the environment of the programs it runs.

keyroll holds the old and the new value of a secret in memory during a rotation,
so it makes itself non-dumpable and sets its core limit to 0 (a SIGQUIT or a
crash then leaves no core file holding them).  The programs it runs (a command
target, `command:` restarts and health checks) get a minimal environment: what a
program needs to run at all, the KEYROLL_* variables keyroll documents for them,
and the `env` entries their configuration names; never keyroll's own credentials
($CREDENTIALS_DIRECTORY, $SOPS_AGE_KEY*, libpq's $PG*, ...).
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from collections.abc import Iterable, Mapping

# Inherited from keyroll's environment when set; everything else is dropped.
PASSED = ("PATH", "HOME", "LANG", "LC_ALL")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
# The folder programs run in, never keyroll's own current folder: run from a folder
# another user can write, `python3 -c`, `python3 -m`, `sh -c ./x`, node... would load
# her files as root.  A relative program path is relative to it.
PROGRAM_CWD = "/"
_PR_SET_DUMPABLE = 4


def forbid_core_dumps(non_dumpable: bool = True) -> None:
    """Set this process's (soft) core limit to 0 and, with `non_dumpable` on Linux,
    make it non-dumpable (no core file even through a core_pattern pipe, no ptrace
    by other processes of the same user).  The hard limit stays as it is, so that a
    program keyroll runs keeps its own choice.  Best effort: a system that refuses
    either is left as it is."""
    import resource

    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    if non_dumpable and sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def env_entry_problem(entry: str) -> str | None:
    """Why an `env` entry is not `NAME=value`, or None."""
    name, sep, _ = entry.partition("=")
    if not sep:  # (not quoted: an entry without "=" may be a value written alone)
        return "an entry without '=': write NAME=value (NAME: letters, digits and _)"
    if not ENV_NAME.match(name):
        return f"{name!r}: write NAME=value (NAME: letters, digits and _)"
    if name.startswith("KEYROLL_"):
        return f"{name}: the KEYROLL_* variables are keyroll's own"
    return None


def parse_env_entries(entries: Iterable[str]) -> dict[str, str]:
    """`["NAME=value", ...]` -> {NAME: value} (entries already checked)."""
    return dict(entry.split("=", 1) for entry in entries)


@functools.cache
def own_home() -> str | None:
    """The home folder of the user keyroll runs as (None when it has no account); looked
    up once per process."""
    import os
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_dir or None
    except KeyError:
        return None


def program_env(parent: Mapping[str, str], *extras: Mapping[str, str]) -> dict[str, str]:
    """The environment of a program keyroll runs: PATH, LANG and LC_ALL from `parent`
    (PATH defaults to the usual system folders), HOME the running user's own (from
    the account database, else `parent`'s), then each of `extras` in order (the
    configured `env` entries, then the KEYROLL_* variables)."""
    env = {name: parent[name] for name in PASSED if parent.get(name)}
    env.setdefault("PATH", DEFAULT_PATH)
    if (home := own_home()) is not None:
        env["HOME"] = home  # (never an inherited one: `sudo -E` keeps the admin's, python3 loads ~/.local)
    for extra in extras:
        env.update(extra)
    return env
