"""The compiled pipeline: KFP IR that loads back into the backend's protobuf messages."""

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kfp_yolo.pipelines.cli import main
from kfp_yolo.pipelines.config import RunConfig


def _load(output):
    """(PipelineSpec document, PlatformSpec document): KFP writes both into one YAML file."""
    documents = list(yaml.safe_load_all(output.read_text()))
    return documents[0], (documents[1] if len(documents) > 1 else {})


def _compile(tmp_path, *overrides):
    output = tmp_path / "pipeline.yaml"
    args = ["compile", "-o", str(output)]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    return output


def test_compiled_yaml_loads_back_into_pipeline_spec(tmp_path):
    output = _compile(tmp_path)
    pipeline, platform = _load(output)
    spec = json_format.ParseDict(pipeline, pipeline_spec_pb2.PipelineSpec())
    platform_spec = json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    assert "kubernetes" in platform_spec.platforms
    assert spec.pipeline_info.name == "kfp-yolo-training"
    tasks = set(spec.root.dag.tasks)
    assert {"prepare-dataset-component", "train-component", "evaluate-component"} <= tasks
    assert any(name.startswith("condition") for name in tasks)  # the quality gate


def test_every_parameter_has_default_and_description(tmp_path):
    output = _compile(tmp_path, "epochs=7", "model=yolov5l.yaml")
    params = _load(output)[0]["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(RunConfig.model_fields)
    for name, param in params.items():
        assert param.get("description"), name
        assert "defaultValue" in param or param.get("isOptional"), name
    assert params["epochs"]["defaultValue"] == 7
    assert params["model"]["defaultValue"] == "yolov5l.yaml"


def test_steps_use_the_image_without_pip(tmp_path):
    output = _compile(tmp_path, "image=registry.example/kfp-yolo:1.2.3")
    executors = _load(output)[0]["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == "registry.example/kfp-yolo:1.2.3", name
        assert "pip install" not in " ".join(container.get("command", [])), name


def test_training_export_and_eval_are_not_cached(tmp_path):
    document = _load(_compile(tmp_path))[0]
    root_tasks = document["root"]["dag"]["tasks"]
    for name in ("train-component", "evaluate-component"):
        assert root_tasks[name]["cachingOptions"].get("enableCache", False) is False, name


def _platform_executors(output) -> dict:
    return _load(output)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_gpu_tasks_require_the_plans_gpu_memory(tmp_path):
    from kfp_yolo.components.planner import plan
    from kfp_yolo.components.pools import load_pools

    output = _compile(tmp_path, "model=yolov5l.yaml", "imgsz=640", "batch=16", "precision=amp")
    expected = plan("yolov5l.yaml", imgsz=640, batch=16, precision="amp", optimizer="auto",
                    nc=80, pools=load_pools())
    executors = _platform_executors(output)
    gpu_tasks = ("exec-train-component", "exec-evaluate-component",
                 "exec-build-tensorrt-component")
    for name in gpu_tasks:
        (term,) = executors[name]["nodeAffinity"]
        assert term["matchExpressions"] == [{
            "key": "nvidia.com/gpu.memory", "operator": "Gt",
            "values": [str(expected.min_gpu_memory_mib - 1)]}], name
        assert executors[name]["tolerations"], name
        assert any(m["mountPath"] == "/dev/shm" for m in executors[name]["emptyDirMounts"])
    deployment = _load(output)[0]["deploymentSpec"]["executors"]
    for name in gpu_tasks:
        resources = deployment[name]["container"]["resources"]
        assert resources["accelerator"]["resourceCount"] in ("1", 1), name
    for name, executor in deployment.items():  # requests on every task
        assert executor["container"]["resources"].get("cpuRequest"), name
        assert executor["container"]["resources"].get("memoryRequest"), name


def test_with_pytorchjob_the_train_step_itself_gets_no_gpu(tmp_path):
    output = _compile(tmp_path, "launcher=pytorchjob")
    executors = _platform_executors(output)
    assert "nodeAffinity" not in executors["exec-train-component"]
    assert "nodeAffinity" in executors["exec-evaluate-component"]
    env = {e["name"] for e in executors["exec-train-component"]["fieldPathAsEnv"]}
    assert {"POD_NAME", "POD_UID", "POD_NAMESPACE"} <= env


def test_caching_is_off_for_train_export_and_publish(tmp_path):
    document = _load(_compile(tmp_path))[0]
    tasks = dict(document["root"]["dag"]["tasks"])
    for component in document["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    for name in ("train-component", "export-onnx-component", "publish-component"):
        assert tasks[name]["cachingOptions"].get("enableCache", False) is False, name
    assert tasks["prepare-dataset-component"]["retryPolicy"]["maxRetryCount"] >= 1


def test_no_secret_value_anywhere_in_the_compiled_yaml(tmp_path, monkeypatch):
    secret = "wJalrXUtnFEMI-K7MDENG-kfpyolo-test-secret"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAKFPYOLOTESTKEY")
    monkeypatch.setenv("KF_PIPELINES_TOKEN", secret + "-token")
    output = _compile(tmp_path, "storage_secret=team-s3")
    text = output.read_text()
    assert secret not in text and "AKIAKFPYOLOTESTKEY" not in text
    document = _load(output)[0]
    train = _platform_executors(output)["exec-train-component"]["secretAsEnv"][0]
    assert train["secretNameParameter"]["componentInputParameter"].endswith("storage_secret")
    params = document["root"]["inputDefinitions"]["parameters"]
    assert params["storage_secret"]["defaultValue"] == "team-s3"


def test_a_run_that_fits_no_pool_is_refused_at_compile_time(tmp_path):
    assert main(["compile", "-o", str(tmp_path / "p.yaml"), "--set", "model=yolov5l.yaml",
                 "--set", "imgsz=1280", "--set", "batch=512", "--set", "precision=fp32"]) == 2
    assert not (tmp_path / "p.yaml").exists()
