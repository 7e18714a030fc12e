"""One function per command: call the action, render its result, return the exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from keyroll.cli.output import emit_json, line, table
from keyroll.config.policy import Policy, load_policy
from keyroll.errors import EXIT_FAILURE, EXIT_OK, UsageError

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from typing import Any

    from keyroll.actions.validate import ValidationReport

STATE_STYLES = {
    "OK": "green",
    "MISSING": "red",
    "WRONG LENGTH": "yellow",
    "BAD VALUE": "red",
    "MODIFIED": "red",
    "BAD MODE": "yellow",
    "IN FLIGHT": "magenta",
    "UNREADABLE": "red",
    "FAILED": "red",
    "UNRECORDED": "yellow",
    "ok": "green",
    "warn": "yellow",
    "fail": "red",
}


def report_error(args: argparse.Namespace, message: str, code: int) -> int:
    """One line on stderr (and the envelope on stdout with --json)."""
    if getattr(args, "json", False):
        emit_json(_command_name(args), code, error=message)
    sys.stderr.write(f"keyroll: error: {message}\n")
    return code


def _command_name(args: argparse.Namespace) -> str:
    parts = [args.command or ""]
    for attr in ("config_command", "bundle_command", "notify_command", "kubernetes_command", "leaks_command"):
        if getattr(args, attr, None):
            parts.append(getattr(args, attr))
    return " ".join(parts)


def _policy(args: argparse.Namespace) -> Policy:
    """The policy for this invocation, loaded once."""
    policy: Policy | None = getattr(args, "loaded_policy", None)
    if policy is None:
        policy = args.loaded_policy = load_policy(args.config)
    return policy


def dispatch(args: argparse.Namespace) -> int:
    """Run the command; after a writing one, rewrite the metrics file."""
    import time

    handler = HANDLERS[args.command]
    started, code = time.time(), EXIT_FAILURE
    try:
        code = handler(args)
    except BaseException as exc:
        code = getattr(exc, "exit_code", 130 if isinstance(exc, KeyboardInterrupt) else EXIT_FAILURE)
        raise
    finally:
        _metrics_after(args, started, code)
    return code


def _metrics_after(args: argparse.Namespace, started: float, code: int) -> None:
    """A writing session noted itself in keyroll.metrics (not loaded by reads): rewrite
    the file; a problem doing so is a warning, never the exit code."""
    metrics = sys.modules.get("keyroll.metrics")
    problem = metrics.after_run(_command_name(args), started, code) if metrics is not None else None
    if problem:
        sys.stderr.write(f"keyroll: warning: {problem}\n")


# --- transaction reports ----------------------------------------------------------------


def _render_tx(args: argparse.Namespace, report: Any, title: str, extra: dict[str, Any] | None = None) -> int:
    """Print a TxReport: recovery first, then every outcome, then store-only guidance."""
    from keyroll.guidance import FOOTER as GUIDANCE_FOOTER
    from keyroll.guidance import store_only_guidance

    code: int = report.exit_code
    if report.recovery is not None:
        code = _combine(code, report.recovery.exit_code)
    if args.json:
        emit_json(_command_name(args), code, {**(extra or {}), "report": report})
        return code
    recovery = report.recovery
    if recovery is not None:
        _render_recovery(recovery)
    if report.backup:
        line(f"backup: {report.backup}")
    if not report.outcomes:
        line(f"{title}: nothing to do")
    policy = _policy_or_none(args)
    guidance: list[str] = []
    for outcome in report.outcomes:
        detail = f" ({outcome.message})" if outcome.message else ""
        where = f" -> {outcome.target}" if outcome.target else ""
        restarted = f"; restarted {', '.join(outcome.restarted)}" if outcome.restarted and outcome.ok else ""
        changed_in_store_only = outcome.ok and outcome.store_only and outcome.status != "adopted"
        only = " in the store only" if changed_in_store_only else ""
        line(f"{outcome.name}: {outcome.status}{only}{where}{restarted}{detail}")
        if changed_in_store_only and outcome.op != "init" and policy and outcome.name in policy.secrets:
            guidance.append(f"  {outcome.name}: {store_only_guidance(policy.secrets[outcome.name])}")
    if guidance:
        line()
        if all(o.op == "set" for o in report.outcomes):  # often the value the services already have
            line("Stored only: if the services do not have this value yet, do this:")
        else:
            line("Changed in the store only: the services keep the old values until you do this:")
        for text in guidance:
            line(text)
        line(GUIDANCE_FOOTER)
    ok = sum(1 for o in report.outcomes if o.ok)
    failed = len(report.outcomes) - ok
    if report.outcomes:
        line(f"{title}: {ok} done, {failed} not done")
    return code


def _render_recovery(recovery: Any) -> None:
    if recovery.removed_temp:
        line(f"recover: removed {len(recovery.removed_temp)} temp file(s) left by an interrupted keyroll")
    for outcome in recovery.outcomes:
        line(f"recover: {outcome.name}: {outcome.status} ({outcome.message})")
    for name in recovery.retired:
        line(f"recover: {name}: old credential retired")


def _listing(label: str, names: list[str]) -> None:
    """`label: a, b, c` when there are names (the first 20, then how many more);
    nothing otherwise."""
    if names:
        from keyroll.text import shown_names

        line(f"{label}: {shown_names(names, 20)}")


def _combine(*codes: int) -> int:
    from keyroll.errors import combined_exit_code

    return combined_exit_code(codes)


def _policy_or_none(args: argparse.Namespace) -> Policy | None:
    try:
        return _policy(args)
    except Exception:
        return None


# --- commands ---------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from keyroll.actions.init import initialize

    report = initialize(
        _policy(args),
        force=args.force,
        import_metadata=Path(args.import_metadata) if args.import_metadata else None,
        wait=args.wait,
    )
    if args.json:
        emit_json("init", report.exit_code, report)
        return report.exit_code
    for name in report.adopted:
        line(f"{name}: adopted the existing file")
    policy = _policy(args)
    for name in report.repaired:
        line(f"{name}: mode {policy.secrets[name].mode:04o} and owner set as the policy says")
    for warning in report.warnings:
        line(f"warning: {warning}")
    recovery = report.tx.recovery
    if report.tx.outcomes or (recovery and (recovery.outcomes or recovery.removed_temp or recovery.retired)):
        code = _render_tx(args, report.tx, "init")
        if report.adopted or report.already:
            line(f"init: {len(report.adopted)} adopted as they were, {len(report.already)} already recorded")
        return code
    if report.already and not (report.adopted or report.repaired):
        line(f"already initialized: {len(report.already)} secrets recorded, nothing to do")
    return report.exit_code


def cmd_rotate(args: argparse.Namespace) -> int:
    if not args.names:
        raise UsageError("name the secrets to rotate, or `all`")
    if "all" in args.names and len(args.names) > 1:
        raise UsageError("`all` cannot be combined with secret names")
    policy = _policy(args)
    if args.dry_run:
        from keyroll.actions.rotate import gitops_plan, plan

        items = plan(policy, args.names, emergency=args.emergency)
        publish = gitops_plan(policy)
        if args.json:
            emit_json("rotate", EXIT_OK, {"dry_run": True, "plan": items, "gitops": publish})
            return EXIT_OK
        line("Plan (dry run, nothing changes): a backup first, then in this order:")
        for item in items:
            line(f"{item.order:3}. {item.name}")
            if item.target:
                line(f"       target:  {item.target}: apply, then test a fresh login")
            for request in item.requests:
                line(f"       request: {request}")
            for key in item.kubernetes:
                line(f"       publish: {key}")
            for restart in item.restart:
                line(f"       restart: {restart}")
            for check in item.health:
                line(f"       health:  {check}")
            if item.store_only:
                line(
                    f"       store only: {', '.join(item.services) or 'its services'} will need the new value and a restart"
                )
            for note in item.notes:
                line(f"       note:    {note}")
        if publish is not None:
            line("Then one commit of the encrypted files, before consumers restart:")
            for path in publish.files:
                line(f"       commit:  {path}")
            line(f"       {f'push to {publish.push}' if publish.push else 'no push (gitops.push is empty)'}")
            if publish.problem:
                line(f"       note:    {publish.problem}")
        if policy.uses_kubernetes():
            from keyroll.kube.publish import plan_lines

            line("In Kubernetes, once for the whole command:")
            for text in plan_lines(policy, [item.name for item in items]):
                line(f"       {text}")
        return EXIT_OK
    from keyroll.actions.rotate import rotate

    report = rotate(policy, args.names, emergency=args.emergency, wait=args.wait)
    return _render_tx(args, report, "rotate")


def _read_value(name: str, limit: int) -> str:
    """The value for `set`: hidden prompt (twice) on a terminal, else stdin, of which
    no more than `limit` bytes and a line ending are read (UsageError beyond)."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"New value for {name}: ")
        if getpass.getpass("Again: ") != first:
            raise UsageError("the two values differ; nothing was changed")
        value = first
    else:
        from keyroll.fsutil import read_at_most

        most = limit + 3  # (the value, "\r\n", and one byte too many)
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # a stream without a file (io.UnsupportedOperation)
            raw = sys.stdin.read(most).encode("utf-8", "surrogateescape")
        else:
            raw = read_at_most(fd, most)
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw
        if len(raw) > limit:
            raise UsageError(
                f"{name}: the value is larger than its limit of {limit} bytes (max_length); nothing was changed"
            )
        value = raw.decode("utf-8", "surrogateescape")
    if not value:
        raise UsageError(f"{name}: no value on standard input; nothing was changed")
    return value


