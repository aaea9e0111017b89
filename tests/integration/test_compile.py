"""The compiled pipeline: KFP IR that loads back into the backend's protobuf messages."""

import subprocess
import sys
from pathlib import Path

import pytest
from compiled_pipeline import _compile, _load, _tasks
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kfp_yolo.components.config.run_config import COMPILE_TIME, RunConfig
from kfp_yolo.pipelines.cli import main
from kfp_yolo.pipelines.training import NODE_POOLS

GITOPS_CONFIG = Path(__file__).resolve().parents[2] / "k8s" / "gitops" / "train.yaml"






@pytest.mark.parametrize("config", [None, GITOPS_CONFIG], ids=["demo", "gitops"])
def test_compiled_yaml_loads_back_into_pipeline_spec(tmp_path, config):
    output = tmp_path / "pipeline.yaml"
    assert main(["compile", "-o", str(output)] + (["--config", str(config)] if config else [])) == 0
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
    assert set(params) == set(RunConfig.model_fields) - COMPILE_TIME | {NODE_POOLS}
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


GPU_TASKS = ("search-component", "train-component", "evaluate-component",
             "build-tensorrt-component")




def _producer(document: dict, task_name: str, reference: dict) -> dict:
    """The taskOutputParameter a parameter reference resolves to, through each condition's
    inputs (the driver's way: a sub-DAG's input is its condition task's input)."""
    tasks = _tasks(document)
    for parent in reversed(tasks[task_name][1]):
        if "taskOutputParameter" in reference:
            break
        reference = tasks[parent][0]["inputs"]["parameters"][reference["componentInputParameter"]]
    return reference["taskOutputParameter"]


def test_plan_outputs_place_every_gpu_task_at_run_time(tmp_path):
    output = _compile(tmp_path, "model=yolov5l.yaml", "imgsz=640", "batch=16", "precision=amp")
    document = _load(output)[0]
    executors = _platform_executors(output)
    for task in GPU_TASKS:
        executor = executors[f"exec-{task}"]
        (term,) = executor["nodeAffinity"]
        assert "matchExpressions" not in term, task  # nothing decided at compile time
        assert _producer(document, task, term["nodeAffinityJson"]) == {
            "producerTask": "plan-resources-component", "outputParameterKey": "node_affinity"}
        (toleration,) = executor["tolerations"]
        assert _producer(document, task, toleration["tolerationJson"]) == {
            "producerTask": "plan-resources-component", "outputParameterKey": "tolerations"}
        assert any(m["mountPath"] == "/dev/shm" for m in executor["emptyDirMounts"]), task
        resources = document["deploymentSpec"]["executors"][f"exec-{task}"]["container"][
            "resources"]
        assert resources["accelerator"]["resourceCount"] in ("1", 1), task
    outputs = document["components"]["comp-plan-resources-component"]["outputDefinitions"]
    assert outputs["parameters"]["node_affinity"]["parameterType"] == "STRUCT"
    assert outputs["parameters"]["tolerations"]["parameterType"] == "LIST"


def test_the_plan_step_takes_the_class_count_from_the_prepare_step(tmp_path):
    document = _load(_compile(tmp_path))[0]
    plan_inputs = document["root"]["dag"]["tasks"]["plan-resources-component"]["inputs"]
    for key in ("nc", "train_images"):  # what the planner learns from the prepared dataset
        assert plan_inputs["parameters"][key] == {"taskOutputParameter": {
            "producerTask": "prepare-dataset-component", "outputParameterKey": key}}


def test_a_batch_edit_changes_nothing_but_the_batch_default(tmp_path):
    first = _load(_compile(tmp_path / "a", "model=yolov5l.yaml", "imgsz=640", "batch=16"))
    second = _load(_compile(tmp_path / "b", "model=yolov5l.yaml", "imgsz=640", "batch=64"))
    assert first[1] == second[1]  # the platform spec: placement, requests, deadlines
    params = [doc["root"]["inputDefinitions"]["parameters"] for doc, _ in (first, second)]
    assert (params[0]["batch"]["defaultValue"], params[1]["batch"]["defaultValue"]) == (16, 64)
    for doc in (first[0], second[0]):
        del doc["root"]["inputDefinitions"]["parameters"]["batch"]["defaultValue"]
    assert first[0] == second[0]


