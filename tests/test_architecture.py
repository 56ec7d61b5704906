"""The package's shape: imports go down the layers only, no cycles, short functions and files.

Layers, lowest first, follow the data: the base files (attnbench/*.py); model and
data; measure (what a model costs); the experiment (YAML -> plan); train (runs ->
run folders); the report (run folders -> CSV -> tables and figures); the studies
(across experiments); cost (the `profile` and `cost` commands, which measure modules
and recipes rather than runs); above them the entry module of each command (those
cli.py imports), and cli.py itself on top. A module may import its own subpackage
and anything in a lower layer, never a higher one: so `run`, a command, may write the
report when its runs are done, but train/ may not, and neither train/ nor the report
may reach into cost/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "attnbench"
LAYERS = {
    "model": 1,
    "data": 1,
    "measure": 2,
    "experiment": 3,
    "train": 4,
    "report": 5,
    "studies": 6,
    "cost": 7,
}
COMMAND_LAYER, CLI_LAYER = 8, 9
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    if module in ("attnbench.cli", "attnbench.__main__"):
        return CLI_LAYER
    if module in COMMANDS:
        return COMMAND_LAYER
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def _imports(path: Path) -> set[str]:
    """Every attnbench module `path` imports, at the top or inside a function."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "attnbench"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "attnbench":
                target = node.module
            else:
                continue
            for alias in node.names:  # `from . import files` names a module
                child = f"{target}.{alias.name}"
                found.add(child if _is_module(child) else target)
    return {m for m in found if m != module}


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:` (imports for annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {_module_name(p): _imports(p) for p in SOURCES}
COMMANDS = {  # the entry of each command: where cli.py takes its configure_parser from
    f"attnbench.{node.module}" if node.level == 1 else node.module
    for node in ast.walk(ast.parse((PACKAGE / "cli.py").read_text()))
    if isinstance(node, ast.ImportFrom) and any(a.name == "configure_parser" for a in node.names)
}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path: Path) -> None:
    module = _module_name(path)
    upward = [m for m in GRAPH[module] if _layer(m) > _layer(module)]
    assert not upward, f"{module} (layer {_layer(module)}) imports a higher layer: {upward}"


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_functions_and_files_are_short(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{path.name}: over {MAX_FILE_LINES} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_the_checks_can_fail() -> None:
    """The import reader sees relative, absolute and function-level imports."""
    assert "attnbench.data" in GRAPH["attnbench.experiment.prepare"]  # inside a function
    assert "attnbench.files" in GRAPH["attnbench.train.loop"]  # `from .. import files`
    assert _layer("attnbench.report.stats") > _layer("attnbench.train.loop")
    assert _layer("attnbench.measure.head_costs") < _layer("attnbench.train.run")
    assert _layer("attnbench.cost.cases") > _layer("attnbench.report.context")
    assert _layer("attnbench.files") == 0 and _layer("attnbench.cli") == CLI_LAYER
    assert _layer("attnbench.train.command") == COMMAND_LAYER > _layer("attnbench.train.run")
