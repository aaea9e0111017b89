"""The package's shape (issues 11, 27): module sizes, no import cycles (function-level and
generated imports included), no components -> pipelines edge, training code free of KFP."""

from __future__ import annotations

import ast
import json
import re
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


GENERATED_IMPORT = re.compile(r"^\s*(?:from\s+(kfp_yolo[\w.]*)\s+import\s+([\w, ]+)|"
                              r"import\s+(kfp_yolo[\w.]*))", re.M)
"""An import line inside a string: source a module writes out and runs (the validate step's)."""


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes: prose, not source, even when it shows an import line."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            found.add(id(body[0].value))
    return found


def _walk_runtime(tree: ast.AST):
    """Every node that can run: the whole tree but `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if not _is_type_checking(child))


def _from_import(module: str, names: list[str], known: set[str]) -> set[str]:
    """What `from module import names` depends on: the submodules it names, and the module
    itself only for names that are not submodules (a function, a class), as Python resolves it."""
    subs = {f"{module}.{n}" for n in names if f"{module}.{n}" in known}
    return subs | ({module} if len(subs) < len(names) or not names else set())


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """kfp_yolo modules `name` imports: at module level, inside functions, and in the source
    it generates (import lines in string constants), so no edge hides from the graph."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    docstrings = _docstrings(tree)
    imported = set()
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            if node.level:
                base = name if is_package else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                module = f"{base}.{module}"
            imported |= _from_import(module, [alias.name for alias in node.names], known)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                id(node) not in docstrings:
            for match in GENERATED_IMPORT.finditer(node.value):
                module = match.group(1) or match.group(3)
                names = [a.split(" as ")[0].strip() for a in (match.group(2) or "").split(",")]
                imported |= _from_import(module, [n for n in names if n], known)
    return {m for m in imported if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_no_module_is_over_the_size_limit():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def _first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of graph as a path that ends where it starts, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    cycle = _first_cycle(_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_a_package_and_its_own_module_importing_each_other_is_a_cycle(tmp_path):
    # the shape registries/ had: the package imported its adapters inside a function, and the
    # adapters imported the package's types
    pkg = tmp_path / "reg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("def open_all():\n    from kfp_yolo.reg.adapter import A\n")
    (pkg / "adapter.py").write_text("from kfp_yolo.reg import CHAMPION\n")
    known = {"kfp_yolo.reg", "kfp_yolo.reg.adapter"}
    graph = {"kfp_yolo.reg": _imports("kfp_yolo.reg", pkg / "__init__.py", known),
             "kfp_yolo.reg.adapter": _imports("kfp_yolo.reg.adapter", pkg / "adapter.py", known)}
    assert _first_cycle(graph) == ["kfp_yolo.reg", "kfp_yolo.reg.adapter", "kfp_yolo.reg"]


def test_components_never_import_pipelines():
    # pipelines/ is what runs on the user's machine (CLI, DAG, KFP API); steps and training pods
    # get the config and its checks from components/config/, never from above
    upward = {(name, dep) for name, deps in _graph().items()
              if name.startswith("kfp_yolo.components") for dep in deps
              if dep.startswith("kfp_yolo.pipelines")}
    assert not upward, f"components -> pipelines imports: {sorted(upward)}"


def test_the_graph_sees_function_level_and_generated_imports():
    graph = _graph()
    # open_registries imports each adapter inside the function, only when it is configured
    assert "kfp_yolo.components.registries.mlflow_registry" in \
        graph["kfp_yolo.components.registries.configured"]
    # the validate step's source is generated as a string and run by KFP's executor
    assert "kfp_yolo.components.config.checks" in graph["kfp_yolo.components.steps.validate"]


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


def test_no_test_module_imports_another():
    # shared helpers live in helper modules (tests/*.py not named test_*): a test module that
    # imports another runs that module's tests' set-up and couples two topics
    tests = ROOT / "tests"
    names = {path.stem for path in tests.rglob("test_*.py")}
    offenders = []
    for path in tests.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            imported = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                        [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(tests)} imports {m}" for m in imported
                          if m.split(".")[0] in names]
    assert not offenders, offenders


def test_no_two_test_modules_share_a_name():
    # tests/ has no __init__.py: pytest imports test modules by their base name, and two of one
    # name (tests/unit/test_x.py, tests/integration/test_x.py) stop `make test` at collection.
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
