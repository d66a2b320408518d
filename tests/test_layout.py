"""The shape of the tree (ARCHITECTURE.md), read from the source with `ast`, nothing imported:

- layering: ``tasks -> sensors -> sim -> scenes``; a package imports only from its own layer and
  the layers below it (scenes none of sim / sensors / tasks, sim none of sensors / tasks, sensors
  none of tasks);
- the module import graph has no cycle (every import counts, also one inside a function);
- no module is over 500 lines unless the first paragraph of its docstring says why, in a sentence
  that starts "Over 500 lines because".
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("scenes", "sim", "sensors", "tasks")  # lowest first
MAX_LINES = 500
REASON = "Over 500 lines because"


@lru_cache(maxsize=None)
def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the four packages."""
    mods = {}
    for pkg in LAYERS:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (its longest known prefix), or None for a third party."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in mods:
            return candidate
        parts.pop()
    return None


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


@lru_cache(maxsize=None)
def import_graph() -> dict[str, frozenset[str]]:
    """Module -> the project modules it imports (``from pkg import submodule`` names the submodule)."""
    mods = project_modules()
    graph = {}
    for module, path in mods.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, module, path.name == "__init__.py")
                names = [f"{base}.{alias.name}" for alias in node.names] + [base]
                if any(_resolve(n, mods) not in (None, _resolve(base, mods)) for n in names[:-1]):
                    names = names[:-1]  # `from pkg import submodule`: the submodule, not pkg/__init__
            else:
                continue
            targets.update(t for t in (_resolve(n, mods) for n in names) if t and t != module)
        graph[module] = frozenset(targets)
    return graph


def test_the_packages_are_found():
    mods = project_modules()
    assert {"scenes.graph", "sim.encoding", "sensors.lidar", "tasks.cli"} <= set(mods)
    assert "sim.encoding_reference" in import_graph()["sim.encoding"]
    assert "scenes.capture" in import_graph()["sensors.recording"]


def test_layers_import_only_downwards():
    rank = {pkg: i for i, pkg in enumerate(LAYERS)}
    upward = [f"{m} imports {t}" for m, targets in import_graph().items() for t in sorted(targets)
              if rank[t.split(".")[0]] > rank[m.split(".")[0]]]
    assert not upward, "imports against the layering tasks -> sensors -> sim -> scenes:\n" + "\n".join(upward)


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
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
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def test_cycle_finder_finds_a_cycle():
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_the_import_graph_has_no_cycle():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _first_paragraph(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return doc.split("\n\n")[0]


def _long_modules() -> dict[str, int]:
    out = {}
    for path in project_modules().values():
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            out[path.relative_to(ROOT).as_posix()] = n
    return out


def test_long_modules_say_why():
    unexplained = [f"{name} ({n} lines)" for name, n in sorted(_long_modules().items())
                   if REASON not in _first_paragraph(ROOT / name)]
    assert not unexplained, (f"modules over {MAX_LINES} lines without a reason ('{REASON} ...') in the first "
                             "paragraph of their docstring: split them or say why:\n" + "\n".join(unexplained))

