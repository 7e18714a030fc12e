"""Command line: argument parsing, dispatch and rendering.  No logic lives here.

Heavy libraries (rich, psycopg, redis, apprise, apscheduler) are imported only
by the commands that need them, so that `keyroll status` starts fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from keyroll import __version__
from keyroll.errors import EXIT_FAILURE, EXIT_USAGE, KeyrollError

log = logging.getLogger("keyroll")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"keyroll: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another keyroll to finish (default: exit 3 at once)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="keyroll",
        description="Keep the credentials of a self-hosted stack fresh, and never lose one.",
        epilog="Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 locked by another keyroll, 75 temporary failure.",
    )
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default: $KEYROLL_CONFIG, then the standard location)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more detail; tracebacks on errors")
    parser.add_argument("--json", action="store_true", help="machine-readable output (a versioned JSON envelope)")
    parser.add_argument("--version", action="version", version=f"keyroll {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    json_flag = _Parser(add_help=False)
    json_flag.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[json_flag])

    p = command("init", "create every missing secret; adopt existing files")
    p.add_argument("--force", action="store_true", help="regenerate every secret (after a backup)")
    p.add_argument("--import-metadata", metavar="FILE", help="the old tool's JSON metadata (dates per secret)")
    _wait(p)

    p = command("rotate", "back up, then give the named secrets (or all) new values")
    p.add_argument("names", nargs="*", metavar="NAME", help="secret names, or `all`")
    p.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    p.add_argument(
        "--emergency", action="store_true", help="no grace period, no window: revoke the old credential at once"
    )
    _wait(p)

    p = command("set", "store a value read from stdin (never from the command line)")
    p.add_argument("name", metavar="NAME")
    _wait(p)

    p = command("backup", "take a verified backup of the store")
    _wait(p)
    command("list-backups", "list backups, newest first, with their verification")
    p = command("restore", "restore a backup (name or path), after a pre-restore backup")
    p.add_argument("backup", metavar="BACKUP")
    p.add_argument("--dry-run", action="store_true", help="show what would change")
    _wait(p)

    p = command("recover", "finish or undo whatever a killed keyroll left in flight")
    _wait(p)
    p = command("history", "rotations of one secret (or all), with outcome and time")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--limit", type=int, default=50, help="show at most this many entries (default 50)")
    p = command("rollback", "go back to a secret's previous value, through the transaction")
    p.add_argument("name", metavar="NAME")
    _wait(p)

    command("status", "state, age and next due of every secret")
    command("validate", "check every secret and the store; exit 1 on any failure")

    p = command("run", "rotate what is due now, send reminders, then exit (for a systemd timer)")
    _wait(p)
    command("daemon", "run the scheduler (systemd Type=notify)")
    p = command("notify", "notifications")
    notify_sub = p.add_subparsers(dest="notify_command", metavar="ACTION", required=True)
    notify_sub.add_parser("test", help="send a test notice to every configured URL", parents=[json_flag])
    notify_sub.add_parser("send", help="(internal) send the JSON notice read from stdin; used by run and daemon")

    p = command("bundle", "the SOPS bundle")
    bundle_sub = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    q = bundle_sub.add_parser("migrate", help="move the directory store into the SOPS bundle", parents=[json_flag])
    q.add_argument("--remove-plaintext", action="store_true", help="delete the plaintext files once verified")
    _wait(q)
    q = bundle_sub.add_parser("render", help="write decrypted files (or one .env) for services", parents=[json_flag])
    q.add_argument("directory", nargs="?", metavar="DIR")
    q.add_argument("--format", choices=("files", "env"), default="files")
    q.add_argument("--no-restart", action="store_true", help="do not restart consumers of changed secrets")
    _wait(q)
    q = bundle_sub.add_parser(
        "updatekeys", help="re-encrypt the bundle to the recipients in .sops.yaml", parents=[json_flag]
    )
    _wait(q)

    p = command("config", "generate, validate or show the configuration")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    q = config_sub.add_parser("generate", help="write a commented starting config", parents=[json_flag])
    q.add_argument("path", nargs="?", metavar="PATH", help="where to write it (default: standard output)")
    q.add_argument("--force", action="store_true", help="overwrite an existing file")
    q = config_sub.add_parser("validate", help="validate the config (and what it refers to)", parents=[json_flag])
    q.add_argument("--static", action="store_true", help="check the file only: no files, credentials or services")
    config_sub.add_parser("show", help="print the effective configuration", parents=[json_flag])
    config_sub.add_parser("schema", help="print the configuration schema as JSON", parents=[json_flag])

    command("menu", "interactive menu (what a bare `keyroll` opens on a terminal)")
    return parser


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("keyroll")
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (contract)."""
    os.umask(0o077)
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if args.command is None:
        if sys.stdin.isatty() and sys.stdout.isatty():
            args.command = "menu"
        else:
            parser.print_help()
            return 0
    from keyroll.cli import commands

    try:
        return commands.dispatch(args)
    except KeyrollError as exc:
        if args.verbose:
            log.exception("%s", exc)
        return commands.report_error(args, str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return commands.report_error(args, "interrupted", 130)
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as exc:
        if args.verbose:
            log.exception("unexpected error")
        name = type(exc).__name__
        return commands.report_error(args, f"unexpected {name} (run with -v for details)", EXIT_FAILURE)
