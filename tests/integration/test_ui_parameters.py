"""A run started from the Kubeflow UI: the compiled pipeline checks every value in its first step.

The UI hands the compiled pipeline typed values that never pass through `kfp-yolo`'s config
loader. Here the compiled YAML itself is run with kfp.local, bad values passed the way the UI
passes them: the run fails in `validate-config`, in seconds, with the sentence `--set` gives,
and no other step starts. Every parameter issue 17 names is run end to end (a few seconds each);
the step the YAML ships is also executed directly, from the YAML's own source, for every bad
value.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from kfp_yolo.components.errors import UserError
from kfp_yolo.pipelines.cli import main

VALIDATE = "validate-config-component"
# (parameter, a value the UI form lets through, what the sentence must say)
BAD_VALUES = [
    ("epochs", -1, "epochs=-1 is invalid: Input should be greater than or equal to 1"),
    ("precision", "fp8", "precision='fp8' is invalid: Input should be 'amp', 'fp32' or 'bf16'"),
    ("imgsz", 100, "imgsz=100 is invalid: must be a multiple of 32"),
    ("model", "rtdetr-l.yaml", "model='rtdetr-l.yaml' is invalid: 'rtdetr-l.yaml' is an RT-DETR"),
    ("model", "yolov8n-cls.yaml", "is a classification model"),
    ("min_map50_95", 2.0, "min_map50_95=2.0 is invalid: Input should be less than or equal to 1"),
    ("dataset_uri", "gs://bucket/data", "dataset_uri='gs://bucket/data' is invalid: unsupported "
                                        "scheme 'gs'"),
    ("dataset_uri", "", "dataset_uri='' is invalid: give the dataset"),
    ("optimizer", "Lion", "optimizer='Lion' is invalid: Input should be 'auto', 'SGD', 'Adam' "
                          "or 'AdamW'"),
    ("name", "My_Model", "name='My_Model' is invalid: a run and model name is 1-40 lower-case"),
    ("queue", "q" * 70, "is invalid: 70 characters long; a Kubernetes label value is at most 63"),
    ("lr0", -0.01, "lr0=-0.01 is invalid: Input should be greater than or equal to 0"),
    ("lr0", 5.0, "lr0=5.0 is invalid: Input should be less than or equal to 1"),
    ("onnx_opset", 5, "onnx_opset=5 is invalid: Input should be greater than or equal to 11"),
    ("onnx_tolerance", 0.0, "onnx_tolerance=0.0 is invalid: Input should be greater than or "
                            "equal to 0.000001"),
    ("trt_precision", "int4", "trt_precision='int4' is invalid: Input should be 'fp16', 'int8' "
                              "or 'fp32'"),
    ("registry_uri", "gs://models", "registry_uri='gs://models' is invalid: unsupported scheme "
                                    "'gs'"),
    ("namespace", "Team A", "namespace='Team A' is invalid: a Kubernetes name is 1-63"),
    ("step_cpu", "lots", "step_cpu='lots' is invalid: must be a positive CPU quantity"),
    ("workers", 65, "workers=65 is invalid"),
    ("precision", "bf16", "precision='bf16' is invalid: no node pool's GPU runs bf16"),
    # release keys that publish would skip in silence (registry_uri is empty by default)
    ("deploy", "kserve", "deploy='kserve' is invalid: it serves the version publish writes, "
                         "and publish needs registry_uri"),
    ("model_registry_address", "http://mr:8080", "model_registry_address='http://mr:8080' is "
                                                 "invalid: it registers the version publish"),
    ("serving_service_account", "s" * 254, "is invalid: must be a Kubernetes name such as "
                                           "kfp-yolo-serving: 254 characters long"),
    # the search's keys (components/config/hpo_keys.py)
    ("hpo_mosaic", "0:1", "hpo_mosaic='0:1' is invalid: give a range LOW..HIGH such as 0..1"),
    ("hpo_algorithm", "grid", "hpo_algorithm='grid' is invalid: Input should be 'tpe', "
                              "'multivariate-tpe' or 'random'"),
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """The pipeline YAML as a user uploads it (compiled for a cluster)."""
    output = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    assert main(["compile", "-o", str(output)]) == 0
    return output


def _document(path: Path) -> dict:
    return next(yaml.safe_load_all(path.read_text()))


def _shipped_step(path: Path):
    """The validate step's function as the compiled YAML ships it (its container's source)."""
    container = _document(path)["deploymentSpec"]["executors"][f"exec-{VALIDATE}"]["container"]
    namespace: dict = {}
    exec(compile(container["command"][-1], "<compiled validate step>", "exec"), namespace)
    return namespace["validate_config_component"]


def _defaults(path: Path) -> dict:
    params = _document(path)["root"]["inputDefinitions"]["parameters"]
    return {name: param["defaultValue"] for name, param in params.items()}


@pytest.mark.parametrize(("key", "value", "sentence"), BAD_VALUES,
                         ids=[f"{k}={str(v)[:12]}" for k, v, _ in BAD_VALUES])
def test_the_shipped_step_refuses_each_bad_value_naming_it(compiled, key, value, sentence):
    step = _shipped_step(compiled)
    values = _defaults(compiled)
    if (key, value) == ("precision", "bf16"):  # a catalog of pre-Ampere GPUs only
        values["node_pools"] = ('{"pools":[{"name":"t4","gpu_product":"Tesla-T4",'
                                '"gpu_memory_mib":15360,"gpus_per_node":4,"max_nodes":4,'
                                '"flavor":"gpu-16g"}]}')
    with pytest.raises(UserError) as err:
        step(**{**values, key: value})
    message = str(err.value)
    assert message.startswith("run parameter: ") and sentence in message, message
    assert message.count("\n") == 0 and message.endswith(".")


def test_a_serving_gpu_no_pool_has_is_refused(compiled):
    """deploy: kserve with more GPU memory than any pool: the InferenceService would never be
    scheduled, and the deploy step would wait deploy_timeout_s after a whole training."""
    step = _shipped_step(compiled)
    values = {**_defaults(compiled), "deploy": "kserve", "registry_uri": "s3://models/r"}
    with pytest.raises(UserError, match=r"^run parameter: serving_gpu_memory_mib=200000 is "
                                        r"invalid: no node pool's GPU has that much memory "
                                        r"\(the catalog's largest has 81559 MiB\)"):
        step(**{**values, "serving_gpu_memory_mib": 200000})


def test_a_local_launcher_pipeline_says_its_cluster_job_keys_change_nothing(compiled, capsys):
    """Compiled with launcher=local, the train step trains in its own pod: a queue typed into
    the form is said to change nothing (description and validate-config's log)."""
    description = _document(compiled)["pipelineInfo"]["description"]
    assert "With launcher=local the train step trains in its own pod: queue, " in description
    step = _shipped_step(compiled)
    step(**{**_defaults(compiled), "queue": "team-q", "backoff_limit": 3})
    (warning,) = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert warning.startswith("validate-config: warning: queue='team-q' change nothing: this "
                              "pipeline was compiled with launcher=local")
    assert "backoff_limit" not in warning  # only the keys set off their default


def test_the_shipped_step_passes_checked_values_on(compiled):
    step = _shipped_step(compiled)
    values = _defaults(compiled)
    checked = step(**{**values, "optimizer": "SGD", "lr0": 0.0, "epochs": 3})
    assert checked.epochs == 3 and checked.optimizer == "SGD"
    assert checked.lr0 == 0.01  # 0 = the optimizer's default
    assert set(checked._fields) == set(values) | {"config"}  # every value, for lineage
    assert step(**{**values, "lr0": 0.002}).lr0 == 0.002


def test_a_cluster_launcher_without_a_cluster_is_refused_first(tmp_path, monkeypatch):
    output = tmp_path / "pipeline.yaml"
    assert main(["compile", "-o", str(output), "--set", "launcher=pytorchjob"]) == 0
    step, values = _shipped_step(output), _defaults(output)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    with pytest.raises(UserError, match=r"a cluster launcher \(pytorchjob, trainjob or auto\) "
                                        r"found no Kubernetes cluster"):
        step(**values)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert step(**values).name == "demo"


def _run_compiled(path: Path, root: Path, **arguments) -> tuple[str, float]:
    """Runs the compiled YAML with kfp.local as the UI would; (its output, seconds)."""
    from kfp import components, local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               raise_on_error=True)
    pipeline = components.load_component_from_file(str(path))
    started = time.monotonic()
    with pytest.raises(RuntimeError) as err:
        pipeline(**arguments)
    return _plain(str(err.value)), time.monotonic() - started


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# The parameters issue 17 names, each run end to end: its first bad value above.
END_TO_END = ["epochs", "precision", "imgsz", "model", "min_map50_95", "dataset_uri", "optimizer",
              "name", "queue", "lr0", "onnx_opset", "onnx_tolerance", "trt_precision",
              "registry_uri"]