def cmd_set(args: argparse.Namespace) -> int:
    from keyroll.actions.rotate import set_value

    policy = _policy(args)
    secret = policy.secret(args.name)
    value = _read_value(args.name, secret.max_length)
    report = set_value(policy, args.name, value, wait=args.wait, allow_weak=args.allow_weak)
    return _render_tx(args, report, "set")


def cmd_backup(args: argparse.Namespace) -> int:
    from keyroll.actions.backup import take_backup

    result = take_backup(_policy(args), wait=args.wait)
    code = EXIT_FAILURE if result.left_out else result.recovery.exit_code  # (a hard failure outranks 75)
    if args.json:
        emit_json("backup", code, result)
    else:
        _render_recovery(result.recovery)
        for name, why in result.left_out.items():
            sys.stderr.write(f"keyroll: error: {name} is not in this backup: {why}\n")
        line(str(result.path))
    return code


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB"


def cmd_list_backups(args: argparse.Namespace) -> int:
    from keyroll.actions.backup import list_backups

    summaries = list_backups(_policy(args))
    code = EXIT_OK if all(s.verified for s in summaries) else EXIT_FAILURE  # a backup that fails to verify
    if args.json:
        emit_json("list-backups", code, {"backups": summaries})
        return code
    if not summaries:
        line("no backups yet")
        return EXIT_OK
    rows = [
        [s.name, s.created, _size(s.size), s.secrets, s.reason, "ok" if s.verified else "fail", s.problem or ""]
        for s in summaries
    ]
    table(None, ["BACKUP", "CREATED", "SIZE", "SECRETS", "REASON", "VERIFIED", "PROBLEM"], rows, STATE_STYLES)
    return code


