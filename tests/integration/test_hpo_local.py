"""The search on this machine, for real: `kfp-yolo tune` and `kfp-yolo run --set hpo_trials=4`
train real trials through the worker under torchrun (64 synthetic 64 px images, 2 epochs a
trial; every mAP50-95 is 0.0 there, so the validation loss's tie-break is what prunes), the
budget refuses a search before any trial and stops one once spent, and a pruned trial's
torchrun is stopped by the launcher."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from kfp_yolo.components.hpo.local import run_local_search
from kfp_yolo.components.hpo.space import SearchSpace
from kfp_yolo.components.launchers.local import JobStopped, LocalLauncher
from kfp_yolo.components.spec import TrainSpec

TINY = ["dataset_uri=synthetic://shapes?images=64&imgsz=64", "imgsz=64", "batch=16",
        "hpo_epochs=2", "hpo_lr0=0.001..0.05"]


def _cli(*argv: str, overrides: list[str]) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "kfp_yolo.pipelines.cli", *argv]
    for item in overrides:
        args += ["--set", item]
    return subprocess.run(args, capture_output=True, text=True, timeout=1500)


def _spec(dataset: Path, tmp_path: Path, **changes) -> TrainSpec:
    values = dict(run_id="s", dataset_uri=str(dataset), model="yolov5n.yaml", imgsz=64, epochs=2,
                  batch=8, precision="amp", optimizer="AdamW", lr0=0.004, seed=0, workers=0,
                  nodes=1, procs_per_node=1, checkpoint_uri="", output_uri=str(tmp_path / "o"),
                  device="cpu", init_timeout_s=60)
    return TrainSpec(**{**values, **changes})


def test_tune_runs_real_trials_and_prints_only_the_table(tmp_path):
    result = _cli("tune", "--workdir", str(tmp_path), overrides=[*TINY, "hpo_trials=3"])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["trial", "lr0", "mosaic"] and len(lines) == 5
    assert lines[-1].startswith("best: trial ")
    saved = json.loads((tmp_path / "search.json").read_text())
    states = [t["state"] for t in saved["trials"]]
    assert len(states) == 3 and set(states) <= {"complete", "pruned"}
    for trial in saved["trials"]:
        # each epoch's map50_95 line reached the search; a pruned trial stopped early
        assert 1 <= trial["epochs_run"] <= 2 and len(trial["metrics"]) == trial["epochs_run"]
        # each epoch's val_loss line too: ultralytics' validator still hands the trainer its
        # val/* losses
        assert len(trial["val_losses"]) == trial["epochs_run"]
        assert all(loss > 0 for loss in trial["val_losses"])
        assert trial["measured_gpu_h"] > 0
        if trial["state"] == "complete":
            assert trial["epochs_run"] == 2
            assert (tmp_path / "trials" / f"trial{trial['number']}" / "weights" /
                    "best.pt").is_file()
    assert saved["summary"]["estimated_gpu_h"] > 0  # the plan's figure for the chosen pool
    page = (tmp_path / "search_report.html").read_text()
    assert "<svg" in page and "<script" not in page
    assert "search: trial 0" in result.stderr


def test_tune_refuses_a_search_the_budget_cannot_pay_for_before_any_trial(tmp_path):
    result = _cli("tune", "--workdir", str(tmp_path),
                  overrides=[*TINY, "hpo_trials=4", "hpo_budget_gpu_h=0.0000001"])
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("kfp-yolo: error: hpo_budget_gpu_h=1e-07 fits 0 of hpo_trials=4 "
                           "trials: each takes about ")
    assert "raise hpo_budget_gpu_h to" in last and "Traceback" not in result.stderr
    assert not (tmp_path / "trials").exists() and result.stdout == ""


def test_the_search_stops_once_the_budget_is_spent(dataset, tmp_path):
    space = SearchSpace.from_config({"hpo_lr0": "0.001..0.01", "imgsz": 64})
    # 0.0001 h is 0.36 s: the first trial spends it, no second one starts
    result = run_local_search(_spec(dataset, tmp_path), space, trials=3, epochs=1,
                              workdir=tmp_path, budget_gpu_h=0.0001)
    assert [t.number for t in result.trials] == [0] and result.budget_reached
    assert result.summary()["budget_reached"] and result.measured_gpu_h >= 0.0001


def test_a_pruned_trials_torchrun_is_stopped(dataset, tmp_path):
    # the session's servers (SeaweedFS, MLflow) are this process's children too: only what the
    # launch started must be gone
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    lines: list[str] = []
    launcher = LocalLauncher(scratch=tmp_path / "scratch", on_line=lines.append,
                             stop_when=lambda: any(s.startswith("map50_95=") for s in lines))
    spec = _spec(dataset, tmp_path, epochs=5, metric_lines=True)
    with pytest.raises(JobStopped):
        launcher.launch(spec)
    assert sum(s.startswith("map50_95=") for s in lines) < 5
    left = [child for child in psutil.Process().children(recursive=True)
            if child.pid not in before]
    assert not left  # torchrun and its worker are gone


def test_run_searches_trains_with_the_best_and_publishes(tmp_path):
    workdir, registry = tmp_path / "run", tmp_path / "registry"
    result = _cli("run", "--workdir", str(workdir),
                  overrides=[*TINY, "hpo_trials=4", "epochs=2", "min_map50_95=0",
                             f"registry_uri={registry}", "name=searched"])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["steps"]["search"] == "succeeded" and summary["status"] == "succeeded"
    search = summary["search"]
    assert search["trials"] == 4 and search["trials_complete"] + search["trials_pruned"] == 4
    # every mAP50-95 ties at 0.0 here: the validation loss decides, and trails are stopped
    assert search["trials_complete"] >= 1 and search["trials_pruned"] >= 1, search
    # the best trial's values trained the model
    assert search["trained_with"]["lr0"] == pytest.approx(search["best_values"]["lr0"])
    assert "trained with imgsz 64, lr0" in result.stderr  # the summary table's search row
    assert Path(summary["artifacts"]["search_report"]).is_file()
    (card,) = registry.glob("searched/*/README.md")  # the version's model card
    assert "## search" in card.read_text().lower()