@pytest.mark.parametrize("arguments", [
    {key: next(value for k, value, _ in BAD_VALUES if k == key)} for key in END_TO_END
], ids=END_TO_END)
def test_the_compiled_pipeline_fails_in_its_first_step(compiled, tmp_path, capsys, arguments):
    error, seconds = _run_compiled(compiled, tmp_path, **arguments)
    output = capsys.readouterr()
    log = _plain(output.out + output.err)
    assert f"Inner task failed: '{VALIDATE}'" in error
    assert seconds < 60
    started = set(re.findall(r"Executing task '([^']+)'", log))
    assert started == {VALIDATE}, started  # nothing downloaded data or asked for a GPU
    key = next(iter(arguments))
    refusal = [line.strip() for line in log.splitlines() if "UserError: run parameter:" in line]
    assert refusal and f"run parameter: {key}=" in refusal[-1], log[-3000:]
    run_dirs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert {p.name for d in run_dirs for p in d.iterdir()} <= {VALIDATE}



def test_kfp_yolo_run_reports_the_first_steps_refusal_as_bad_input(tmp_path):
    """A local run whose train step could never start: refused by validate-config, exit 2."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    result = subprocess.run([sys.executable, "-m", "kfp_yolo.pipelines.cli", "run", "--workdir",
                             str(tmp_path / "w"), "--set", "launcher=pytorchjob"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        "kfp-yolo: error: a cluster launcher (pytorchjob, trainjob or auto) found no Kubernetes "
        "cluster")
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["steps"]["validate"] == "failed"
    assert {state for step, state in summary["steps"].items() if step != "validate"} == {
        "not run"}
