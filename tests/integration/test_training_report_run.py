"""`kfp-yolo run --set epochs=3` leaves a training report and, with MLFLOW_TRACKING_URI set, an
MLflow run with one point per epoch (a real `mlflow server` on loopback)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(1200)

TINY = ["epochs=3", "dataset_uri=synthetic://shapes?images=32&imgsz=64", "imgsz=64", "batch=8",
        "workers=0", "min_map50_95=0", "name=report-test",
        "objective=cost"]  # cost ranks the catalog's unpriced pool last: a priced pool is chosen
NETWORK = re.compile(r"https?://|(?:src|href)\s*=\s*[\"']?//", re.IGNORECASE)


SCREENSHOTS = Path(__file__).resolve().parents[2] / "benchmarks" / "screenshot_reports.py"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("report-run")


@pytest.fixture(scope="module")
def run(workdir, mlflow_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = mlflow_server.uri
    args = [sys.executable, "-m", "kfp_yolo.pipelines.cli", "run", "--workdir", str(workdir)]
    for item in TINY:
        args += ["--set", item]
    result = subprocess.run(args, capture_output=True, text=True, timeout=1100, env=env)
    summary_path = workdir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return result, summary


def test_summary_names_a_self_contained_training_report(run):
    result, summary = run
    assert result.returncode == 0, result.stderr[-3000:]
    path = Path(summary["artifacts"]["training_report"])
    assert str(path) in result.stderr  # `kfp-yolo run` prints it in its table
    html = path.read_text()
    assert html.count("<svg") >= 6 and "<polyline" in html
    assert not NETWORK.search(html), NETWORK.search(html).group(0)
    assert "<script" not in html.lower()
    assert html.count('src="data:image/jpeg;base64,') >= 4  # sample predictions
    assert 'class="best"' in html and "best epoch" in html
    rows = re.findall(r"<tr(?: class=\"best\")?><td>(\d+)</td>", html)
    assert rows == ["1", "2", "3"]


def test_train_step_metrics(run):
    _, summary = run
    output = json.loads((Path(summary["run_dir"]) / "train-component" /
                         "executor_output.json").read_text())
    (metrics,) = output["artifacts"]["metrics"]["artifacts"]
    values = metrics["metadata"]
    assert values["epochs_run"] == 3 and 1 <= values["best_epoch"] <= 3
    assert values["images_per_s"] > 0 and values["wall_time_s"] > 0
    assert values["gpu_hours"] == 0  # a CPU run holds no GPU
    from kfp_yolo.components.k8s.pools import load_pools

    pool = summary["plan"]["pool"]
    priced = {p.name for p in load_pools() if p.hourly_price is not None}
    assert pool in priced, (pool, priced)
    assert values["estimated_cost_usd"] == 0  # its price x 0 GPU-hours


def test_mlflow_run_has_one_point_per_epoch(run, mlflow_server):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment = client.get_experiment_by_name("report-test")
    assert experiment is not None
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    for key in ("mAP50-95", "train/box_loss", "val/box_loss", "lr/pg0", "images_per_s"):
        history = client.get_metric_history(mlflow_run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2, 3], key
    assert mlflow_run.data.metrics["run/epochs_run"] == 3  # the step's Metrics, once
    params = mlflow_run.data.params
    assert params["epochs"] == "3" and params["model"] == "yolov5n.yaml"
    assert mlflow_run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "reports")}
    assert artifacts == {"reports/training_report.html", "reports/evaluation_report.md"}
    # the evaluate step's numbers join the training's run (no run of KFP's here)
    assert "eval/mAP50-95" in mlflow_run.data.metrics


def test_reports_render_in_headless_chromium(run, workdir):
    import numpy as np
    from PIL import Image

    if not (os.environ.get("CHROMIUM") or shutil.which("chromium")):
        pytest.skip("no chromium: apt-get install chromium (Debian) to look at the reports")
    result = subprocess.run([sys.executable, str(SCREENSHOTS), str(workdir), "--height", "1600"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for name in ("training_report", "dataset_report", "plan_report", "evaluation_report"):
        png = workdir / "screenshots" / f"{name}.png"
        pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
        # as wide as the window, cut below the page's end (the window is the tallest it gets)
        assert pixels.shape[1] == 1280 and 100 < pixels.shape[0] <= 1600, (name, pixels.shape)
        # drawn, not blank: dark ink (text, lines) on a light page
        assert (pixels < 128).mean() > 0.005 and pixels.std() > 10, name
