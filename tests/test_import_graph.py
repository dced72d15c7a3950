"""The data flow of DESIGN.md has no loops: no module imports itself through others at import time,
and no stage (sub-package) imports a stage that imports it back, not even inside a function."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = {}
for _path in (SRC / "radsearch").rglob("*.py"):
    _parts = _path.relative_to(SRC).with_suffix("").parts
    MODULES[".".join(_parts[:-1] if _parts[-1] == "__init__" else _parts)] = _path


def _imports(path: Path, module_level: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in (tree.body if module_level else ast.walk(tree)):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_back_at_import_time():
    graph = {m: _imports(p, module_level=True) - {m} for m, p in MODULES.items()}
    assert _cycles(graph) == []


def test_no_stage_imports_a_stage_that_imports_it_back():
    def stage(name):
        return ".".join(name.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        for target in _imports(path, module_level=False):
            if stage(target) != stage(module):
                graph.setdefault(stage(module), set()).add(stage(target))
    assert _cycles(graph) == []