def cmd_restore(args: argparse.Namespace) -> int:
    from keyroll.actions.backup import restore

    report = restore(_policy(args), args.backup, dry_run=args.dry_run, wait=args.wait)
    if args.json:
        emit_json("restore", report.exit_code, report)
        return report.exit_code
    line(f"backup {report.backup} verified")
    if args.dry_run:
        line(f"would restore: {', '.join(report.changes) or 'nothing (every value already matches)'}")
    _listing("already equal", report.unchanged)
    _listing("skipped (not in the policy)", report.skipped)
    _listing("not in the backup, left as they are", report.absent)
    if report.pre_restore_backup:
        line(f"pre-restore backup: {report.pre_restore_backup}")
    if report.tx is not None:
        return _render_tx(args, report.tx, "restore")
    return report.exit_code


def cmd_recover(args: argparse.Namespace) -> int:
    from keyroll.actions.rotate import recover

    report = recover(_policy(args), wait=args.wait)
    if args.json:
        emit_json("recover", report.exit_code, report)
        return report.exit_code
    _render_recovery(report)
    if not report.outcomes and not report.removed_temp and not report.retired:
        line("nothing was in flight: store, journal and services agree")
    return report.exit_code


def cmd_history(args: argparse.Namespace) -> int:
    from keyroll.actions.history import history, shown_outcome

    entries = history(_policy(args), args.name, args.limit)
    if args.json:
        emit_json("history", EXIT_OK, {"entries": entries})
        return EXIT_OK
    if not entries:
        line("no history yet")
        return EXIT_OK
    table(
        None,
        ["WHEN", "SECRET", "OPERATION", "OUTCOME", "DETAIL"],
        [[e.at, e.name, e.op, shown_outcome(e), e.detail] for e in entries],
    )
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    from keyroll.actions.rotate import rollback

    return _render_tx(args, rollback(_policy(args), args.name, wait=args.wait), "rollback")


