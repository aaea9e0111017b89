"""The pipeline users run: `kfp-yolo compile`'s YAML, run end to end as the Kubeflow UI runs it.

kfp.local on the compiled YAML (`components.load_component_from_file`, the UI's raw values) is
the nearest thing to KFP's driver that runs here: it resolves each task's inputs in the DAG
that holds it. Issue 25: a run that passed the gate failed in the gate's sub-DAG (an input it
did not declare), and a gate that was not met ended SUCCEEDED. A tiny run (1 epoch, 24 images
of 64 px) through gate, export, publish and `latest`; and one whose gate is not met.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kfp_yolo.components.config.run_config import RunConfig
from kfp_yolo.pipelines.cli import main
from kfp_yolo.pipelines.summary import collect_summary

TINY = {"dataset_uri": "synthetic://shapes?images=24&imgsz=64", "imgsz": 64, "epochs": 1,
        "batch": 8, "workers": 0, "name": "tiny"}
GATE_TASK = "gate-not-met-component"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """The default config's pipeline, compiled for a cluster (launcher local)."""
    output = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    assert main(["compile", "-o", str(output)]) == 0
    return output


def _run(compiled: Path, root: Path, **arguments) -> tuple[Path, str]:
    """Runs the YAML as the UI would; (this run's folder, the error kfp.local raised or "")."""
    from kfp import components, local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               raise_on_error=True)
    pipeline = components.load_component_from_file(str(compiled))
    error = ""
    try:
        pipeline(**arguments)
    except RuntimeError as exc:
        error = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    (run_dir,) = [path for path in root.iterdir() if path.is_dir()]
    return run_dir, error


@pytest.fixture
def yolo_env(tmp_path, monkeypatch):
    from kfp_yolo.components.runtime import offline_environment

    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    for key in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_VERBOSE", "MPLBACKEND",
                "YOLO_CONFIG_DIR"):
        monkeypatch.delenv(key, raising=False)  # restored after the test
    offline_environment(tmp_path / "yolo", load_ultralytics=False)  # the steps inherit it


def test_a_good_run_of_the_compiled_pipeline_publishes_a_complete_version(
        compiled, tmp_path, yolo_env):
    registry = tmp_path / "registry"
    run_dir, error = _run(compiled, tmp_path / "root", **TINY, min_map50_95=0.0,
                          registry_uri=str(registry))
    assert error == ""
    ran = {path.name for path in run_dir.iterdir()}
    assert {"evaluate-component", "export-onnx-component", "publish-component"} <= ran
    assert GATE_TASK not in ran
    latest = json.loads((registry / "tiny" / "latest").read_text())
    version = Path(latest["uri"])
    assert version.parent == registry / "tiny"
    assert {"best.pt", "model.onnx", "data.yaml", "README.md"} <= {p.name for p in
                                                                   version.iterdir()}
    summary = collect_summary(run_dir, RunConfig(**TINY, min_map50_95=0.0,
                                                 registry_uri=str(registry)), elapsed_s=0)
    assert summary["status"] == "succeeded" and summary["steps"]["publish"] == "succeeded"


def test_a_gate_not_met_ends_the_run_failed_with_the_gates_sentence(compiled, tmp_path,
                                                                    yolo_env):
    run_dir, error = _run(compiled, tmp_path / "root", **TINY, min_map50_95=1.0)
    assert f"Inner task failed: '{GATE_TASK}'" in error, error
    record = json.loads((run_dir / GATE_TASK / "failure.json").read_text())
    assert record["exit_code"] == 1
    assert re.match(r"quality gate not met: mAP50-95 \d\.\d{4} < min_map50_95 1\.0 \(champion: "
                    r"none published\); nothing was exported or published", record["message"])
    # the evaluate step succeeded: its report and metrics stay viewable
    report = (run_dir / "evaluate-component" / "report").read_text()
    assert "Gate: mAP50-95" in report and "**FAILED**" in report
    assert not (run_dir / "export-onnx-component").exists()
    # kfp-yolo run reads the same folder the same way: failed, the gate's reason, exit 1
    summary = collect_summary(run_dir, RunConfig(**TINY, min_map50_95=1.0), elapsed_s=0)
    assert summary["status"] == "failed" and summary["failure"] is None
    assert summary["reason"].startswith("quality gate not met: mAP50-95 ")
    assert summary["steps"]["export"] == "skipped (gate)"
