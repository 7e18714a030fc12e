"""The house as drawn: every module of the package sits in one layer of
`keyroll.layers.LAYERS`, no module imports from a higher layer, and the modules
import no circle.

Imports are read from the source with `ast`, all of them: at module level, inside
functions, and under `if TYPE_CHECKING:` (the codebase writes `TYPE_CHECKING =
False` to spare importing `typing`; those blocks count just the same), plus
`importlib.import_module("keyroll....")` with a literal name.  An import names the
module written (`from keyroll.store import directory` -> keyroll.store.directory,
`from keyroll.store import open_store` -> keyroll.store); the parent packages Python
loads on the way are not counted, which is why a package's submodules import a
`base` module rather than the package whose `__init__` imports them.
"""

from __future__ import annotations

import ast
import fnmatch
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path

import keyroll
from keyroll.layers import LAYERS

PACKAGE_DIR = Path(keyroll.__file__).parent
LAYERS_FILE = "daemon/keyroll/layers.py"


def package_modules(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve(name: str, known: Iterable[str]) -> str | None:
    """The longest known module that `name` is, or lies in (an attribute of it)."""
    known = set(known)
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, source: str, known: Iterable[str], is_package: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for every import of a package module in `source`,
    wherever it stands in the file."""
    known = set(known)
    top = module.split(".")[0]
    here = module if is_package else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def add(name: str, line: int) -> None:
        if name == top or name.startswith(top + "."):
            target = _resolve(name, known)
            if target is not None and target != module:
                found.append((target, line))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                add(submodule if submodule in known else origin, node.lineno)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                called in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                add(first.value, node.lineno)
    return sorted(set(found), key=lambda hit: (hit[1], hit[0]))


def layer_of(modules: Iterable[str]) -> tuple[dict[str, int], list[str], list[str]]:
    """Module -> layer index (0 = highest), the modules no layer places, and the
    modules (or unused patterns) the table gets wrong."""
    placed: dict[str, int] = {}
    problems: list[str] = []
    used: set[str] = set()
    for module in modules:
        hits = [
            (index, pattern)
            for index, (_, patterns) in enumerate(LAYERS)
            for pattern in patterns
            if module == pattern or (pattern.endswith(".*") and fnmatch.fnmatchcase(module, pattern))
        ]
        used.update(pattern for _, pattern in hits)
        if len({index for index, _ in hits}) > 1:
            problems.append(f"{module} is placed in more than one layer: {', '.join(p for _, p in hits)}")
        if hits:
            placed[module] = min(index for index, _ in hits)
    unplaced = sorted(set(modules) - set(placed))
    for _, patterns in LAYERS:
        problems += [f"{p!r} places no module (remove it)" for p in patterns if p not in used]
    return placed, unplaced, problems


def import_graph(modules: Mapping[str, Path]) -> dict[str, list[tuple[str, int]]]:
    return {
        name: imports_of(name, path.read_text(encoding="utf-8"), modules, path.name == "__init__.py")
        for name, path in modules.items()
    }


def cycles(graph: Mapping[str, Iterable[tuple[str, int]]]) -> list[tuple[list[str], list[str]]]:
    """Each group of modules that import one another in a circle (a strongly connected
    component), sorted, with one shortest circle through it (a -> b -> ... -> a)."""
    edges = {node: sorted({target for target, _ in targets if target in graph}) for node, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan; the package is small enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted((sorted(group), _circle_in(group, edges)) for group in groups)


def _circle_in(group: set[str], edges: Mapping[str, list[str]]) -> list[str]:
    """A shortest circle through the group's first module, for the message."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in edges[node]:
            if nxt == start:
                return [*paths[node], start]
            if nxt in group and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError("a strongly connected group always has a circle")


# --- the checks -----------------------------------------------------------------------


MODULES = package_modules()


def test_every_module_has_a_layer() -> None:
    _, unplaced, problems = layer_of(MODULES)
    message = [
        f"{module} ({MODULES[module].relative_to(PACKAGE_DIR.parent)}) is in no layer: "
        f"add it to LAYERS in {LAYERS_FILE}, in the layer it belongs to"
        for module in unplaced
    ]
    assert not message + problems, "\n".join(message + problems)


def test_no_module_imports_from_a_higher_layer() -> None:
    placed, _, _ = layer_of(MODULES)
    names = [name for name, _ in LAYERS]
    upward = []
    for module, targets in import_graph(MODULES).items():
        for target, line in targets:
            if module in placed and target in placed and placed[target] < placed[module]:
                upward.append(
                    f"{MODULES[module].relative_to(PACKAGE_DIR.parent)}:{line}: {module} ({names[placed[module]]}) "
                    f"imports {target} ({names[placed[target]]}), a higher layer: move what both need lower"
                )
    assert not upward, "imports against the layer order of " + LAYERS_FILE + ":\n" + "\n".join(upward)


def _package_and_submodule(circle: list[str]) -> bool:
    return any(b.startswith(a + ".") or a.startswith(b + ".") for a, b in itertools.pairwise(circle))


def test_no_import_circles() -> None:
    found = cycles(import_graph(MODULES))
    message = [
        f"{len(group)} modules in a circle ({', '.join(group)}), e.g. {' -> '.join(circle)}" for group, circle in found
    ]
    if any(_package_and_submodule(circle) for _, circle in found):
        message.append(
            "(a package whose __init__ imports a submodule that imports the package back: "
            "let the submodule import a `base` module instead)"
        )
    assert not found, "import circles:\n" + "\n".join(message)


# --- the reader itself --------------------------------------------------------------------


def test_every_kind_of_import_counts() -> None:
    """The reader sees imports at the top, in functions, under both TYPE_CHECKING
    idioms, relative ones and import_module with a literal name."""
    known = {
        "keyroll",
        "keyroll.a",
        "keyroll.b",
        "keyroll.c",
        "keyroll.d",
        "keyroll.e",
        "keyroll.f",
        "keyroll.pkg",
        "keyroll.pkg.sub",
    }
    source = """
from __future__ import annotations
import os
import keyroll.a
TYPE_CHECKING = False
if TYPE_CHECKING:
    from keyroll.b import Thing
from typing import TYPE_CHECKING as T
if T:
    from keyroll import c
def f():
    from keyroll.d import helper
    import importlib
    importlib.import_module("keyroll.e")
from .f import other
from keyroll.pkg import sub
from keyroll.pkg import name_in_init
"""
    found = sorted(target for target, _ in imports_of("keyroll.x", source, known))
    assert found == [
        "keyroll.a",
        "keyroll.b",
        "keyroll.c",
        "keyroll.d",
        "keyroll.e",
        "keyroll.f",
        "keyroll.pkg",
        "keyroll.pkg.sub",
    ]


def test_circles_are_found_and_named() -> None:
    graph = {
        "k.a": [("k.b", 1)],
        "k.b": [("k.c", 1)],
        "k.c": [("k.a", 1)],
        "k.pkg": [("k.pkg.sub", 1)],
        "k.pkg.sub": [("k.pkg", 1)],
        "k.low": [],
        "k.high": [("k.low", 1)],
    }
    assert cycles(graph) == [
        (["k.a", "k.b", "k.c"], ["k.a", "k.b", "k.c", "k.a"]),
        (["k.pkg", "k.pkg.sub"], ["k.pkg", "k.pkg.sub", "k.pkg"]),
    ]


def test_a_new_module_is_reported_until_placed() -> None:
    _, unplaced, _ = layer_of([*MODULES, "keyroll.not_placed_yet", "keyroll.newpkg.sub", "keyroll.targets.newkind"])
    assert unplaced == ["keyroll.newpkg.sub", "keyroll.not_placed_yet"]  # a target kind is placed by targets.*
