"""Rendering of `keyroll leaks scan` (the logic is in keyroll.actions.leaks)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from keyroll.cli.output import emit_json, line
from keyroll.config.policy import Policy
from keyroll.records import replace
from keyroll.text import shown_names

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: start-up time)
if TYPE_CHECKING:
    from keyroll.actions.leaks import LeaksReport
    from keyroll.leaks import Finding, ScanReport

_REACH = {
    "stash": "only in a stash",
    "reflog only": "only in the reflog (no branch or tag reaches it)",
    "unreachable": "unreachable (a dangling object: no ref, reflog or stash reaches it)",
    "index": "staged in the index only",
    "tree": "a file or folder name in a tree",
    "alternate": "only in a borrowed object folder (objects/info/alternates): scan the repository it belongs to",
}


def run_leaks(args: argparse.Namespace, policy: Policy, render_tx: Callable[..., int]) -> int:
    """Run `leaks scan` and print (or emit as JSON) its report; its exit code."""
    from keyroll.actions.leaks import scan

    report = scan(
        policy,
        args.paths,
        staged=args.staged,
        rotate=args.rotate,
        rewrite_file=args.rewrite_file,
        wait=args.wait,
    )
    code = report.exit_code
    if args.json:
        emit_json("leaks scan", code, report)
        return code
    render(report)
    if args.rewrite_file and report.rewrite is None:
        line(f"{args.rewrite_file}: not written: nothing was found to rewrite")
    if report.rotation is not None:
        line()
        line("Emergency rotation of the secrets found live:")
        render_tx(args, report.rotation, "rotate")
        line()
        line("Scan after the rotation:")
        assert report.after is not None
        _render_scan(report.after)
        _verdict(report, report.after)
    return code


# How a file finding names where the file is (a plain `file` is named by its path alone).
_FILE_KIND = {"work tree": "work tree file", "staged": "staged file", "git dir": "git folder file", "file": "file"}


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _printable(name: str) -> str:
    """A file name on one line: a newline or other control character in it shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def describe(finding: Finding) -> str:
    """One finding on one line (never the value)."""
    f = finding
    if f.path is not None:
        f = replace(f, path=_printable(f.path))
    head = f"{'LIVE' if f.live else 'retired'} {f.secret} ({f.state}; {f.encoding}) in {f.repository}:"
    lines = f" line {', '.join(map(str, f.lines[:5]))}{' ...' if len(f.lines) > 5 else ''}" if f.lines else ""
    binary = " (binary)" if f.binary else ""
    if f.source == "object":
        oid = (f.object or "")[:12]
        if f.object_type == "blob":
            what = f"blob {oid}{binary}" + (f" {f.path}" if f.path else "") + lines
        elif f.object_type == "commit":
            what = f"commit {oid}{lines} (`git cat-file -p {oid}`: its author, committer or message)"
        elif f.object_type == "tag":
            what = f"the annotated tag object {oid}{lines} (`git cat-file -p {oid}`: its tagger or message)"
        else:
            what = f"{f.object_type} {oid}"
        if f.commits:
            first, last = f.commits[0], f.commits[-1]
            span = f"{first.commit[:12]} ({first.date})"
            commits = len({c.commit for c in f.commits})
            if commits > 1:
                span += f" first ... {last.commit[:12]} ({last.date}) last, {commits} commits"
            what += f"; added in {span}"
            paths = len({c.path for c in f.commits})
            if paths > 1:
                what += f" (at {paths} paths)"
        if f.refs and f.where == "refs":
            what += f"; reached by {shown_names(f.refs, 5)}"
        elif f.where == "stash":
            what += f"; only in the stash ({shown_names(f.refs, 5)})"
        elif f.where in _REACH:
            what += f"; {_REACH[f.where]}"
    elif f.name:
        what = f"the name of the {_FILE_KIND.get(f.source, 'file')} {f.path}"
    else:
        kind = _FILE_KIND.get(f.source) if f.source != "file" else None
        what = f"{kind + ' ' if kind else ''}{f.path}{binary}{lines}"
    return f"{head} {what}"


def _render_scan(scan: ScanReport) -> None:
    for finding in scan.findings:
        line(describe(finding))
    for scanned in scan.scanned:
        parts = []
        if scanned.objects:
            parts.append(f"{scanned.objects} objects")
        if scanned.files:
            parts.append(f"{scanned.files} files")
        parts.append(_size(scanned.bytes))
        line(f"scanned {scanned.path} ({scanned.kind}: {', '.join(parts)})")
    for note in scan.notes:
        line(f"note: {note}")
    for error in scan.errors:
        sys.stderr.write(f"keyroll: error: {error}\n")


def render(report: LeaksReport) -> None:
    """Print the findings, what was scanned, and the advice that follows from them."""
    scan = report.scan
    _render_scan(scan)
    if report.too_short:
        line(
            f"not searched for (values shorter than 12 characters match by chance): {shown_names(report.too_short, 20)}"
        )
    for why in report.not_searched:
        line(f"not searched: {why}")
    line(f"{scan.values} values searched for ({scan.patterns} patterns) in {scan.seconds:.2f} s")
    if report.rotation is None:
        _verdict(report, scan)
    if report.rewrite is not None:
        plan = report.rewrite
        line()
        line(f"wrote {plan.file} ({plan.expressions} expressions, mode 0600): it holds the values, delete it after use")
        if plan.blob_ids_file is not None:
            line(f"wrote {plan.blob_ids_file} (binary blobs holding a value: {len(plan.binary_blobs)})")
        line("Steps, in this order (keyroll never rewrites or pushes history itself):")
        for number, step in enumerate(plan.steps, 1):
            line(f"{number:2}. {step}")


def _verdict(report: LeaksReport, scan: ScanReport) -> None:
    live = sorted({f.secret for f in scan.live})
    retired = sorted({f.secret for f in scan.retired})
    if report.staged and scan.findings:
        line(
            f"refused: a managed value is staged ({shown_names(sorted(live + retired), 10)}): "
            "take it out of the file (or its name), `git add` it again, and commit"
        )
    elif live:
        line(
            f"LEAKED: live values of {len(live)} secret(s): {shown_names(live, 10)}. Rotate them now "
            f"(`keyroll leaks scan --rotate`, or `keyroll rotate --emergency {' '.join(live[:10])}`), "
            "then rewrite the history (`keyroll leaks scan --rewrite-file FILE` writes the expressions and the steps)"
        )
    elif retired:
        line(
            f"only retired values found ({shown_names(retired, 10)}): no credential in use leaked, but the history "
            "still holds old ones: rewriting it is recommended (`keyroll leaks scan --rewrite-file FILE`)"
        )
    elif scan.errors:
        line("no managed value found in what could be read; some paths could not be read (above)")
    else:
        line("no managed value found")
