"""Exact scan for the values keyroll manages in git repositories and folders
(`keyroll leaks scan`; keyroll.actions.leaks drives it).

- `patterns`: the values (`Needle`), their encodings, the Aho-Corasick matcher;
- `git`: a repository read through git, never written: every object, streamed,
  and the commits, paths and refs that hold a blob;
- `scan`: the scan of repositories, work trees, git folders, folders and files;
- `report`: what it reports (findings never carry a value, nor a hash of one).

`ahocorasick_rs` is imported only when a matcher is built.
"""

from __future__ import annotations

from keyroll.leaks.patterns import MIN_LENGTH, Needle, encodings
from keyroll.leaks.report import Finding, ScanReport
from keyroll.leaks.scan import Scanner

__all__ = [
    "MIN_LENGTH",
    "Finding",
    "Needle",
    "ScanReport",
    "Scanner",
    "encodings",
]
