"""Rank 0's per-epoch reporting in a real training: MLflow (a real `mlflow server`) gets one
point per epoch, the TrainJob status endpoint (loopback HTTPS) gets CRD-valid progress; a dead
MLflow costs one warning and a bounded wait, never the training."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
from statusserver import StatusServer, trainer_status_schema

from kfp_yolo.components.spec import TrainSpec
from kfp_yolo.components.tracking.mlflow_log import MlflowSettings, MlflowTracker
from kfp_yolo.components.training.reporting import Tracking
from kfp_yolo.components.training.worker import DistEnv, run_worker

pytestmark = pytest.mark.timeout(600)


def _spec(tmp_path: Path, dataset: Path, epochs: int = 2) -> TrainSpec:
    return TrainSpec(run_id="tracked", dataset_uri=str(dataset), model="yolov5n.yaml", imgsz=64,
                     epochs=epochs, batch=8, precision="amp", optimizer="SGD", lr0=0.01, seed=0,
                     workers=0, nodes=1, procs_per_node=1, checkpoint_uri="",
                     output_uri=str(tmp_path / "output"), device="cpu", init_timeout_s=60)


def _dead_uri() -> str:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_each_epoch_reaches_mlflow_and_the_trainjob_status(tmp_path, dataset, mlflow_server):
    from mlflow.tracking import MlflowClient

    trainer_status = trainer_status_schema()
    if trainer_status is None:
        pytest.skip("the TrainJob CRD is not in tests/data/schemas")
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    run_id = client.create_run(client.create_experiment("kfp-nested")).info.run_id
    (tmp_path / "status").mkdir()
    with StatusServer(tmp_path / "status", trainer_status) as status:
        tracking = Tracking(MlflowSettings(tracking_uri=mlflow_server.uri, run_id=run_id),
                            status.settings())
        run_worker(_spec(tmp_path, dataset), DistEnv.from_environ({}), tmp_path / "scratch",
                   tracking=tracking)
    history = client.get_metric_history(run_id, "mAP50-95")
    assert sorted(m.step for m in history) == [1, 2]
    for key in ("train/box_loss", "val/cls_loss", "precision", "lr/pg0", "images_per_s"):
        assert len(client.get_metric_history(run_id, key)) == 2, key
    assert client.get_run(run_id).data.params["imgsz"] == "64"
    assert client.get_run(run_id).info.status == "RUNNING"  # KFP's run: KFP ends it
    assert [p["errors"] for p in status.posts] == [[], []]
    bodies = [p["body"]["trainerStatus"] for p in status.posts]
    assert [b["progressPercentage"] for b in bodies] == [50, 100]
    assert bodies[-1]["estimatedRemainingSeconds"] == 0
    assert {"name": "epoch", "value": "2/2"} in bodies[-1]["metrics"]


def test_mlflow_down_costs_one_warning_and_a_bounded_wait(caplog):
    tracker = MlflowTracker(MlflowSettings(tracking_uri=_dead_uri()), experiment="x")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="kfp_yolo.mlflow"):
        assert tracker.start() == ""
        for epoch in (1, 2, 3):
            tracker.log_metrics({"mAP50-95": 0.5}, step=epoch)
        tracker.log_params({"epochs": 3})
        tracker.finish()
    assert time.monotonic() - started < 30
    warnings = [r.getMessage() for r in caplog.records if r.name == "kfp_yolo.mlflow"]
    assert len(warnings) == 1 and "training goes on without MLflow" in warnings[0]
    assert not tracker.active


def test_a_run_is_created_in_the_named_experiment(mlflow_server):
    from mlflow.tracking import MlflowClient

    tracker = MlflowTracker(MlflowSettings(tracking_uri=mlflow_server.uri),
                            experiment="named-after-config", run_name="r1")
    run_id = tracker.start()
    tracker.log_metrics({"metrics/mAP50-95(B)": 0.25, "nan": float("nan")}, step=1)
    tracker.finish()
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "named-after-config" and run.info.status == "FINISHED"
    assert run.data.metrics == {"mAP50-95": 0.25}
