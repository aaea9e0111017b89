"""The `model` key given as a path or URI: what load, validate-config and the worker check.

A bare YAML name is ultralytics' own (checked against the YAMLs it ships); a model YAML file
that exists is read (a few hundred bytes, no data) and must be a detection model; a path that
is not there is refused for a run on this machine (`kfp-yolo run`, validate-config with
launcher local), not at load (a cluster's pods may have it in their image); a .pt URI (s3://,
minio://, file://) or a registry version is accepted at load, and the plan step fetches and
checks it (tests/integration/test_warm_start_runs.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.errors import UserError
from kfp_yolo.pipelines.cli import main


def _shipped(name: str) -> Path:
    import importlib.util

    folder = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0])
    return next((folder / "cfg" / "models").rglob(name))


@pytest.fixture
def models(tmp_path) -> Path:
    shutil.copy(_shipped("yolov8.yaml"), tmp_path / "mydet.yaml")
    shutil.copy(_shipped("yolov8-seg.yaml"), tmp_path / "mine.yaml")
    (tmp_path / "notes.yaml").write_text("epochs: 3\n")
    return tmp_path


def test_an_own_detection_yaml_is_accepted_as_a_path(models):
    assert load_config(None, [f"model={models / 'mydet.yaml'}"]).model.endswith("mydet.yaml")


@pytest.mark.parametrize("name, says", [
    ("mine.yaml", "is a Segment model, and kfp-yolo trains object detectors"),
    ("notes.yaml", "is not an ultralytics model YAML (one with a backbone: and a head: list"),
])
def test_an_own_yaml_of_another_kind_is_refused_at_load(models, name, says):
    with pytest.raises(UserError, match=r"^--set: model=.* is invalid: ") as err:
        load_config(None, [f"model={models / name}"])
    assert says in str(err.value)


@pytest.mark.parametrize("model", ["s3://models/base/best.pt", "minio://models/b/last.pt",
                                   "file:///models/best.pt", "registry:champion",
                                   "registry:latest", "registry:20261104T093012Z-1a2b3c4d"])
def test_a_checkpoint_uri_or_registry_version_is_accepted_for_the_plan_step_to_fetch(model):
    assert load_config(None, [f"model={model}", "registry_uri=s3://models/registry"]).model == model


@pytest.mark.parametrize("model, says", [
    ("gs://bucket/m.pt", "unsupported scheme 'gs'"),
    ("https://example.com/m.pt", "unsupported scheme 'https'"),
    ("file:///models/m.yaml", "a model URI names a .pt checkpoint"),
    ("registry:../x", "a registry model is registry:champion, registry:latest or registry:VERSION"),
])
def test_a_model_uri_nothing_can_fetch_is_refused_at_load(model, says):
    with pytest.raises(UserError, match=r"^--set: model=.* is invalid: ") as err:
        load_config(None, [f"model={model}", "registry_uri=/tmp/registry"])
    assert says in str(err.value)


def test_a_registry_model_without_a_registry_is_refused_at_load():
    with pytest.raises(UserError, match=r"model='registry:champion' reads the registry, and "
                                        r"registry_uri is empty; set registry_uri"):
        load_config(None, ["model=registry:champion"])


def test_a_missing_model_file_is_not_refused_at_load_but_by_a_local_run(tmp_path, capsys):
    missing = tmp_path / "absent" / "m.yaml"
    assert load_config(None, [f"model={missing}"])  # may be in a cluster pod's image
    workdir = tmp_path / "w"
    assert main(["run", "--workdir", str(workdir), "--set", f"model={missing}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"kfp-yolo: error: kfp-yolo run: model='{missing}' is invalid: "
                           "there is no such file")
    assert not (workdir / "pipeline_root").exists()  # refused before any step


def test_validate_config_refuses_a_missing_model_file_when_the_train_step_trains_locally(
        tmp_path):
    from kfp_yolo.components.config.checks import NODE_POOLS, check_run_parameters
    from kfp_yolo.components.config.run_config import COMPILE_TIME, RunConfig, run_time_values
    from kfp_yolo.components.k8s.pools import catalog_json

    cfg = RunConfig(model=str(tmp_path / "m.pt"))
    values = {**run_time_values(cfg), NODE_POOLS: catalog_json()}
    compiled = {key: getattr(cfg, key) for key in COMPILE_TIME}
    with pytest.raises(UserError, match=r"^run parameter: model='.*m\.pt' is invalid: there is "
                                        r"no such file"):
        check_run_parameters(values, compiled=compiled)
    (tmp_path / "m.pt").write_bytes(b"x")
    assert check_run_parameters(values, compiled=compiled).model == cfg.model



def test_a_search_with_a_fetched_checkpoint_is_refused_at_load():
    """The search's trials train from `model` as given, not from the plan step's copy."""
    with pytest.raises(UserError, match=r"a hyperparameter search \(hpo_trials > 0\) trains its "
                                        r"trials from a model YAML or a local \.pt"):
        load_config(None, ["model=s3://models/base/best.pt", "hpo_trials=4"])
