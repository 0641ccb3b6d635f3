"""DESIGN's import rules as code: rooms import one way, no module imports itself back, the runtime never
loads torch, the CLI or training.

Read from the source with `ast` (nothing is imported): every `import` counts, at the top of a module, inside
a function or under `if TYPE_CHECKING:` alike, since each is a dependency someone has to follow.
The table below is docs/development.md's map; change both together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edge_rt"

# room -> the rooms it may import (besides itself). A room is a package under edge_rt/ or a module at its top.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "wire": {"errors"},
    "ops": {"errors", "wire"},
    "client": {"errors", "wire"},
    "camera": {"errors", "ops"},
    "detect": {"errors", "ops", "camera"},
    "engines": {"errors", "ops", "detect"},
    "tracking": {"errors", "ops", "camera", "detect"},
    "recording": {"errors", "ops", "camera", "detect", "tracking"},
    "stream": {"errors", "wire", "ops", "camera", "detect", "engines", "tracking", "recording"},
    "pipeline": {"errors", "wire", "ops", "camera", "detect", "engines", "tracking", "recording", "stream"},
    "config": {"errors", "wire", "ops", "camera", "detect", "engines", "tracking", "recording"},
    "runner": {"errors", "wire", "ops", "camera", "detect", "engines", "tracking", "recording", "stream", "pipeline", "config"},
    "root": {"client"},
    "mqtt": {"root", "errors", "wire", "ops", "client"},
    "frigate": {"errors", "wire", "ops", "detect", "engines", "runner"},
    # The tools: commands and what only they use. They may import the runtime; the runtime never imports them.
    "exporters": {"errors", "ops", "detect", "engines"},
    "training": {"errors", "ops", "detect", "engines", "tracking"},
    "draw": {"errors", "camera", "tracking"},
    "demo": {"errors", "client", "config", "ops", "runner", "training"},
    "bench": {"root", "errors", "wire", "ops", "camera", "detect", "engines", "tracking", "config", "runner", "frigate",
              "exporters", "training", "doctor", "stream"},
    "doctor": {"errors", "engines", "bench"},
    "cli": set(),  # filled below: the CLI may import anything
}
TOOLS = {"exporters", "training", "draw", "demo", "bench", "doctor", "cli"}
RUNTIME = set(ALLOWED) - TOOLS
ALLOWED["cli"] = set(ALLOWED) - {"cli"}
HEAVY = {"torch", "torchvision", "ultralytics"}  # the train extra: never on an edge image


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    return {"config_values": "config", "__main__": "cli"}.get(parts[1], parts[1])


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement in `module`; `from X import y` names X.y when
    that is a module, else X."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in modules() else target), node.lineno


@cache
def graph() -> dict[str, set[str]]:
    """edge_rt's modules -> the edge_rt modules they import."""
    out: dict[str, set[str]] = {}
    for module in modules():
        deps = set()
        for name, _ in imports_of(module):
            while name not in modules() and "." in name:
                name = name.rpartition(".")[0]  # `import edge_rt.x.attr` or a package's attribute
            if name in modules() and name != module:
                deps.add(name)
        out[module] = deps
    return out


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
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
                found.append(_one_cycle(g, set(component)))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def _one_cycle(g: dict[str, set[str]], component: set[str]) -> list[str]:
    """A path start -> ... -> start inside the component, to print."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(g[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in {component}")


def test_every_import_of_edge_rt_names_a_module_that_exists() -> None:
    """A module that moved leaves no import of its old path behind (an editable install elsewhere on the
    machine could still answer it, and hide the mistake until a clean clone)."""
    wrong = []
    for module, path in modules().items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            wrong += [f"{module}: line {node.lineno}: {n}" for n in names if n.startswith("edge_rt") and n not in modules()]
    assert not wrong, "imports of modules that do not exist:\n" + "\n".join(wrong)


def test_every_room_has_a_rule() -> None:
    rooms = {room(m) for m in modules()}
    assert rooms <= set(ALLOWED), f"rooms without a rule in ALLOWED: {sorted(rooms - set(ALLOWED))}"


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_rooms_import_one_way() -> None:
    wrong = [
        f"{module} ({room(module)}) imports {dep} ({room(dep)}): line {line}"
        for module in modules()
        for dep, line in imports_of(module)
        if dep.startswith("edge_rt")
        and (dep_room := room(dep)) != room(module)
        and dep_room not in ALLOWED[room(module)]
    ]
    assert not wrong, "imports that run the wrong way (see ALLOWED):\n" + "\n".join(wrong)


def test_runtime_never_imports_tools_or_torch() -> None:
    wrong = [
        f"{module} imports {dep}: line {line}"
        for module in modules()
        if room(module) in RUNTIME
        for dep, line in imports_of(module)
        if dep.split(".")[0] in HEAVY or (dep.startswith("edge_rt.") and room(dep) in TOOLS)
    ]
    assert not wrong, "the runtime (what an edge image runs) must not load torch, the CLI or training:\n" + "\n".join(wrong)


def test_top_level_stays_small() -> None:
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(top) <= 10, f"{len(top)} modules at edge_rt/'s top level: give them a room ({top})"


def test_every_room_says_what_it_may_import() -> None:
    missing = [p.parent.name for p in sorted(PACKAGE.glob("*/__init__.py")) if "May import" not in (ast.get_docstring(ast.parse(p.read_text())) or "")]
    assert not missing, f"rooms whose __init__ docstring does not say what they may import: {missing}"


# The checker itself, on made-up graphs: it must see what it is there to see.
@pytest.mark.parametrize(
    ("g", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b", "a"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c", "a"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_cycle_finder(g: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(g) == expected


@pytest.mark.parametrize(
    ("module", "dep", "allowed"),
    [
        ("edge_rt.camera.capture", "edge_rt.wire.security", False),  # a camera knows nothing of the bus
        ("edge_rt.runner", "edge_rt.cli.run", False),
        ("edge_rt.pipeline", "edge_rt.training.synth", False),
        ("edge_rt.camera.capture", "edge_rt.ops.memory", True),
        ("edge_rt.cli.run", "edge_rt.runner", True),
        ("edge_rt.config_values", "edge_rt.engines", True),
    ],
)
def test_rule_table(module: str, dep: str, allowed: bool) -> None:
    assert (room(dep) in ALLOWED[room(module)]) is allowed
