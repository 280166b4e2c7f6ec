"""The layout's rules (docs/architecture.md), read from the source: each stage of `miniplm/` imports only the stages
below it, no module imports itself back through others, the library never imports Prefect or the orchestration, and
`tasks/` never import `flows/`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# lowest first: a module may import its own layer and those listed before it
LAYERS = [
    {"miniplm.config", "miniplm.progress", "miniplm.version"},
    {"miniplm.store"},
    {"miniplm.data"},
    {"miniplm.scoring"},
    {"miniplm.selection"},
    {"miniplm.training"},
    {"miniplm.experiment"},
    {"miniplm", "miniplm.pipeline_steps", "miniplm.run_status"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module imported anywhere in the file (top level, in functions, under TYPE_CHECKING), `from a import b`
    counted as `a.b` when b is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / "miniplm").rglob("*.py"))}


MODULES = library_modules()


def layer(module: str) -> int:
    for level, roots in enumerate(LAYERS):
        if module in roots or any(module.startswith(f"{r}.") for r in roots if r != "miniplm"):
            return level
    raise AssertionError(f"{module}: in no layer of docs/architecture.md; add it to a stage")


def own_imports(module: str) -> set[str]:
    """The library modules `module` imports (a name that is not a module, such as `miniplm.open`, dropped)."""
    return {name for name in imports(MODULES[module]) if name in MODULES and name != module}


def test_every_library_module_belongs_to_a_stage():
    for module in MODULES:
        layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_stage_imports_only_the_stages_below_it(module):
    upward = [name for name in own_imports(module) if layer(name) > layer(module)]
    assert not upward, f"{module} (layer {layer(module)}) imports a higher stage: {upward}"


def test_no_import_cycle_in_the_library():
    graph = {m: own_imports(m) - {"miniplm"} for m in MODULES}  # a subpackage's own import of the root is an edge up
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n) :] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("folder, forbidden", [
    ("miniplm", ("prefect", "flows", "tasks", "infra", "bench", "tests")),
    ("tasks", ("flows", "infra", "bench", "tests")),
    ("flows", ("infra", "bench", "tests")),
])  # fmt: skip
def test_the_library_works_without_the_orchestration(folder, forbidden):
    for path in sorted((ROOT / folder).rglob("*.py")):
        bad = sorted(n for n in imports(path) if n.split(".")[0] in forbidden)
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_rules_see_a_violation(tmp_path):
    """The checks above read what they claim to: an upward import and a lazy one are both found."""
    src = tmp_path / "m.py"
    src.write_text("from miniplm.data import corpus\n\ndef f():\n    from miniplm.experiment.arms import plan_runs\n")
    found = imports(src)
    assert {"miniplm.data.corpus", "miniplm.experiment.arms"} <= found
    assert layer("miniplm.experiment.arms") > layer("miniplm.data.corpus") > layer("miniplm.store.shards")