@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob", "auto"])
def test_with_a_cluster_launcher_the_train_step_itself_gets_no_gpu(tmp_path, launcher):
    output = _compile(tmp_path, f"launcher={launcher}")
    executors = _platform_executors(output)
    assert "nodeAffinity" not in executors["exec-train-component"]
    assert "nodeAffinity" in executors["exec-evaluate-component"]
    env = {e["name"] for e in executors["exec-train-component"]["fieldPathAsEnv"]}
    assert {"POD_NAME", "POD_UID", "POD_NAMESPACE"} <= env
    resources = _load(output)[0]["deploymentSpec"]["executors"]["exec-train-component"][
        "container"]["resources"]
    assert "accelerator" not in resources
    assert resources["resourceCpuRequest"] == "{{$.inputs.parameters['pipelinechannel--step_cpu']}}"


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


def _placeholder(name: str) -> str:
    return f"{{{{$.inputs.parameters['pipelinechannel--{name}']}}}}"


def test_cluster_settings_reach_the_step_pods(tmp_path):
    output = _compile(tmp_path, "step_cpu=500m", "step_memory=3Gi", "job_timeout_s=7200",
                      "queue_timeout_s=600", "launcher=auto")
    document = _load(output)[0]
    params = document["root"]["inputDefinitions"]["parameters"]
    assert (params["step_cpu"]["defaultValue"], params["step_memory"]["defaultValue"]) == (
        "500m", "3Gi")
    executors = document["deploymentSpec"]["executors"]
    for task in ("prepare-dataset", "plan-resources", "train", "export-onnx", "publish"):
        resources = executors[f"exec-{task}-component"]["container"]["resources"]
        assert resources["resourceCpuRequest"] == _placeholder("step_cpu"), task
        assert resources["resourceMemoryRequest"] == _placeholder("step_memory"), task
    for task in ("evaluate", "build-tensorrt"):  # GPU pods keep their own requests
        resources = executors[f"exec-{task}-component"]["container"]["resources"]
        assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"]) == (
            "4", "16Gi"), task
    # The train step waits for the queue, then follows the job: its pod outlives both.
    train = _platform_executors(output)["exec-train-component"]
    assert int(train["activeDeadlineSeconds"]) == 7200 + 600 + 3600
    unlimited = _platform_executors(_compile(tmp_path / "b", "job_timeout_s=7200"))
    assert int(unlimited["exec-train-component"]["activeDeadlineSeconds"]) == 2 * 7200 + 3600


def test_the_deploy_pod_outlives_any_deploy_timeout_the_ui_can_set(tmp_path):
    """deploy_timeout_s is a run-time parameter: the compiled pod deadline is its largest value."""
    from kfp_yolo.components.config.serving_keys import DEPLOY_TIMEOUT_MAX

    executors = _platform_executors(_compile(tmp_path, "deploy_timeout_s=60"))
    assert int(executors["exec-deploy-component"]["activeDeadlineSeconds"]) == (
        DEPLOY_TIMEOUT_MAX + 600)
    assert RunConfig.model_fields["deploy_timeout_s"].metadata[-1].le == DEPLOY_TIMEOUT_MAX


