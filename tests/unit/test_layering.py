"""The dependency rules of checkpointer's layers, read from the source with `ast` (every import,
those inside functions too, so a lazy import cannot slip past).

    plumbing    oci registry criu format crypt compat runtime lazy, and the small shared modules
                (errors, host, retry, atomic, progress, reference, timing, the package root):
                the library. It never imports porcelain or the CLI.
    porcelain   porcelain/ and hooks/: the commands' logic on top of the plumbing. It never
                imports the CLI.
    cli         cli (module or package), ui, __main__, hooks/cli.py, hooks/__main__.py: the only
                code that parses arguments and renders. Only it imports typer or rich.

Every module belongs to exactly one layer: a new top-level module fails here until it is put in
one. Imports form no cycle, module by module, and plumbing packages form no cycle package by
package (`if TYPE_CHECKING:` imports are left out of the cycle check: they never run).
KNOWN_CYCLES names the cycles allowed for now (none), each with why it is to go.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "checkpointer"

PLUMBING = frozenset({
    "oci", "registry", "criu", "format", "crypt", "compat", "runtime", "lazy",
    "__init__", "atomic", "errors", "host", "progress", "reference", "retry", "timing",
})
PORCELAIN = frozenset({"porcelain", "hooks"})
CLI = frozenset({"cli", "ui", "__main__"})
CLI_MODULES = frozenset({"checkpointer.hooks.cli", "checkpointer.hooks.__main__"})
RENDERING = ("typer", "rich")  # third-party packages only the CLI layer may import

# Cycles allowed for now, each with what removes it (none today). An entry that no longer matches a
# cycle fails the test: take it out.
KNOWN_CYCLES: set[frozenset[str]] = set()


# -- reading the imports --------------------------------------------------------------------------


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST, typing_only: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement anywhere in `tree`, with whether it sits under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, typing_only
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _import_nodes(ast.Module(body=[child], type_ignores=[]), True)
            for child in node.orelse:
                yield from _import_nodes(ast.Module(body=[child], type_ignores=[]), typing_only)
        else:
            yield from _import_nodes(node, typing_only)


def imports_of(source: str, module: str, is_package: bool, known: Iterable[str]) -> list[tuple[str, bool]]:
    """(imported name, only under TYPE_CHECKING) for each import in `source`, the code of `module`.
    Relative imports are resolved; `from P import x` names P.x when that is a known module, else P."""
    known = set(known)
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node, typing_only in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, typing_only) for alias in node.names]
            continue
        if node.level:
            base = package.split(".")
            base = base[:len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        for alias in node.names:
            sub = f"{origin}.{alias.name}"
            found.append((sub if sub in known else origin, typing_only))
    return found


class Graph:
    """checkpointer's modules and the imports between them."""

    def __init__(self, root: Path = PACKAGE) -> None:
        paths = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
        self.modules = {module_name(p, root): p for p in paths}
        self.edges: dict[str, set[str]] = {}        # every import, TYPE_CHECKING ones included
        self.run_edges: dict[str, set[str]] = {}    # the imports that run
        self.foreign: dict[str, set[str]] = {}      # top-level names of imports outside checkpointer
        for name, path in self.modules.items():
            found = imports_of(path.read_text(), name, path.name == "__init__.py", self.modules)
            self.edges[name], self.run_edges[name], self.foreign[name] = set(), set(), set()
            for target, typing_only in found:
                if not (target == "checkpointer" or target.startswith("checkpointer.")):
                    self.foreign[name].add(target.split(".")[0])
                    continue
                target = self._existing(target)
                if target == name:
                    continue
                self.edges[name].add(target)
                if not typing_only:
                    self.run_edges[name].add(target)

    def _existing(self, name: str) -> str:
        """`name`, or its longest prefix that is a module (an import of a name from a module)."""
        while name not in self.modules and "." in name:
            name = name.rpartition(".")[0]
        return name


