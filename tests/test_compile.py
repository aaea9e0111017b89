"""The compiled pipeline: KFP IR that loads back into the backend's protobuf messages."""

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipelines.cli import main
from pipelines.config import RunConfig


def _compile(tmp_path, *overrides):
    output = tmp_path / "pipeline.yaml"
    args = ["compile", "-o", str(output)]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    return output


def test_compiled_yaml_loads_back_into_pipeline_spec(tmp_path):
    output = _compile(tmp_path)
    spec = json_format.ParseDict(yaml.safe_load(output.read_text()),
                                 pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == "kfp-yolo-training"
    tasks = set(spec.root.dag.tasks)
    assert {"prepare-dataset-component", "train-component", "evaluate-component"} <= tasks
    assert any(name.startswith("condition") for name in tasks)  # the quality gate


def test_every_parameter_has_default_and_description(tmp_path):
    output = _compile(tmp_path, "epochs=7", "model=yolov5l.yaml")
    params = yaml.safe_load(output.read_text())["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(RunConfig.model_fields)
    for name, param in params.items():
        assert param.get("description"), name
        assert "defaultValue" in param or param.get("isOptional"), name
    assert params["epochs"]["defaultValue"] == 7
    assert params["model"]["defaultValue"] == "yolov5l.yaml"


def test_steps_use_the_image_without_pip(tmp_path):
    output = _compile(tmp_path, "image=registry.example/kfp-yolo:1.2.3")
    executors = yaml.safe_load(output.read_text())["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == "registry.example/kfp-yolo:1.2.3", name
        assert "pip install" not in " ".join(container.get("command", [])), name


def test_training_export_and_eval_are_not_cached(tmp_path):
    document = yaml.safe_load(_compile(tmp_path).read_text())
    root_tasks = document["root"]["dag"]["tasks"]
    for name in ("train-component", "evaluate-component"):
        assert root_tasks[name]["cachingOptions"].get("enableCache", False) is False, name
