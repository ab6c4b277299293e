"""The shape of the code: no module of ``rtsr/`` imports one that imports it back, at any
depth, counting the imports inside functions too (an import put off to run time is still a
dependency). Imports under ``if TYPE_CHECKING:`` are for the type checker alone."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.data import ROOT


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``tree`` imports, wherever in it, except under
    ``if TYPE_CHECKING:``."""
    skipped = {
        id(node)
        for stmt in ast.walk(tree)
        if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Name) and stmt.test.id == "TYPE_CHECKING"
        for inner in stmt.body
        for node in ast.walk(inner)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found & known


def import_graph() -> dict[str, set[str]]:
    """Each module of ``rtsr/`` and the modules of ``rtsr/`` it imports."""
    paths = {_module_name(p): p for p in (ROOT / "rtsr").rglob("*.py")}
    known = set(paths)
    return {name: _imports(ast.parse(path.read_text()), known) - {name} for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_deferred_import():
    # what engines <-> inference was: a module-level import one way, one inside a function back
    engines = ast.parse("from rtsr.errors import ModelError\ndef f():\n    from rtsr.inference import to_tensor\n")
    inference = ast.parse("from rtsr.engines import resolve_engine\n")
    known = {"rtsr.engines", "rtsr.inference", "rtsr.errors"}
    graph = {"rtsr.engines": _imports(engines, known), "rtsr.inference": _imports(inference, known)}
    graph["rtsr.errors"] = set()
    assert cycles(graph) == [["rtsr.engines", "rtsr.inference"]]
    typing_only = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rtsr.engines import X\n")
    assert _imports(typing_only, known) == set()


def test_no_import_cycle_in_rtsr():
    graph = import_graph()
    assert {"rtsr.cli", "rtsr.submissions.worker", "rtsr.results.schema", "rtsr.results.metrics"} <= set(graph)
    assert "rtsr.engines" in graph["rtsr.inference"]  # the finder sees real imports
    assert cycles(graph) == []


def test_no_function_of_the_app_is_over_120_lines():
    """The app's code stays in pieces a reader can hold: each tab's builder in parts, its
    handlers at module level."""
    long = []
    for path in [*(ROOT / "space").glob("*.py"), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > 120:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert long == []
