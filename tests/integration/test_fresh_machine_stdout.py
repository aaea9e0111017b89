"""A command's stdout is its product, on a fresh machine as on the hundredth run.

Each command runs as users pipe it (`kfp-yolo job render | kubectl apply -f -`), as a
subprocess with an empty HOME and an empty ultralytics settings folder: a CI runner, a GitOps
hook pod, a new laptop. Ultralytics then writes "Creating new Ultralytics Settings ..." on its
first import; it must land on stderr, and stdout must parse as the YAML or JSON it promises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kfp_yolo.components.data.synth import SynthSpec, synthesize

ROOT = Path(__file__).resolve().parents[2]
GITOPS = str(ROOT / "k8s" / "gitops" / "train.yaml")
BANNER = "Creating new Ultralytics Settings"


def _fresh_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(parents=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("YOLO_", "XDG_", "MPLCONFIGDIR"))}
    return {**env, "HOME": str(home), "YOLO_CONFIG_DIR": str(tmp_path / "yolo-settings")}


def _run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "kfp_yolo.pipelines.cli", *argv],
                            capture_output=True, text=True, timeout=300,
                            env=_fresh_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert BANNER not in result.stdout
    return result


YAML_COMMANDS = {
    "job render pytorchjob": ["job", "render", "--launcher", "pytorchjob"],
    "job render trainjob": ["job", "render", "--config", GITOPS, "--launcher", "trainjob"],
    "serve render": ["serve", "render", "--config", GITOPS, "--version", "v1"],
    "quotas": ["quotas"],
    "compile -o -": ["compile", "-o", "-"],
}


@pytest.mark.parametrize("name", sorted(YAML_COMMANDS))
def test_yaml_on_stdout_parses_on_a_fresh_machine(tmp_path, name):
    result = _run(tmp_path, *YAML_COMMANDS[name])
    documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    assert documents and all(isinstance(doc, dict) for doc in documents), result.stdout[:500]
    if name == "compile -o -":
        assert documents[0]["pipelineInfo"]["name"] == "kfp-yolo-training"
        assert not (tmp_path / "-").exists()  # not a file named '-'
    if name == "job render pytorchjob":  # the planner's probe imported ultralytics here
        assert BANNER in result.stderr


def test_json_on_stdout_parses_on_a_fresh_machine(tmp_path):
    data = tmp_path / "shapes"
    synthesize(data, SynthSpec(images=12, imgsz=64))
    planned = _run(tmp_path, "plan", "--json")
    assert json.loads(planned.stdout)["peak_mib"] > 0 and BANNER in planned.stderr
    checked = _run(tmp_path / "again", "dataset", "check", str(data), "--json")
    assert json.loads(checked.stdout)["names"]
    assert BANNER in checked.stderr  # a fresh settings folder of its own: the banner, on stderr


def test_dataset_convert_json_parses_on_a_fresh_machine(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from exports import read_yolo, write_cvat

    data = tmp_path / "shapes"
    synthesize(data, SynthSpec(images=12, imgsz=64))
    names, images = read_yolo(data)
    export = write_cvat(tmp_path / "cvat", names, images)
    result = _run(tmp_path, "dataset", "convert", str(export), str(tmp_path / "out"), "--json")
    assert isinstance(json.loads(result.stdout), dict)