def cmd_status(args: argparse.Namespace) -> int:
    from keyroll.actions.status import status

    report = status(_policy(args))
    if args.json:
        emit_json("status", EXIT_OK, report)
        return EXIT_OK
    rows = []
    for s in report.secrets:
        due = (s.next_due or "")[:10] + (" OVERDUE" if s.overdue else "")
        rows.append(
            [
                s.name,
                s.state,
                "" if s.size is None else s.size,
                f"{s.kind} {s.length}c/{s.entropy_bits}b" if s.entropy_bits else s.kind,
                ", ".join(s.services),
                (s.created or "")[:10],
                (s.rotated or "")[:10],
                "" if s.age_days is None else f"{s.age_days}d",
                due,
            ]
        )
    table(
        f"{report.store} store: {report.secrets_dir}",
        ["SECRET", "STATE", "SIZE", "KIND (LEN/BITS)", "USED BY", "CREATED", "ROTATED", "AGE", "NEXT DUE"],
        rows,
        STATE_STYLES,
    )
    for s in report.secrets:
        for problem in s.problems:
            line(f"{s.name}: {problem}")
    for hint in report.hints:
        line(f"hint: {hint}")
    if report.gitops is not None:
        line(f"gitops: {report.gitops.repo}: {report.gitops.detail}")
    return EXIT_OK


def _render_findings(args: argparse.Namespace, command: str, report: ValidationReport) -> int:
    if args.json:
        emit_json(command, report.exit_code, report)
        return report.exit_code
    rows = [[f.level, f.subject, f.message] for f in report.findings]
    table(None, ["RESULT", "WHAT", "DETAIL"], rows, STATE_STYLES)
    line(f"{len(report.failures)} failed, {len(report.warnings)} warnings")
    return report.exit_code


def cmd_validate(args: argparse.Namespace) -> int:
    from keyroll.actions.validate import validate

    return _render_findings(args, "validate", validate(_policy(args)))


def cmd_config(args: argparse.Namespace) -> int:
    from keyroll.actions import config as config_actions

    if args.config_command == "generate":
        path = Path(args.path) if args.path and args.path != "-" else None
        text = config_actions.generate_config(path, force=args.force)
        if args.json:
            emit_json("config generate", EXIT_OK, {"path": path, "text": text if path is None else None})
        elif path is None:
            sys.stdout.write(text)
        else:
            line(f"wrote {path}")
        return EXIT_OK
    if args.config_command == "schema":
        from keyroll.config.schema import schema_description

        emit_json("config schema", EXIT_OK, schema_description())
        return EXIT_OK
    policy = _policy(args)
    if args.config_command == "show":
        if args.json:
            emit_json("config show", EXIT_OK, policy.effective_document())
        else:
            sys.stdout.write(config_actions.show_config(policy))
        return EXIT_OK
    return _render_findings(args, "config validate", config_actions.validate_config(policy, static=args.static))