def top(module: str) -> str:
    """The top-level part of checkpointer a module belongs to ("__init__" for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(module: str) -> str | None:
    if module in CLI_MODULES or top(module) in CLI:
        return "cli"
    if top(module) in PORCELAIN:
        return "porcelain"
    if top(module) in PLUMBING:
        return "plumbing"
    return None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> Graph:
    return Graph()


# -- the rules ------------------------------------------------------------------------------------


def test_every_module_is_in_a_layer(graph):
    loose = sorted(m for m in graph.modules if layer(m) is None)
    assert not loose, f"modules in no layer (add them to PLUMBING, PORCELAIN or CLI here): {loose}"


def test_plumbing_never_imports_porcelain_or_cli(graph):
    wrong = sorted(f"{m} imports {t}" for m, targets in graph.edges.items() if layer(m) == "plumbing"
                   for t in targets if layer(t) in ("porcelain", "cli"))
    assert not wrong, "plumbing must not reach up:\n" + "\n".join(wrong)


def test_porcelain_never_imports_cli(graph):
    wrong = sorted(f"{m} imports {t}" for m, targets in graph.edges.items() if layer(m) == "porcelain"
                   for t in targets if layer(t) == "cli")
    assert not wrong, "porcelain must not reach into the CLI:\n" + "\n".join(wrong)


def test_only_the_cli_renders(graph):
    wrong = sorted(f"{m} imports {name}" for m, names in graph.foreign.items() if layer(m) != "cli"
                   for name in names if name in RENDERING)
    assert not wrong, "the library never prints; the CLI renders:\n" + "\n".join(wrong)


def test_no_import_cycle_between_modules(graph):
    found = cycles(graph.run_edges)
    new = [c for c in found if frozenset(c) not in KNOWN_CYCLES]
    assert not new, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in new)
    gone = KNOWN_CYCLES - {frozenset(c) for c in found}
    assert not gone, f"these cycles are gone: take them out of KNOWN_CYCLES: {[sorted(c) for c in gone]}"


def test_no_import_cycle_between_plumbing_packages(graph):
    packages: dict[str, set[str]] = {}
    for module, targets in graph.run_edges.items():
        if layer(module) != "plumbing":
            continue
        packages.setdefault(top(module), set()).update(
            top(t) for t in targets if layer(t) == "plumbing" and top(t) != top(module))
    found = cycles(packages)
    assert not found, "plumbing packages that need each other:\n" + "\n".join(" <-> ".join(c) for c in found)


# -- the reader itself ----------------------------------------------------------------------------


def test_the_reader_sees_every_kind_of_import():
    source = '''
import checkpointer.oci.layout
from typing import TYPE_CHECKING
from . import sibling
from ..errors import CkptError
from .. import host as h

if TYPE_CHECKING:
    from ..porcelain.home import Home

def later():
    from ..registry import push
    import rich
'''
    known = {"checkpointer.pkg.sibling", "checkpointer.errors", "checkpointer.host", "checkpointer.registry",
             "checkpointer.oci.layout", "checkpointer.porcelain.home"}
    found = imports_of(source, "checkpointer.pkg.mod", False, known)
    assert set(found) == {
        ("checkpointer.oci.layout", False), ("typing", False), ("checkpointer.pkg.sibling", False),
        ("checkpointer.errors", False), ("checkpointer.host", False), ("checkpointer.porcelain.home", True),
        ("checkpointer.registry", False), ("rich", False)}
    # in a package's __init__, "." is the package itself
    assert imports_of("from . import sibling", "checkpointer.pkg", True, known) == [("checkpointer.pkg.sibling", False)]


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_the_rules_see_the_tree(graph):
    # a guard against a reader that finds nothing: these imports exist (one of them in a function)
    assert "checkpointer.oci.layout" in graph.edges["checkpointer.registry.pull"]
    assert "checkpointer.criu.images" in graph.edges["checkpointer.compat.exportdir"]
    assert {layer(m) for m in graph.modules} == {"plumbing", "porcelain", "cli"}
