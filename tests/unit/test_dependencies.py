"""Every third-party package the installed code imports is declared in pyproject.toml.

A package that arrives only as someone else's dependency (pillow through ultralytics, urllib3
through minio) disappears the day that dependency drops it; declared, pip keeps it.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = {"tensorrt", "triton_python_backend_utils", "yolo_e2e"}
"""tensorrt: imported lazily on a GPU machine only (the build-tensorrt step skips without it).
The other two exist only inside Triton's python backend, for the models a version's repository
holds: the backend provides the first, the model's own folder the second."""


def _imports(folders: tuple[str, ...]) -> set[str]:
    found = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in
            ("kfp_yolo", "__future__")}


def _declared(*groups: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"]]
    for group in groups:
        specs += project["optional-dependencies"][group]
    return {re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower().replace("_", "-")
            for spec in specs}


@functools.cache
def _installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    names = _installed().get(module, [])
    return {n.lower().replace("_", "-") for n in names}


def test_the_packages_code_imports_are_runtime_dependencies():
    declared = _declared()
    missing = {m for m in _imports(("components", "pipelines")) - OPTIONAL
               if not _distributions(m) & declared}
    assert not missing, f"imported but not in [project] dependencies: {sorted(missing)}"


def test_what_the_tests_import_is_declared_too():
    declared = _declared("dev")
    local = {p.stem for p in (ROOT / "tests").rglob("*.py")}
    missing = {m for m in _imports(("tests",)) - local - OPTIONAL
               if not _distributions(m) & declared}
    assert not missing, f"imported by tests but not declared (add to the dev extra): {missing}"
