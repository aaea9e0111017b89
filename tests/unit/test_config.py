"""Config: one typed set of keys from a file, --set, and the pipeline's parameters."""

import re
import subprocess
import sys

import pytest

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.config.run_config import (
    COMPILE_TIME,
    RunConfig,
    parameter_specs,
)
from kfp_yolo.components.errors import UserError


def test_defaults_are_the_demo():
    cfg = load_config()
    assert cfg.dataset_uri.startswith("synthetic://")
    assert cfg.launcher == "local" and cfg.world_size == 1


def test_file_and_overrides_combine(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: yolov5s.yaml\nepochs: 3\n")
    cfg = load_config(path, ["epochs=5", "precision=bf16", "onnx_dynamic=false"])
    assert (cfg.model, cfg.epochs, cfg.precision, cfg.onnx_dynamic) == (
        "yolov5s.yaml", 5, "bf16", False)


def test_unknown_key_names_file_line_and_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\n\nlearning_rate: 0.1\n")
    with pytest.raises(UserError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{path}:3" in message and "'learning_rate'" in message and "known keys" in message


def test_bad_value_from_set_is_quoted():
    with pytest.raises(UserError) as err:
        load_config(None, ["precision=fp8"])
    assert "--set" in str(err.value) and "'fp8'" in str(err.value)


@pytest.mark.parametrize("override, fragment", [
    ("imgsz=100", "multiple of 32"),
    ("epochs=0", "epochs=0"),
    ("name=Bad_Name", "lower-case"),
    ("model=yolov5l", "model YAML"),
])
def test_bad_values_are_refused(override, fragment):
    with pytest.raises(UserError, match=fragment):
        load_config(None, [override])


def test_batch_must_divide_world_size():
    with pytest.raises(UserError,
                       match=r"not divisible by the world size 3 \(nodes x procs_per_node = 3 x 1"):
        load_config(None, ["batch=16", "nodes=3"])
    assert load_config(None, ["batch=0", "nodes=3"]).batch == 0


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("epochs: 3\nmodel: [yolov5n.yaml\n")
    with pytest.raises(UserError, match=r"broken\.yaml: line \d+ is not valid YAML"):
        load_config(path)


def test_malformed_set_item():
    with pytest.raises(UserError, match="is not KEY=VALUE"):
        load_config(None, ["epochs"])


def test_every_parameter_has_a_description_and_default():
    specs = parameter_specs()
    assert [name for name, *_ in specs] == [
        name for name in RunConfig.model_fields if name not in COMPILE_TIME]
    for field in RunConfig.model_fields.values():  # the UI form and --help explain themselves
        assert field.description, field
    for name, _, default, description in specs:
        assert description, name
        assert default is not None, name


def test_cli_bad_input_is_one_sentence_and_exit_2(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochz: 3\n")
    result = subprocess.run([sys.executable, "-m", "kfp_yolo.pipelines.cli", "compile", "--config",
                             str(path), "-o", str(tmp_path / "p.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "'epochz'" in lines[0] and f"{path}:1" in lines[0]
    assert not (tmp_path / "p.yaml").exists()


def test_example_configs_load():
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        cfg = load_config(path)
        assert cfg.batch % cfg.world_size == 0, path


# ------------------------------------------------------------ cluster settings a platform team sets


def test_cluster_settings_default_to_the_clusters_own():
    cfg = load_config()
    assert (cfg.workload_priority_class, cfg.service_account, cfg.queue_timeout_s) == ("", "", 0)
    assert (cfg.step_cpu, cfg.step_memory, cfg.job_timeout_s) == ("2", "8Gi", 7 * 86400)


@pytest.mark.parametrize("overrides, expected", [
    (["step_cpu=4"], ("step_cpu", "4")),  # YAML reads a number; a quantity is a string
    (["step_cpu=0.5"], ("step_cpu", "0.5")),
    (["step_cpu=500m"], ("step_cpu", "500m")),
    (["step_memory=512Mi"], ("step_memory", "512Mi")),
    (["step_memory=1073741824"], ("step_memory", "1073741824")),
    (["service_account=kfp-yolo-pipeline"], ("service_account", "kfp-yolo-pipeline")),
    (["queue=kfp-yolo", "workload_priority_class=kfp-yolo-retraining"],
     ("workload_priority_class", "kfp-yolo-retraining")),
    (["job_timeout_s=3600"], ("job_timeout_s", 3600)),
    (["queue_timeout_s=600"], ("queue_timeout_s", 600)),
    (["launcher=trainjob"], ("launcher", "trainjob")),
    (["launcher=auto"], ("launcher", "auto")),
])
def test_cluster_settings_accept_what_kubernetes_accepts(overrides, expected):
    key, value = expected
    assert getattr(load_config(None, overrides), key) == value


@pytest.mark.parametrize("overrides, fragment", [
    (["step_cpu=0"], "step_cpu=0 is invalid: must be a positive CPU quantity"),
    (["step_cpu=2 cores"], "step_cpu='2 cores' is invalid"),
    (["step_cpu=1.5m"], "step_cpu='1.5m' is invalid"),
    (["step_memory=8GB"], "step_memory='8GB' is invalid: must be a positive memory quantity"),
    (["step_memory=8K"], "step_memory='8K' is invalid"),  # KFP takes K, Kubernetes does not
    (["step_memory=0Gi"], "step_memory='0Gi' is invalid"),
    (["service_account=Team_SA"], "service_account='Team_SA' is invalid: a Kubernetes object "
                                  "name is 1-253 lower-case letters, digits, '-' or '.'"),
    (["queue=" + "q" * 70], "queue='" + "q" * 70 + "' is invalid: 70 characters long; a "
                            "Kubernetes label value is at most 63"),
    (["priority_class=high"], "priority_class='high' is invalid: only a PyTorchJob sets"),
    (["launcher=pytorchjob", "priority_class=High"], "priority_class='High' is invalid: a "
                                                     "Kubernetes object name is 1-253"),
    (["queue=kfp-yolo", "workload_priority_class=high"],
     "workload_priority_class='high' is invalid: must be one of the classes `kfp-yolo quotas` "
     "generates: kfp-yolo-interactive, kfp-yolo-retraining"),
    (["workload_priority_class=kfp-yolo-retraining"], "set queue too"),
    (["job_timeout_s=0"], "job_timeout_s=0 is invalid"),
    (["queue_timeout_s=-1"], "queue_timeout_s=-1 is invalid"),
    (["launcher=mpijob"], "launcher='mpijob' is invalid"),
])
def test_bad_cluster_settings_are_one_sentence_naming_the_key(overrides, fragment):
    with pytest.raises(UserError) as err:
        load_config(None, overrides)
    message = str(err.value)
    assert message.startswith("--set: ") and fragment in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_priority_classes_are_those_kfp_yolo_quotas_generates():
    from pathlib import Path

    import yaml

    generated = Path(__file__).resolve().parents[2] / "k8s" / "quotas" / \
        "workloadpriorityclasses.yaml"
    names = [doc["metadata"]["name"] for doc in yaml.safe_load_all(generated.read_text())]
    for name in names:
        assert load_config(None, ["queue=q", f"workload_priority_class={name}"])
    assert len(names) == 2


def test_a_bad_cluster_setting_in_a_file_names_its_line_and_exits_2(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("queue: kfp-yolo\nstep_memory: 8 GiB\n")
    result = subprocess.run([sys.executable, "-m", "kfp_yolo.pipelines.cli", "compile", "--config",
                             str(path), "-o", str(tmp_path / "p.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{path}:2: step_memory='8 GiB' is invalid" in lines[0]


def test_cluster_examples_let_the_cluster_choose_the_launcher():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for path in [*sorted((root / "examples").glob("*.yaml")), root / "k8s/gitops/train.yaml"]:
        cfg = load_config(path)
        assert cfg.launcher == "auto", path
        assert cfg.service_account and cfg.workload_priority_class, path
@pytest.mark.parametrize("override, fragment", [
    ("epochs=true", "epochs=True is invalid: True is a boolean; give a number"),
    ("lr0=false", "lr0=False is invalid: False is a boolean"),
    ("onnx_dynamic=1", "onnx_dynamic=1 is invalid: give true or false"),
    ("onnx_tolerance=.inf", "onnx_tolerance=inf is invalid: give a finite number"),
    ("onnx_tolerance=.nan", "onnx_tolerance=nan is invalid: give a finite number"),
    ("registry_uri=https://models.example.com/reg", "unsupported scheme 'https'"),
    ("checkpoint_uri=gs://bucket/ckpt", "unsupported scheme 'gs'"),
    ("dataset_uri=ftp://host/data", "unsupported scheme 'ftp'"),
    ("registry_uri=s3:///no-bucket", "no bucket; write s3://BUCKET/PREFIX"),
    ("dataset_uri=file://relative/path", "a file URI is file:///ABSOLUTE/PATH"),
    ("dataset_uri=synthetic://shapes?images=0", "images=0 is out of range"),
    ("namespace=Bad_NS!", "namespace='Bad_NS!' is invalid: a Kubernetes name is 1-63 "
                          "lower-case letters, digits or '-'"),
    ("queue=Team Queue", "queue='Team Queue' is invalid: a Kubernetes object name is 1-253 "
                         "lower-case"),
    ("name=My_Model", "name='My_Model' is invalid: a run and model name is 1-40 lower-case"),
    ("model=rtdetr-l.yaml", "'rtdetr-l.yaml' is an RT-DETR model, which needs ultralytics' "
                            "RT-DETR trainer"),
    ("model=yolov8-rtdetr.yaml", "'yolov8-rtdetr.yaml' is an RT-DETR model"),  # by its head
    ("model=yolov8s-world.yaml", "'yolov8s-world.yaml' is a WorldDetect model, and kfp-yolo "
                                 "trains object detectors (a Detect head)"),
    ("model=yolov5q.yaml", "ultralytics has no model YAML named 'yolov5q.yaml'"),
    ("registry_uri=gs://bucket/models", "registry_uri='gs://bucket/models' is invalid: "
                                        "unsupported scheme 'gs'"),
    ("trt_precision=int4", "trt_precision='int4' is invalid"),
    ("onnx_tolerance=0", "onnx_tolerance=0 is invalid"),
    ("onnx_opset=5", "onnx_opset=5 is invalid"),
    ("lr0=-0.1", "lr0=-0.1 is invalid"),
    ("model=yolov8n-cls.yaml", "is a classification model, and kfp-yolo trains object "
                               "detectors; use a detection model such as yolov8n.yaml"),
    ("model=yolo11s-seg.pt", "is a segmentation model"),
])
def test_values_of_the_wrong_kind_are_refused(override, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        load_config(None, [override])


@pytest.mark.parametrize("value", ["s3://bucket/reg", "minio://bucket", "file:///srv/reg",
                                   "/srv/reg", "relative/reg", ""])
def test_every_store_uri_form_is_accepted(value):
    assert load_config(None, [f"registry_uri={value}"]).registry_uri == value


def test_config_key_that_is_not_a_string(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\n1: 4\n")
    with pytest.raises(UserError, match=re.escape(f"{path}: key 1 is not a name")):
        load_config(path)


def test_config_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"epochs: 3\nname: caf\xe9\n")
    with pytest.raises(UserError, match=re.escape(f"{path}: line 2 is not UTF-8 text")):
        load_config(path)


def test_bad_value_in_file_names_its_line_and_truncates_long_values(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\nonnx_tolerance: .inf\n")
    with pytest.raises(UserError, match=re.escape(f"{path}:2: onnx_tolerance=inf is invalid")):
        load_config(path)
    path.write_text(f"epochs: [{', '.join(['1'] * 200)}]\n")
    with pytest.raises(UserError) as err:
        load_config(path)
    assert len(str(err.value)) < len(str(path)) + 150 and "1, 1..." in str(err.value)


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path, capsys):
    """YAML keeps the last of two equal keys silently (issue #26): refused, both lines named."""
    from kfp_yolo.pipelines.cli import main as cli_main

    path = tmp_path / "run.yaml"
    path.write_text("name: a\nepochs: 3\nimgsz: 64\nepochs: 5\n")
    assert cli_main(["compile", "--config", str(path), "-o", str(tmp_path / "p.yaml")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"kfp-yolo: error: {path}: key 'epochs' is given twice, on lines 2 and 4; keep one "
        "(YAML would use the last without a word).")
    assert not (tmp_path / "p.yaml").exists()
    # nested mappings are checked too
    path.write_text("name: a\nnode_selector:\n  a: 1\n  a: 2\n")
    with pytest.raises(UserError, match="key 'a' is given twice, on lines 3 and 4"):
        load_config(path)
