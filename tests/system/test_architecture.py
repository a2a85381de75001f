"""The import graph keeps the layers of ARCHITECTURE.md: no cycle between any two modules, and
the layer order cli -> workflows -> export -> train -> device (import-linter checks the same
contracts in ``make lint``; this test keeps them true for anyone who only runs pytest).

Imports inside functions and ``importlib.import_module("parcelguard...")`` strings count too:
grimp reads every import statement in a module, wherever it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["cli", "workflows", "export", "train", "device"]  # each may import only those after it
PACKAGES = [f"parcelguard.{name}" for name in LAYERS]


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(*PACKAGES, include_external_packages=True, cache_dir=None)


def strongly_connected(nodes: set[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components with more than one module are cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        comp.append(top)
                        if top == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def project_edges(graph) -> tuple[set[str], dict[str, set[str]]]:
    nodes = {m for m in graph.modules if m.startswith(tuple(PACKAGES))}
    edges = {
        m: {d for d in graph.find_modules_directly_imported_by(m) if d in nodes} for m in nodes
    }
    # a package's __init__ is importing its own submodule only by re-export; none of ours do
    return nodes, edges


def test_tarjan_finds_a_planted_cycle():
    nodes = {"a", "b", "c", "d"}
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(nodes, edges) == [["a", "b", "c"]]
    assert strongly_connected(nodes, {"a": {"b"}, "b": {"c"}}) == []


def test_no_import_cycles(graph):
    nodes, edges = project_edges(graph)
    cycles = strongly_connected(nodes, edges)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_layers_import_only_downwards(graph):
    # the check can see a chain: the top layer does reach the bottom one
    assert graph.chain_exists("parcelguard.cli", "parcelguard.device", as_packages=True)
    bad = []
    for i, upper in enumerate(LAYERS):
        for lower in LAYERS[i + 1 :]:
            if graph.chain_exists(f"parcelguard.{lower}", f"parcelguard.{upper}", as_packages=True):
                chain = graph.find_shortest_chain(f"parcelguard.{lower}", f"parcelguard.{upper}")
                bad.append(f"{lower} imports {upper}: {' -> '.join(chain or [])}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("heavy", ["torch", "onnx", "litert_torch"])
def test_device_never_imports_workstation_packages(graph, heavy):
    assert heavy in graph.modules, f"the workstation layers import {heavy}: the graph must see it"
    importers = sorted(
        m
        for m in graph.find_modules_that_directly_import(heavy)
        if m.startswith("parcelguard.device")
    )
    assert not importers, f"{heavy} imported by {importers}"


def test_no_string_imports_of_project_modules():
    """``importlib.import_module("parcelguard...")`` hides an edge from the graph: none allowed."""
    found = []
    for path in ROOT.glob("*/**/*.py"):
        if path.parts[len(ROOT.parts)] not in LAYERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("parcelguard")
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found
