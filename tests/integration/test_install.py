"""The wheel as a user gets it: built, installed into a fresh virtualenv, run from a user's folder.

The wheel is built from a copy of the sources (as a clean clone would be) and installed with
pip into a new virtualenv. Its dependencies (torch alone is 5 GB) are borrowed from the
development environment through a .pth file placed *after* the new environment's own
site-packages, so every kfp_yolo file comes from the wheel and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "components", "pipelines", "k8s/node-pools.yaml")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        source, target = ROOT / name, src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(out), str(src)],
                   check=True, timeout=300, capture_output=True)
    (built,) = out.glob("kfp_yolo-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True,
                   timeout=120)
    python = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--quiet", "--no-deps", str(wheel)], check=True, timeout=300,
                   capture_output=True)
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                   "print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    ours = sysconfig.get_paths()["purelib"]
    # "zz" sorts last: the dependencies come after the wheel's own files on sys.path
    (purelib / "zz_dev_dependencies.pth").write_text(
        "\n".join([ours, *site.getsitepackages()]) + "\n")
    return env


def _site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python3*/site-packages")
    return found


def test_wheel_holds_only_the_kfp_yolo_namespace_and_the_catalog(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"kfp_yolo"}, tops
    assert "kfp_yolo/components/node-pools.yaml" in names
    assert "kfp_yolo/components/training/worker.py" in names
    catalog = zipfile.ZipFile(wheel).read("kfp_yolo/components/node-pools.yaml").decode()
    assert catalog == (ROOT / "k8s" / "node-pools.yaml").read_text()  # the file, not a link


def test_site_packages_has_no_top_level_components_or_pipelines(venv: Path):
    site_packages = _site_packages(venv)
    assert not (site_packages / "components").exists()
    assert not (site_packages / "pipelines").exists()
    assert (site_packages / "kfp_yolo" / "components" / "node-pools.yaml").is_file()


def _user_folder(tmp_path: Path, shadow: bool) -> Path:
    """A user's project folder; with shadow, it has its own components/ and pipelines/."""
    folder = tmp_path / ("with-own-packages" if shadow else "empty")
    folder.mkdir()
    if shadow:
        for package in ("components", "pipelines"):
            (folder / package).mkdir()
            (folder / package / "__init__.py").write_text(
                "raise ImportError('the user\\'s own package was imported')\n")
        (folder / "components" / "pools.py").write_text("raise ImportError('shadowed')\n")
    return folder


def _run(venv: Path, cwd: Path, *argv: str, config_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.update(YOLO_CONFIG_DIR=str(config_dir), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    return subprocess.run([str(venv / "bin" / "kfp-yolo"), *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("shadow", [False, True], ids=["empty-folder", "own-components"])
def test_quotas_and_plan_from_a_users_folder(venv: Path, tmp_path: Path, shadow: bool,
                                             tmp_path_factory: pytest.TempPathFactory):
    folder = _user_folder(tmp_path, shadow)
    config_dir = tmp_path_factory.getbasetemp() / "install-yolo-config"  # probe cache, shared
    out = folder / "quotas"
    result = _run(venv, folder, "quotas", "-o", str(out), config_dir=config_dir)
    assert result.returncode == 0, result.stderr
    assert (out / "resourceflavors.yaml").is_file() and (out / "clusterqueue.yaml").is_file()

    result = _run(venv, folder, "plan", "--model", "yolov5l.yaml", "--imgsz", "640", "--batch",
                  "16", "--precision", "amp", "--json", config_dir=config_dir)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["pool"] and plan["peak_mib"] > 0 and plan["max_batch"]


def test_the_worker_module_runs_from_the_wheel(venv: Path, tmp_path: Path):
    # torchrun's -m target, from a folder whose own components/ would shadow a top-level one
    folder = _user_folder(tmp_path, shadow=True)
    result = subprocess.run([str(venv / "bin" / "python"), "-m",
                             "kfp_yolo.components.training.worker", "--help"], cwd=folder,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--spec" in result.stdout