def cmd_menu(args: argparse.Namespace) -> int:
    if args.json or not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("the menu needs a terminal; without one, run a command (see `keyroll --help`)")
    from keyroll.cli.menu import run_menu

    # Each choice runs through dispatch, as the command line does: a writing choice
    # rewrites the metrics file when it ends, under its own command name.
    return run_menu(args, list(_policy(args).secrets), dict.fromkeys(HANDLERS, dispatch))


def cmd_bundle(args: argparse.Namespace) -> int:
    """`bundle migrate | render DIR | updatekeys`: the SOPS bundle."""
    from keyroll.actions import bundle

    policy = _policy(args)
    report: Any
    if args.bundle_command == "migrate":
        report = bundle.migrate(policy, remove_plaintext=args.remove_plaintext, wait=args.wait)
    elif args.bundle_command == "render":
        report = bundle.render(
            policy, args.directory, fmt=args.format, restart=not args.no_restart, wait=args.wait, encrypt=args.encrypt
        )
    else:
        report = bundle.updatekeys(policy, wait=args.wait)
    code = _combine(report.exit_code, report.recovery.exit_code)
    if args.json:
        emit_json(_command_name(args), code, {"report": report})
        return code
    _render_recovery(report.recovery)
    if args.bundle_command == "migrate":
        line(
            f"bundle {report.bundle}: migrated {len(report.migrated)} secret(s) from {report.source}, verified one by one"
        )
        _listing("already in the bundle with the same value", report.already)
        _listing("not in the folder (nothing to migrate)", report.missing)
        _listing("removed the plaintext files", report.removed)
        if report.removed:
            line("backups taken before the migration still hold plaintext values: remove them when no longer needed")
        if report.migrated and not report.removed:
            line(f"the plaintext files stay in {report.source}; `bundle migrate --remove-plaintext` removes them")
    elif args.bundle_command == "render":
        line(
            f"rendered {report.format} to {report.path}: {len(report.changed)} changed, {len(report.unchanged)} unchanged"
        )
        for name in report.changed:
            line(f"  changed: {name}")
        for spec in report.restarted:
            line(f"  restarted: {spec}")
        for failure in report.failures:
            line(f"  FAILED: {failure}")
        _listing("not in the bundle", report.missing)
    else:
        if not report.changed:
            line(f"bundle {report.bundle}: already encrypted to the recipients in .sops.yaml; left as it is")
            return code
        line(f"bundle {report.bundle}: {report.secrets} secret(s) re-encrypted")
        line(f"recipients before: {', '.join(report.before)}")
        line(f"recipients now:    {', '.join(report.after)}")
        if report.backup:
            line(f"backup: {report.backup}")
    return code


def cmd_kubernetes(args: argparse.Namespace) -> int:
    """`kubernetes sync [--dry-run] [--restart]`."""
    from keyroll.actions.kubernetes import sync

    report = sync(_policy(args), dry_run=args.dry_run, restart=args.restart, wait=args.wait)
    code = _combine(report.result.exit_code, report.recovery.exit_code)
    if args.json:
        emit_json(_command_name(args), code, report.result.data())
        return code
    for text in report.result.lines:
        line(text)
    return code


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "init": cmd_init,
    "rotate": cmd_rotate,
    "set": cmd_set,
    "backup": cmd_backup,
    "list-backups": cmd_list_backups,
    "restore": cmd_restore,
    "recover": cmd_recover,
    "history": cmd_history,
    "rollback": cmd_rollback,
    "status": cmd_status,
    "validate": cmd_validate,
    "config": cmd_config,
    "menu": cmd_menu,
    "bundle": cmd_bundle,
    "kubernetes": cmd_kubernetes,
}


