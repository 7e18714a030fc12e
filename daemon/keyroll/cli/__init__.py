"""Command line: argument parsing, dispatch and rendering.  No logic lives here.

Heavy libraries (rich, psycopg, redis, apprise, apscheduler) are imported only
by the commands that need them, so that `keyroll status` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from keyroll import __version__
from keyroll.errors import EXIT_FAILURE, EXIT_USAGE, KeyrollError

# Commands that log events (the others print their results; -v turns logging on for all).
_LOGGING_COMMANDS = ("run", "daemon", "notify", "bundle", "menu")
# Commands that never change anything nor make a value (keyroll.hardening).
_READ_ONLY_COMMANDS = ("status", "validate", "history", "list-backups", "config")


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized without importing shutil (argparse builds one
    for every argument it adds, even when no help is printed)."""

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
        except (ValueError, OSError):
            columns = 80
        super().__init__(prog, width=max(columns - 2, 40))


class _Parser(argparse.ArgumentParser):
    # Set by main(): a usage error then also gets the JSON envelope on stdout.
    json_requested = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        if _Parser.json_requested:
            from keyroll.cli.output import emit_json

            emit_json("", EXIT_USAGE, error=message)
        self.print_usage(sys.stderr)
        sys.stderr.write(f"keyroll: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _seconds(text: str) -> float:
    """A --wait value: a finite number of seconds, at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds, 0 or more")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number, 1 or more")
    return int(text)


def _wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another keyroll to finish (default: exit 3 at once)",
    )


def _init(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="regenerate every secret (after a backup)")
    p.add_argument("--import-metadata", metavar="FILE", help="the old tool's JSON metadata (dates per secret)")
    _wait(p)


def _rotate(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="secret names, or `all`")
    p.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    p.add_argument(
        "--emergency", action="store_true", help="no grace period, no window: revoke the old credential at once"
    )
    _wait(p)


def _named(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")
    _wait(p)


def _set(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--allow-weak",
        action="store_true",
        help="store a value that breaks the secret's policy (length, alphabet), with a warning: to adopt a "
        "credential as it is, then rotate it",
    )
    _wait(p)


def _restore(p: argparse.ArgumentParser) -> None:
    p.add_argument("backup", metavar="BACKUP")
    p.add_argument("--dry-run", action="store_true", help="show what would change")
    _wait(p)


def _history(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--limit", type=_positive, default=50, help="show at most this many entries (default 50)")


def _nothing(p: argparse.ArgumentParser) -> None:
    pass


def _notify(p: argparse.ArgumentParser, json_flag: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="notify_command", metavar="ACTION", required=True, prog="keyroll notify")
    actions.add_parser("test", help="send a test notice to every configured URL", parents=[json_flag])
    actions.add_parser("send", help="(internal) send the JSON notice read from stdin; used by run and daemon")


def _bundle(p: argparse.ArgumentParser, json_flag: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True, prog="keyroll bundle")
    q = actions.add_parser("migrate", help="move the directory store into the SOPS bundle", parents=[json_flag])
    q.add_argument("--remove-plaintext", action="store_true", help="delete the plaintext files once verified")
    _wait(q)
    q = actions.add_parser("render", help="write decrypted files (or one .env) for services", parents=[json_flag])
    q.add_argument("directory", nargs="?", metavar="DIR")
    q.add_argument("--format", choices=("files", "env", "kubernetes"), default="files")
    q.add_argument("--encrypt", action="store_true", help="kubernetes: SOPS-encrypt each manifest's data")
    q.add_argument("--no-restart", action="store_true", help="do not restart consumers of changed secrets")
    _wait(q)
    q = actions.add_parser(
        "updatekeys", help="re-encrypt the bundle to the recipients in .sops.yaml", parents=[json_flag]
    )
    _wait(q)


def _kubernetes(p: argparse.ArgumentParser, json_flag: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="kubernetes_command", metavar="ACTION", required=True, prog="keyroll kubernetes")
    q = actions.add_parser(
        "sync", help="apply the store's values to the mapped Kubernetes Secrets", parents=[json_flag]
    )
    q.add_argument("--dry-run", action="store_true", help="show what would change")
    q.add_argument("--restart", action="store_true", help="restart the workloads of the Secrets that changed")
    _wait(q)


def _config(p: argparse.ArgumentParser, json_flag: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="config_command", metavar="ACTION", required=True, prog="keyroll config")
    q = actions.add_parser("generate", help="write a commented starting config", parents=[json_flag])
    q.add_argument("path", nargs="?", metavar="PATH", help="where to write it (default: standard output)")
    q.add_argument("--force", action="store_true", help="overwrite an existing file")
    q = actions.add_parser("validate", help="validate the config (and what it refers to)", parents=[json_flag])
    q.add_argument("--static", action="store_true", help="check the file only: no files, credentials or services")
    actions.add_parser("show", help="print the effective configuration", parents=[json_flag])
    actions.add_parser("schema", help="print the configuration schema as JSON", parents=[json_flag])


def _leaks(p: argparse.ArgumentParser, json_flag: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="leaks_command", metavar="ACTION", required=True, prog="keyroll leaks")
    q = actions.add_parser("scan", help="find managed values in git repositories and folders", parents=[json_flag])
    q.add_argument("paths", nargs="*", metavar="PATH", help="repositories, folders or files (default: .)")
    q.add_argument("--staged", action="store_true", help="only what is about to be committed (a pre-commit hook)")
    q.add_argument("--rotate", action="store_true", help="rotate at once (--emergency) every secret found live")
    q.add_argument("--rewrite-file", metavar="FILE", help="write git filter-repo --replace-text expressions (0600)")
    _wait(q)


# Every command: its help line, and what adds its arguments.  Only the command being
# run gets a parser (building all of them costs more than the interpreter's start-up).
COMMANDS: dict[str, tuple[str, Callable[..., None]]] = {
    "init": ("create every missing secret; adopt existing files", _init),
    "rotate": ("back up, then give the named secrets (or all) new values", _rotate),
    "set": ("store a value read from stdin (never from the command line)", _set),
    "backup": ("take a verified backup of the store", _wait),
    "list-backups": ("list backups, newest first, with their verification", _nothing),
    "restore": ("restore a backup (name or path), after a pre-restore backup", _restore),
    "recover": ("finish or undo whatever a killed keyroll left in flight", _wait),
    "history": ("rotations of one secret (or all), with outcome and time", _history),
    "rollback": ("go back to a secret's previous value, through the transaction", _named),
    "status": ("state, age and next due of every secret", _nothing),
    "validate": ("check every secret and the store; exit 1 on any failure", _nothing),
    "run": ("rotate what is due now, send reminders, then exit (for a systemd timer)", _wait),
    "daemon": ("run the scheduler (systemd Type=notify)", _nothing),
    "notify": ("notifications: `notify test` sends a test notice", _notify),
    "bundle": ("the SOPS bundle: migrate, render DIR, updatekeys", _bundle),
    "config": ("generate, validate, show the configuration, or its schema", _config),
    "kubernetes": ("Kubernetes: `kubernetes sync` publishes the store's values", _kubernetes),
    "menu": ("interactive menu (what a bare `keyroll` opens on a terminal)", _nothing),
    "leaks": ("find managed values in git history and folders: `leaks scan [PATH...]`", _leaks),
}
_NESTED = (_notify, _bundle, _config, _kubernetes, _leaks)


def requested_command(argv: Sequence[str]) -> str | None:
    """The command word in `argv`, if it names one (options before it skipped)."""
    tokens = iter(argv)
    for token in tokens:
        if token == "--config":
            next(tokens, None)
        elif not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with `only`, just that command's part of it."""
    parser = _Parser(
        prog="keyroll",
        description="Keep the credentials of a self-hosted stack fresh, and never lose one.",
        epilog="Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 locked by another keyroll, "
        "75 temporary failure.",
    )
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default: $KEYROLL_CONFIG, then the standard location)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more detail; tracebacks on errors")
    parser.add_argument("--json", action="store_true", help="machine-readable output (a versioned JSON envelope)")
    parser.add_argument("--version", action="version", version=f"keyroll {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog="keyroll")
    json_flag = _Parser(add_help=False)
    json_flag.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
    json_flag.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more detail")
    for name, (help_text, add_arguments) in COMMANDS.items():
        if only is not None and name != only:
            continue
        command = sub.add_parser(name, help=help_text, description=help_text, parents=[json_flag])
        if add_arguments in _NESTED:
            add_arguments(command, json_flag)
        else:
            add_arguments(command)
    return parser


def _setup_logging(verbose: int) -> None:
    """Log to stderr, one event a line; no timestamps under journald ($JOURNAL_STREAM)."""
    import logging

    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("keyroll")
    root.handlers[:] = [handler]
    root.setLevel(level)


def _log_exception(message: str) -> None:
    import logging

    logging.getLogger("keyroll").exception("%s", message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (contract)."""
    os.umask(0o077)
    argv = sys.argv[1:] if argv is None else list(argv)
    _Parser.json_requested = "--json" in argv
    parser = build_parser(requested_command(argv))
    args = parser.parse_args(argv)
    from keyroll.hardening import forbid_core_dumps

    # Before any value is read: no core file may hold one (the read-only commands hold
    # only what the store holds, and skip the 3 ms of ctypes that prctl costs).
    forbid_core_dumps(non_dumpable=args.command not in _READ_ONLY_COMMANDS)
    if args.verbose or args.command in _LOGGING_COMMANDS:
        _setup_logging(args.verbose)
    if args.command is None:
        if sys.stdin.isatty() and sys.stdout.isatty():
            args.command = "menu"
        else:
            parser.print_help()
            return 0
    from keyroll.cli import commands

    try:
        code = commands.dispatch(args)
    except KeyrollError as exc:
        if args.verbose:
            _log_exception(str(exc))
        return commands.report_error(args, str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return commands.report_error(args, "interrupted", 130)
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as exc:
        if args.verbose:
            _log_exception("unexpected error")
        name = type(exc).__name__
        return commands.report_error(args, f"unexpected {name} (run with -v for details)", EXIT_FAILURE)
    return _after_deferred_stop(code)


def _after_deferred_stop(code: int) -> int:
    """Say that a write stopped early for SIGTERM/SIGINT (the report above lists what
    was not started, and the exit code is 75 if anything was: retry later)."""
    stopping = sys.modules.get("keyroll.stopping")  # imported by every write; not loaded for reads
    if stopping is not None and stopping.received() is not None:
        sys.stderr.write("keyroll: stopped at a safe point: nothing is left half-done\n")
    return code
