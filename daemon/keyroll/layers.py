"""The layers of keyroll, written down once, high to low.

A module imports only from its own layer or lower ones, never from a higher one,
and the modules import no circle (a package's `__init__` that imports its
submodules gets them to import a `base` module, not the package).  Every import
counts: at the top, inside a function, and under `if TYPE_CHECKING:` (a type is a
dependency too).  `tests/unit/test_layers.py` holds the package to this table and
fails for a module the table does not place: add a new module to the layer where
it belongs (`NAME.*` places a package's submodules with it).

Nothing imports this module; it is data for that test and for people.
"""

from __future__ import annotations

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("keyroll.__main__", "keyroll.cli", "keyroll.cli.*")),
    ("daemon", ("keyroll.daemon",)),
    ("actions", ("keyroll.actions", "keyroll.actions.*")),
    ("rotation", ("keyroll.rotation",)),
    (
        "services",  # what the transaction drives: stores, targets, consumers, backups, notices
        (
            "keyroll.age",
            "keyroll.backup",
            "keyroll.consumers",
            "keyroll.gitops",
            "keyroll.kube",
            "keyroll.kube.*",
            "keyroll.leaks",
            "keyroll.leaks.*",
            "keyroll.metrics",
            "keyroll.notify",
            "keyroll.permissions",
            "keyroll.store",
            "keyroll.store.*",
            "keyroll.targets",
            "keyroll.targets.*",
        ),
    ),
    ("config", ("keyroll.config", "keyroll.config.*", "keyroll.guidance", "keyroll.journal")),
    (
        "helpers",  # files, time, paths, text; nothing here knows a policy
        (
            "keyroll.digest",
            "keyroll.fsutil",
            "keyroll.generate",
            "keyroll.gitenv",
            "keyroll.hardening",
            "keyroll.httpclient",
            "keyroll.loader",
            "keyroll.lock",
            "keyroll.outputs",
            "keyroll.paths",
            "keyroll.processes",
            "keyroll.recipients",
            "keyroll.schedule",
            "keyroll.stopping",
            "keyroll.text",
            "keyroll.trust",
        ),
    ),
    ("base", ("keyroll", "keyroll.errors", "keyroll.layers", "keyroll.outcomes", "keyroll.records")),
)
