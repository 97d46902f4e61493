"""The import rules of docs/architecture.md, checked over the source with ``ast`` (no import is executed).

Every ``import`` counts, wherever it stands (module level, inside a function, under ``TYPE_CHECKING``):
a circle or an upward import fails here whatever way it is written.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "server", "nodes")
MAX_LINES = 600
# Generated or vendored files exempt from the size rule.
SIZE_EXEMPT: frozenset[str] = frozenset()

# What each part of the engine may import (besides itself and the standard library / third-party packages).
ENGINE_LAYERS: dict[str, frozenset[str]] = {
    "engine.version": frozenset(),
    "engine.files": frozenset({"engine.version"}),
    "engine.models": frozenset({"engine.files", "engine.version"}),
    "engine.graph": frozenset({"engine.models", "engine.files", "engine.version"}),
    "engine.live": frozenset({"engine.graph", "engine.models", "engine.files", "engine.version"}),
    "engine.queue": frozenset({"engine.graph", "engine.live", "engine.models", "engine.files", "engine.version"}),
    "engine.comfy": frozenset({"engine.graph", "engine.models", "engine.files", "engine.version"}),
    "engine.app": frozenset({"engine.graph", "engine.live", "engine.models", "engine.queue", "engine.comfy",
                             "engine.files", "engine.version"}),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Project modules imported by ``path`` (the deepest existing module each import names)."""
    name = module_name(path)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_pkg else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            candidates = [f"{mod}.{alias.name}" for alias in node.names] + [mod]
        else:
            continue
        for cand in candidates:
            if cand.split(".")[0] not in PACKAGES:
                continue
            resolved = resolve(cand)
            if resolved and resolved != name:
                found.add(resolved)
    return found


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    files = source_files()
    modules = {module_name(p) for p in files}
    g = nx.DiGraph()
    for path in files:
        src = module_name(path)
        g.add_node(src, path=path)
        for dst in imports_of(path, modules):
            # A package's __init__ importing its own submodules is not an arrow back into itself.
            if dst.startswith(src + ".") and path.name == "__init__.py":
                continue
            g.add_edge(src, dst)
    return g


def layer(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "engine" and len(parts) > 1 else parts[0]


def test_no_import_circles(graph: nx.DiGraph) -> None:
    # Parent packages are not nodes of their children's circles: an __init__ that re-exports is fine.
    cycles = [c for c in nx.simple_cycles(graph) if len(c) > 1]
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c + [c[0]]) for c in cycles[:20])


def test_engine_imports_neither_nodes_nor_server(graph: nx.DiGraph) -> None:
    bad = [(a, b) for a, b in graph.edges if a.startswith("engine") and b.split(".")[0] in {"nodes", "server"}]
    assert not bad, f"engine imports the application: {bad}"


def test_nodes_do_not_import_server(graph: nx.DiGraph) -> None:
    bad = [(a, b) for a, b in graph.edges if a.startswith("nodes") and b.startswith("server")]
    assert not bad, f"a node knows the server: {bad}"


def test_engine_layers(graph: nx.DiGraph) -> None:
    bad = []
    for a, b in graph.edges:
        if not (a.startswith("engine.") and b.startswith("engine.")):
            continue
        la, lb = layer(a), layer(b)
        if la == lb or lb == "engine":
            continue
        allowed = ENGINE_LAYERS.get(la)
        if allowed is None or lb not in allowed:
            bad.append(f"{a} -> {b}")
    assert not bad, "upward or sideways imports in the engine (see docs/architecture.md):\n" + "\n".join(bad)


def test_every_engine_module_is_in_a_layer() -> None:
    loose = [module_name(p) for p in (ROOT / "engine").glob("*.py")
             if p.name != "__init__.py" and module_name(p) not in ENGINE_LAYERS]
    assert not loose, f"engine modules outside a package: {loose}"


def test_no_file_over_the_size_limit() -> None:
    big = []
    for path in source_files():
        rel = str(path.relative_to(ROOT))
        if rel in SIZE_EXEMPT:
            continue
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            big.append(f"{rel}: {n} lines")
    assert not big, f"files over {MAX_LINES} lines:\n" + "\n".join(big)


def test_the_checker_sees_a_circle(tmp_path: Path) -> None:
    """The rules can fail: a circle and an upward import written here are found."""
    g = nx.DiGraph([("engine.graph.a", "engine.app.b"), ("engine.app.b", "engine.graph.a")])
    assert [c for c in nx.simple_cycles(g) if len(c) > 1]
    assert "engine.app" not in ENGINE_LAYERS["engine.graph"]
