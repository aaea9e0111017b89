"""The table at the end of `kfp-yolo run`: every row says something true of the run."""

from __future__ import annotations

from kfp_yolo.pipelines.summary import format_summary


def _summary(**changes) -> dict:
    summary = {
        "status": "succeeded", "reason": "", "failure": None, "elapsed_s": 54.7,
        "steps": {"validate": "succeeded", "train": "succeeded"},
        "metrics": {"mAP50-95": 0.6512, "mAP50": 0.9},
        "gate": {"min_map50_95": 0.5, "passed": True},
        "artifacts": {"best_pt": "/w/best.pt", "onnx": None,
                      "training_report": "/w/train-component/report",
                      "evaluation_report": "/w/evaluate-component/report"},
        "onnx_parity": None, "tensorrt": {"status": "not run", "reason": ""},
        "plan": {"batch": 16, "peak_mib": 760, "pool": "rtx4000-8g"},
        "training": {"launcher": "local", "nodes": 1, "procs_per_node": 1, "world_size": 1,
                     "device": "cpu", "batch_per_gpu": 16, "workers": 0, "workers_planned": 1,
                     "cache": "none", "images_per_s": 106.6},
        "config": {"launcher": "local"},
    }
    summary.update(changes)
    return summary


def _rows(summary: dict) -> dict[str, str]:
    import re

    lines = format_summary(summary).splitlines()[1:-1]
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lines)


def test_a_cpu_run_says_per_process_and_why_its_workers_differ_from_the_plan():
    row = _rows(_summary())["training"]
    assert "batch 16 per process" in row and "per GPU" not in row
    assert "0 dataloader workers (1 planned, lowered by ultralytics)" in row
    gpu = {**_summary()["training"], "device": "cuda", "workers": 4, "workers_planned": 4}
    row = _rows(_summary(training=gpu))["training"]
    assert "batch 16 per GPU, 4 dataloader workers, cache" in row


def test_the_plans_pool_of_a_local_run_is_not_where_it_ran():
    assert _rows(_summary())["plan"].endswith("pool rtx4000-8g (where a cluster run would go)")
    cluster = _summary(config={"launcher": "trainjob"})
    assert _rows(cluster)["plan"].endswith("pool rtx4000-8g")


def test_the_gate_row_gives_the_score_against_the_threshold():
    assert _rows(_summary())["gate"] == "passed: mAP50-95 0.6512 >= min_map50_95 0.5"
    failed = _summary(gate={"min_map50_95": 0.7, "passed": False})
    assert _rows(failed)["gate"] == "not met: mAP50-95 0.6512 < min_map50_95 0.7"
    not_run = _summary(gate={"min_map50_95": 0.5, "passed": None}, metrics={})
    assert _rows(not_run)["gate"] == "not evaluated (min_map50_95 0.5)"


def test_the_job_summary_keeps_the_planned_workers_beside_what_ultralytics_used():
    from types import SimpleNamespace

    from kfp_yolo.components.training.trainer import job_summary

    record = {"world_size": 1, "device": "cpu", "workers": 0, "cache": "none",
              "input_pipeline": {"workers": 1, "cache": "none", "reason": "1 worker per process"},
              "epochs": [{"epoch": 1, "seconds": 2.0, "images": 100, "images_per_s": 50.0}]}
    spec = SimpleNamespace(nodes=1, procs_per_node=1, world_size=1, batch=16)
    shape = job_summary(record, spec)
    assert (shape["workers"], shape["workers_planned"]) == (0, 1)


def test_a_failed_steps_reason_names_the_step_as_the_table_does(tmp_path):
    import json

    from kfp_yolo.components.boundary import write_failure
    from kfp_yolo.components.config.run_config import RunConfig
    from kfp_yolo.components.errors import UserError
    from kfp_yolo.pipelines.summary import collect_summary

    (tmp_path / "validate-config-component").mkdir()
    (tmp_path / "validate-config-component" / "executor_output.json").write_text(json.dumps({}))
    write_failure(UserError("'/d': dataset folder does not exist."),
                  tmp_path / "prepare-dataset-component")
    summary = collect_summary(tmp_path, RunConfig(), elapsed_s=1.0)
    assert summary["reason"] == "step prepare failed: '/d': dataset folder does not exist."
    assert summary["steps"]["prepare"] == "failed"
    assert summary["failure"]["step"] == "prepare-dataset-component"  # the folder, as data
    assert summary["failure"]["exit_code"] == 2


def test_the_report_rows_say_how_to_open_a_file_named_report():
    rows = _rows(_summary())
    assert rows["training_report"] == "/w/train-component/report (HTML)"
    assert rows["evaluation_report"] == "/w/evaluate-component/report (Markdown)"
    assert rows["best_pt"] == "/w/best.pt" and "onnx" not in rows


def test_the_tensorrt_row_only_when_the_step_ran():
    assert "tensorrt" not in _rows(_summary())  # "step tensorrt" says it did not run
    skipped = _summary(tensorrt={"status": "skipped", "reason": "no CUDA device"})
    assert _rows(skipped)["tensorrt"] == "skipped: no CUDA device"
