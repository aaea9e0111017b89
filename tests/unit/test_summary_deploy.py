"""The run summary's deploy line: skipped and why, failed, or the Ready URL, read from the task
folders kfp.local leaves (executor_output.json; a failure record when a step failed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from kfp_yolo.components.boundary import FAILURE_FILE
from kfp_yolo.components.config.run_config import RunConfig
from kfp_yolo.pipelines.summary import DEPLOY_TASK, TASKS, collect_summary, format_summary


def _run_dir(tmp_path: Path, *, deploy_url: str | None = None) -> Path:
    for task, folder in TASKS.items():
        (tmp_path / folder).mkdir()
        output = {"parameterValues": {"Output": True} if task == "evaluate" else
                  {"Output": "/reg/tiny/v1"} if task == "publish" else {}}
        (tmp_path / folder / "executor_output.json").write_text(json.dumps(output))
    if deploy_url is not None:
        (tmp_path / DEPLOY_TASK).mkdir()
        (tmp_path / DEPLOY_TASK / "executor_output.json").write_text(
            json.dumps({"parameterValues": {"Output": deploy_url}}))
    return tmp_path


def test_deploy_none_is_a_skip_with_its_reason(tmp_path):
    summary = collect_summary(_run_dir(tmp_path), RunConfig(), elapsed_s=1)
    assert summary["status"] == "succeeded"
    assert summary["steps"]["publish"] == "succeeded"
    assert summary["steps"]["deploy"] == "skipped (deploy: none)"
    assert re.search(r"\nstep deploy +skipped \(deploy: none\)\n", format_summary(summary))


def test_a_ready_inferenceservice_shows_its_url(tmp_path):
    url = "http://tiny.models.example.com"
    cfg = RunConfig(deploy="kserve", registry_uri="/reg")
    summary = collect_summary(_run_dir(tmp_path, deploy_url=url), cfg, elapsed_s=1)
    assert summary["status"] == "succeeded" and summary["steps"]["deploy"] == f"ready at {url}"


def test_a_failed_deploy_fails_the_run_and_says_which_step(tmp_path):
    run_dir = _run_dir(tmp_path)
    (run_dir / DEPLOY_TASK).mkdir()
    (run_dir / DEPLOY_TASK / FAILURE_FILE).write_text(json.dumps(
        {"type": "JobFailed", "message": "not Ready within 900 s", "exit_code": 1}))
    summary = collect_summary(run_dir, RunConfig(deploy="kserve", registry_uri="/reg"), elapsed_s=1)
    assert summary["status"] == "failed" and summary["steps"]["deploy"] == "failed"
    assert summary["reason"] == "step deploy failed: not Ready within 900 s"


def test_no_deploy_without_a_publish(tmp_path):
    run_dir = _run_dir(tmp_path)
    (run_dir / TASKS["publish"] / "executor_output.json").write_text(
        json.dumps({"parameterValues": {"Output": ""}}))
    summary = collect_summary(run_dir, RunConfig(deploy="kserve", registry_uri="/reg"), elapsed_s=1)
    assert summary["steps"]["deploy"] == "skipped (no registry_uri)"
    assert collect_summary(None, RunConfig(), elapsed_s=1)["steps"]["deploy"] == "not run"