def test_compile_neither_imports_torch_nor_plans(tmp_path):
    output = tmp_path / "p.yaml"
    code = ("import sys\n"
            "from kfp_yolo.pipelines.cli import main\n"
            f"assert main(['compile', '--config', {str(GITOPS_CONFIG)!r}, '-o', "
            f"{str(output)!r}]) == 0\n"
            "print(sorted(m for m in ('torch', 'ultralytics', 'kfp_yolo.components.planner')"
            " if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
    assert output.exists()


def test_a_bad_catalog_fails_the_compile(tmp_path, capsys):
    pools = tmp_path / "pools.yaml"
    pools.write_text("pools:\n  - name: x\n    gpu_memory_mib: 8192\n")
    assert main(["compile", "-o", str(tmp_path / "p.yaml"), "--pools", str(pools)]) == 2
    assert f"{pools}:2: pool #1 lacks" in capsys.readouterr().err
    assert not (tmp_path / "p.yaml").exists()


def test_a_config_the_catalog_cannot_run_fails_the_compile(tmp_path, capsys):
    """bf16 with only pre-Ampere pools: refused at compile (and so at submit), not by the run's
    first step on the cluster."""
    pools = tmp_path / "pools.yaml"
    pools.write_text("pools:\n  - {name: t4, gpu_product: Tesla-T4, gpu_memory_mib: 15360, "
                     "gpus_per_node: 4, max_nodes: 4, flavor: gpu-16g}\n")
    argv = ["compile", "-o", str(tmp_path / "p.yaml"), "--pools", str(pools)]
    assert main([*argv, "--set", "precision=bf16"]) == 2
    assert "kfp-yolo: error: config: precision='bf16' is invalid: no node pool's GPU runs bf16" \
        in capsys.readouterr().err
    assert not (tmp_path / "p.yaml").exists()
    assert main(argv) == 0


def test_compile_time_keys_are_not_parameters_but_described(tmp_path):
    output = _compile(tmp_path, "launcher=trainjob", "image=registry.example/kfp-yolo:2",
                      "procs_per_node=4", "job_timeout_s=7200", "queue_timeout_s=600")
    document = _load(output)[0]
    params = document["root"]["inputDefinitions"]["parameters"]
    assert not set(params) & COMPILE_TIME
    assert {"launcher", "image", "procs_per_node", "job_timeout_s", "queue_timeout_s"} <= (
        COMPILE_TIME)
    description = document["pipelineInfo"]["description"]
    for fixed in ("image=registry.example/kfp-yolo:2", "job_timeout_s=7200",
                  "launcher=trainjob", "procs_per_node=4", "queue_timeout_s=600"):
        assert fixed in description, fixed
    # the compiled values are constants of the validate step, whose checked `config` the
    # train step takes whole
    source = document["deploymentSpec"]["executors"]["exec-validate-config-component"][
        "container"]["command"][-1]
    assert "'launcher': 'trainjob'" in source and "'procs_per_node': 4" in source
    train = document["root"]["dag"]["tasks"]["train-component"]["inputs"]["parameters"]
    assert train["config"] == {"taskOutputParameter": {
        "outputParameterKey": "config", "producerTask": "validate-config-component"}}
    assert not {"launcher", "procs_per_node"} & set(train)


def test_validate_config_runs_first_and_the_steps_take_its_checked_values(tmp_path):
    output = _compile(tmp_path)
    document = _load(output)[0]
    tasks = _tasks(document)
    validate, _ = tasks["validate-config-component"]
    assert validate["taskInfo"]["name"] == "validate-config"
    params = document["root"]["inputDefinitions"]["parameters"]
    assert set(validate["inputs"]["parameters"]) == set(params)  # every parameter, checked
    pod_settings = {"step_cpu", "step_memory", "storage_secret"}
    for name, (task, _) in tasks.items():
        if name == "validate-config-component":
            continue
        for key, reference in task["inputs"].get("parameters", {}).items():
            source = reference.get("componentInputParameter", "")
            if source and name in document["root"]["dag"]["tasks"]:
                # at the root, only pod settings (checked before any pod that uses them) are
                # read raw: a step's own inputs are the validate step's outputs
                assert source.removeprefix("pipelinechannel--") in pod_settings, (name, key)
    prepare, _ = tasks["prepare-dataset-component"]
    assert prepare["inputs"]["parameters"]["dataset_uri"] == {"taskOutputParameter": {
        "producerTask": "validate-config-component", "outputParameterKey": "dataset_uri"}}
    executors = document["deploymentSpec"]["executors"]
    resources = executors["exec-validate-config-component"]["container"]["resources"]
    assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"]) == ("500m",
                                                                                     "1Gi")
    platform = _platform_executors(output)["exec-validate-config-component"]
    assert "secretAsEnv" not in platform and "nodeAffinity" not in platform
