"""The whole DAG through `kfp-yolo run` (kfp.local, SubprocessRunner) on a tiny config."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from testdata import COCO8

TINY = ["epochs=1", "dataset_uri=synthetic://shapes?images=32&imgsz=64", "imgsz=64", "batch=8",
        "workers=0"]


def _run(workdir: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, dict]:
    args = [sys.executable, "-m", "kfp_yolo.pipelines.cli", "run", "--workdir", str(workdir)]
    for item in [*TINY, *overrides]:
        args += ["--set", item]
    result = subprocess.run(args, capture_output=True, text=True, timeout=900)
    summary_path = workdir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return result, summary


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def passed_run(tmp_path_factory, registry):
    return _run(tmp_path_factory.mktemp("passed"), "min_map50_95=0", f"registry_uri={registry}",
                "name=tiny")


def test_full_run_succeeds_with_every_artifact(passed_run):
    result, summary = passed_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary["status"] == "succeeded"
    assert summary["steps"] == {"validate": "succeeded", "prepare": "succeeded",
                                "plan": "succeeded", "search": "succeeded",
                                "train": "succeeded",
                                "evaluate": "succeeded", "export": "succeeded",
                                "tensorrt": "skipped", "publish": "succeeded",
                                "deploy": "skipped (deploy: none)"}
    assert Path(summary["artifacts"]["best_pt"]).stat().st_size > 100_000
    assert {"mAP50-95", "mAP50", "precision", "recall"} <= set(summary["metrics"])
    assert summary["gate"] == {"min_map50_95": 0.0, "passed": True}
    assert summary["plan"]["batch"] == 8 and summary["plan"]["peak_mib"] > 0
    assert "plan" in result.stderr and "pool" in result.stderr
    assert "summary" in result.stderr and "mAP50-95" in result.stderr


def test_the_run_records_its_throughput_for_later_plans(passed_run, registry):
    from kfp_yolo.components.planner.history import read_history

    records = read_history(str(registry / "_throughput"))  # beside the registry
    assert records and records[0]["gpu_product"] == "cpu" and records[0]["images_per_s"] > 0
    assert (records[0]["model"], records[0]["imgsz"], records[0]["batch_per_gpu"]) == \
        ("yolov5n.yaml", 64, 8)


def test_the_gated_model_is_published_with_latest_last(passed_run, registry):
    _, summary = passed_run
    latest = json.loads((registry / "tiny" / "latest").read_text())
    version = Path(summary["artifacts"]["published"])
    assert latest["uri"] == str(version) and version.parent == registry / "tiny"
    assert {"best.pt", "model.onnx", "data.yaml", "README.md"} <= {
        p.name for p in version.iterdir()}
    assert latest["metrics"]["mAP50-95"] == pytest.approx(summary["metrics"]["mAP50-95"])


def test_challenger_must_not_be_worse_than_the_champion(passed_run, registry):
    from kfp_yolo.components.evaluate import EvalResult, champion_map50_95, gate

    _, summary = passed_run
    data_yaml = Path(summary["artifacts"]["dataset"]) / "data.yaml"
    champion = champion_map50_95(str(registry), "tiny", data_yaml, imgsz=64,
                                 work=registry.parent / "champion")
    assert champion is not None
    assert champion[0] == pytest.approx(summary["metrics"]["mAP50-95"], abs=1e-4)
    assert champion_map50_95(str(registry), "other", data_yaml, imgsz=64, work=registry) is None
    assert gate(EvalResult(map50_95=champion[0], map50=0, precision=0, recall=0),
                min_map50_95=0.0, champion=champion)[0]
    # The gate itself, with a champion better than the floor.
    challenger = EvalResult(map50_95=0.55, map50=0, precision=0, recall=0)
    assert gate(challenger, min_map50_95=0.5, champion=(0.54, "v1"))[0]
    passed, verdict = gate(challenger, min_map50_95=0.5, champion=(0.56, "v1"))
    assert not passed and "worse than the published champion v1" in verdict
    passed, verdict = gate(challenger, min_map50_95=0.6, champion=None)
    assert not passed and "< min_map50_95 0.6" in verdict


def test_onnx_model_runs_and_parity_is_recorded(passed_run):
    import numpy as np
    import onnxruntime as ort

    _, summary = passed_run
    session = ort.InferenceSession(summary["artifacts"]["onnx"],
                                   providers=["CPUExecutionProvider"])
    batch = np.zeros((3, 3, 64, 64), dtype=np.float32)  # dynamic batch axis
    (output,) = session.run(None, {session.get_inputs()[0].name: batch})
    assert output.shape[0] == 3
    parity = summary["onnx_parity"]
    assert 0 <= parity["max_abs_diff"] < parity["tolerance"]


def test_tensorrt_is_skipped_with_its_reason(passed_run):
    _, summary = passed_run
    assert summary["tensorrt"]["status"] == "skipped"
    assert "tensorrt" in summary["tensorrt"]["reason"] or "CUDA" in summary["tensorrt"]["reason"]


def test_gate_stops_export(tmp_path):
    result, summary = _run(tmp_path, "min_map50_95=0.99")
    assert result.returncode == 1
    assert summary["status"] == "failed" and "quality gate not met" in summary["reason"]
    assert "< min_map50_95 0.99" in summary["reason"]
    assert summary["steps"]["export"] == "skipped (gate)"
    assert summary["artifacts"]["onnx"] is None
    assert not list(tmp_path.rglob("*.onnx"))
    assert "quality gate not met" in result.stderr


def test_parity_check_catches_a_tampered_model(passed_run, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from kfp_yolo.components.export_onnx import parity_check

    _, summary = passed_run
    best, good = summary["artifacts"]["best_pt"], summary["artifacts"]["onnx"]
    assert parity_check(best, good, imgsz=64).max_abs_diff < 1e-2
    model = onnx.load(good)
    for tensor in model.graph.initializer:  # every conv weight scaled: a real model change
        weights = numpy_helper.to_array(tensor)
        if weights.dtype == np.float32 and weights.ndim == 4:
            tensor.CopyFrom(numpy_helper.from_array(weights * 1.5, tensor.name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save(model, tampered)
    assert parity_check(best, tampered, imgsz=64).max_abs_diff > 1e-2


def test_export_step_fails_above_tolerance(passed_run, tmp_path):
    from kfp.dsl import Metrics, Model

    from kfp_yolo.components.errors import JobFailed
    from kfp_yolo.components.steps import export_onnx_component

    _, summary = passed_run
    weights = Model(uri=str(Path(summary["artifacts"]["best_pt"]).parent))
    onnx_model, parity = Model(uri=str(tmp_path / "onnx")), Metrics(uri=str(tmp_path / "m"))
    with pytest.raises(JobFailed, match="exceeds onnx_tolerance=1e-12"):
        export_onnx_component(weights, 64, 17, True, 1e-12, onnx_model, parity)
    assert parity.metadata["max_abs_diff"] > 1e-12


def test_the_published_version_holds_a_triton_repository_triton_parses(passed_run):
    from triton_checks import check_against_onnx, parse_config

    _, summary = passed_run
    version = Path(summary["artifacts"]["published"])
    config = parse_config(version / "triton" / "tiny-onnx" / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size > 0
    check_against_onnx(config, version / "triton" / "tiny-onnx" / "1" / "model.onnx")
    assert not (version / "triton" / "tiny-trt").exists()  # no engine without a GPU
    e2e = parse_config(version / "triton" / "tiny" / "config.pbtxt")
    assert (e2e.backend, e2e.parameters["head"].string_value) == ("python", "nms")
    assert "| head | nms |" in (version / "README.md").read_text()  # the model card says so


def test_the_published_repository_loads_in_the_real_triton_and_answers(passed_run, tmp_path):
    """The version as published, in tritonserver 2.51 (the raw detector through onnxruntime in
    a python-backend model): the end-to-end model answers a photo with boxes."""
    from kfp_yolo.components.release.predict_client import class_names, infer_image
    from kfp_yolo.components.release.triton_local import LocalTriton, local_repository

    _, summary = passed_run
    version = Path(summary["artifacts"]["published"])
    assert local_repository(version / "triton", tmp_path / "repository") == ["tiny", "tiny-onnx"]
    image = next((COCO8 / "images" / "val").glob("*.jpg"))
    with LocalTriton(tmp_path / "repository", tmp_path) as server:
        names = class_names(server.url, "tiny")
        boxes = infer_image(server.url, "tiny", image.read_bytes(), conf=0.0, names=names)
    assert names and boxes  # conf 0: a 1-epoch model's boxes, in the image's pixels
    assert all(b.name in names.values() and 0 <= b.x1 <= b.x2 for b in boxes)
