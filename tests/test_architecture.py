"""The package's shape: one-way layers, no import cycle, small modules and functions, ruff clean.

Imports are read from the source (every ``import``, at the top of a module or inside a
function), so a lazy import counts as much as an eager one.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nerbook"

#: The faces: they present the core to people (command line, benchmarks, plots, notebooks).
FACES = ("nerbook.cli", "nerbook.__main__", "nerbook.bench", "nerbook.viz", "nerbook.notebook",
         "nerbook.serve")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def nerbook_imports(path: Path) -> set[str]:
    """Every nerbook module ``path`` imports (``from nerbook.x import y`` counts as nerbook.x,
    or nerbook.x.y when that is a module)."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in modules and m != me}


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): nerbook_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def is_face(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FACES)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None. A package's ``__init__`` and its
    own submodules are one unit (it re-exports them), so those edges are left out."""
    def own(a: str, b: str) -> bool:
        return b.startswith(a + ".") or a.startswith(b + ".")

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if own(m, n):
                continue
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in graph:
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_graph_reader_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    graph = import_graph()
    assert "nerbook.data" in graph["nerbook.tasks"]            # at the top
    assert "nerbook.synthetic" in graph["nerbook.model"]       # inside a function
    assert "nerbook.bench.contenders" in graph["nerbook.bench"]  # a package re-exporting
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_core_never_imports_a_face() -> None:
    wrong = {m: sorted(n for n in deps if is_face(n))
             for m, deps in import_graph().items() if not is_face(m) and m != "nerbook"}
    wrong = {m: deps for m, deps in wrong.items() if deps}
    assert not wrong, f"core modules importing cli/bench/viz/notebook: {wrong}"


def test_no_private_name_crosses_a_module() -> None:
    """``from nerbook.x import _y`` (or ``x._y``) elsewhere: what others need is public."""
    crossing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nerbook"):
                crossing += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and a.name != "__version__"]
    assert not crossing


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_are_small(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.name}: split it into one-idea modules"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    assert Path(ruff).exists(), "ruff is part of the dev extra: pip install -e '.[dev]'"
    run = subprocess.run([ruff, "check", "--no-cache", "nerbook", "tests", "bench", "scripts", "book"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]