# --- scheduled operation and notices ----------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    import logging

    from keyroll.actions.run import run_cycle
    from keyroll.errors import KeyrollError, LockHeld
    from keyroll.notify import LogTail, cycle_notice, deliver, failure_notice

    policy = _policy(args)
    tail = LogTail()
    logging.getLogger("keyroll").addHandler(tail)
    try:
        report = run_cycle(policy, wait=args.wait)
    except LockHeld:
        raise  # another keyroll is at work: nothing failed
    except KeyrollError as exc:
        notice = failure_notice(f"keyroll run failed: {exc}", policy, list(tail.lines))
        if notice is not None:
            deliver(notice, policy)
        raise
    notice = cycle_notice(report, policy, list(tail.lines))
    deliveries = deliver(notice, policy) if notice else []
    code = report.exit_code
    if args.json:
        emit_json("run", code, {"cycle": report, "notices": deliveries})
        return code
    if report.recovery is not None:
        _render_recovery(report.recovery)
    if report.rotation is not None:
        _render_tx(args, report.rotation, "run")
    elif not report.not_started:
        line("nothing is due")
    _listing("due, not started (keyroll was stopping)", report.not_started)
    for reminder in report.reminders:
        state = "OVERDUE since" if reminder.overdue else "due"
        line(f"reminder: {reminder.name} {state} {reminder.due}: rotate it with `keyroll rotate {reminder.name}`")
    _listing("not initialized (run `keyroll init`)", report.not_initialized)
    if report.next_due:
        line(f"next: {report.next_name} at {report.next_due}")
    if report.next_manual_due:
        line(
            f"next to rotate by hand: {report.next_manual_name}, due {report.next_manual_due} (a reminder comes first; "
            "secrets rotate on their own with a target or restart, or unattended = true)"
        )
    for delivery in deliveries:
        line(f"notice to {delivery.url}: {'sent' if delivery.ok else 'FAILED: ' + delivery.error}")
    return code


def cmd_daemon(args: argparse.Namespace) -> int:
    import logging

    from keyroll.daemon import run_daemon

    root = logging.getLogger("keyroll")
    root.setLevel(min(root.level, logging.INFO))  # the daemon logs every event it handles

    return run_daemon(args.config)


def cmd_notify(args: argparse.Namespace) -> int:
    """`notify test`: a test notice to every configured URL, each one's result."""
    from keyroll.notify import SendReport, configured_urls, deliver, test_notice

    if args.notify_command == "send":
        return _notify_send(args)
    policy = _policy(args)
    if not configured_urls(policy):
        raise UsageError("no notification URLs configured: set [notify] urls or urls_file")
    report = SendReport(deliver(test_notice(), policy))
    if args.json:
        emit_json("notify test", report.exit_code, report)
        return report.exit_code
    for delivery in report.deliveries:
        line(f"{delivery.url}: {'sent' if delivery.ok else 'FAILED: ' + delivery.error}")
    return report.exit_code


def _notify_send(args: argparse.Namespace) -> int:
    """Internal: send the notice on stdin to the URLs given with it (JSON), reading no
    config, and print each URL's result as JSON."""
    import json

    from keyroll.notify import Notice, send_now
    from keyroll.records import asdict

    request = json.loads(sys.stdin.read())
    results = send_now(Notice(**request["notice"]), list(request["urls"]), float(request["timeout"]))
    sys.stdout.write(json.dumps([asdict(r) for r in results]) + "\n")
    return 0 if all(r.ok for r in results) else 1


def cmd_leaks(args: argparse.Namespace) -> int:
    """`leaks scan`: rendered in keyroll.cli.leaks."""
    from keyroll.cli.leaks import run_leaks

    return run_leaks(args, _policy(args), _render_tx)


HANDLERS.update({"run": cmd_run, "daemon": cmd_daemon, "notify": cmd_notify, "leaks": cmd_leaks})
