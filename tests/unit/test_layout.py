"""The package's shape (issue 11): module sizes, no import cycles, training code free of KFP."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"kfp_yolo.components": ROOT / "components", "kfp_yolo.pipelines": ROOT / "pipelines"}
MAX_LINES = 400
STEPS = "kfp_yolo.components.steps"
"""The package of the KFP step wrappers: the only part of components/ that imports kfp."""


def _modules() -> dict[str, Path]:
    """{dotted module name: file} of every module the package installs."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """kfp_yolo modules imported when `name` is imported (module level, not inside functions)."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks run nothing at import time
            continue
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            if node.level:
                base = name if is_package else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                module = f"{base}.{module}"
            imported.add(module)
            imported |= {f"{module}.{alias.name}" for alias in node.names}
    return {m for m in imported if m in known and m != name}


def test_no_module_is_over_the_size_limit():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _top_level_imports(name, path, set(modules)) for name, path in modules.items()}
    # a package importing its own submodules is how it re-exports them: not a cycle
    graph = {name: {m for m in deps if not m.startswith(name + ".")}
             for name, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail(f"import cycle: {' -> '.join(stack[stack.index(nxt):] + [nxt])}")
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_only_steps_imports_kfp_among_components():
    offenders = []
    for name, path in _modules().items():
        if not name.startswith("kfp_yolo.components.") or name == STEPS or \
                name.startswith(STEPS + "."):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "kfp" or n.startswith("kfp.") for n in names):
                offenders.append(name)
    assert not offenders, f"outside components/steps/, these import kfp: {sorted(set(offenders))}"


@pytest.mark.parametrize("module", [
    "kfp_yolo.components.training.worker",
    "kfp_yolo.components.launchers.local",
    "kfp_yolo.components.spec",
])
def test_training_code_loads_neither_kfp_nor_kubernetes(module):
    # what torchrun's -m target loads in every rank: the KFP SDK and the kubernetes client
    # cost 0.6 s and 83 MB per rank for nothing
    code = (f"import sys, json, {module}; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    loaded = set(json.loads(out))
    assert not loaded & {"kfp", "kubernetes"}, f"{module} loads {loaded & {'kfp', 'kubernetes'}}"


def test_nothing_installs_as_a_top_level_components_or_pipelines():
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p.startswith("kfp_yolo.") for p in setuptools["packages"])
    # every subpackage on disk is listed, so none is left out of the wheel
    on_disk = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert on_disk <= set(setuptools["packages"]), on_disk - set(setuptools["packages"])
