"""TrainJob progress posts: bodies valid against the v2.3.0 CRD's trainerStatus schema, sent over
HTTPS with the rotating token, never holding up the caller, failures logged once."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest
from statusserver import StatusServer, self_signed, status_path, trainer_status_schema

from kfp_yolo.components.tracking.trainer_status import (
    TrainerStatusReporter,
    TrainerStatusSettings,
    status_body,
)


@pytest.fixture(scope="module")
def schema() -> dict:
    found = trainer_status_schema()
    if found is None:
        pytest.skip("the TrainJob CRD is not in tests/data/schemas")
    return found


@pytest.fixture
def server(tmp_path, schema):
    with StatusServer(tmp_path, schema) as running:
        yield running


def _wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_settings_come_from_the_trainers_variables():
    settings = TrainerStatusSettings.from_environ({
        "KUBEFLOW_TRAINER_SERVER_URL": "https://x.svc:8082" + status_path(),
        "KUBEFLOW_TRAINER_SERVER_CA_CERT": "/var/run/secrets/kubeflow/trainer/ca.crt",
        "KUBEFLOW_TRAINER_SERVER_TOKEN": "/var/run/secrets/kubeflow/trainer/token"})
    assert settings.enabled and settings.token_path.endswith("/token")
    assert not TrainerStatusSettings.from_environ({}).enabled


def test_posts_validate_against_the_crd_and_carry_the_current_token(server):
    reporter = TrainerStatusReporter(server.settings())
    reporter.report(status_body(progress_percentage=50, estimated_remaining_s=61.7,
                                metrics={"epoch": "1/2", "mAP50-95": 0.41234567}))
    _wait_for(lambda: len(server.posts) == 1)
    server.token_path.write_text("token-2\n")  # the projected token rotates
    reporter.report(status_body(progress_percentage=100, estimated_remaining_s=0,
                                metrics={"epoch": "2/2", "mAP50-95": 0.5}))
    reporter.close()
    assert [p["errors"] for p in server.posts] == [[], []]
    assert {p["path"] for p in server.posts} == {status_path()}
    assert [p["token"] for p in server.posts] == ["token-1", "token-2"]
    assert server.posts[0]["content_type"] == "application/json"
    first = server.posts[0]["body"]["trainerStatus"]
    assert first["progressPercentage"] == 50 and first["estimatedRemainingSeconds"] == 61
    assert {"name": "mAP50-95", "value": "0.4123"} in first["metrics"]
    assert reporter.sent == 2 and reporter.failed == 0


def test_bodies_stay_inside_the_schemas_limits(server):
    body = status_body(progress_percentage=140, estimated_remaining_s=-5,
                       metrics={f"m{i}" * 40: "x" * 100 for i in range(300)},
                       now=datetime(2026, 12, 2, 7, 0, tzinfo=UTC))
    assert server.errors(body) == []
    status = body["trainerStatus"]
    assert status["progressPercentage"] == 100 and status["estimatedRemainingSeconds"] == 0
    assert len(status["metrics"]) == 256 and status["lastUpdatedTime"] == "2026-12-02T07:00:00Z"
    # and the checker itself refuses what the API server would
    assert server.errors({"trainerStatus": {"progressPercentage": 101}})


def test_report_never_waits_for_a_slow_server(server):
    server.delay_s = 1.5
    reporter = TrainerStatusReporter(server.settings(), timeout_s=3)
    started = time.monotonic()
    for percent in (10, 20, 30):
        reporter.report(status_body(progress_percentage=percent, estimated_remaining_s=None,
                                    metrics={}))
    assert time.monotonic() - started < 0.2
    reporter.close()
    # the newest body wins: bodies queued behind a slow post are replaced, not piled up
    sent = [p["body"]["trainerStatus"]["progressPercentage"] for p in server.posts]
    assert sent[-1] == 30 and len(sent) <= 2


def test_failures_are_logged_once_and_bounded(tmp_path, server, caplog):
    other_ca = tmp_path / "other"
    other_ca.mkdir()
    _, wrong_cert = self_signed(other_ca)
    reporter = TrainerStatusReporter(server.settings(ca_cert=str(wrong_cert)), timeout_s=2)
    with caplog.at_level(logging.WARNING, logger="kfp_yolo.trainer_status"):
        for percent in (10, 20):
            reporter.report(status_body(progress_percentage=percent, estimated_remaining_s=1,
                                        metrics={}))
            time.sleep(0.3)
        started = time.monotonic()
        reporter.close()
    assert time.monotonic() - started < 5
    assert reporter.failed == 2 and reporter.sent == 0 and not server.posts
    warnings = [r for r in caplog.records if "TrainJob's progress" in r.getMessage()]
    assert len(warnings) == 1 and "CERTIFICATE_VERIFY_FAILED" in warnings[0].getMessage()


def test_disabled_reporter_does_nothing():
    reporter = TrainerStatusReporter(TrainerStatusSettings())
    reporter.report(status_body(progress_percentage=1, estimated_remaining_s=1, metrics={}))
    reporter.close()
    assert reporter.sent == reporter.failed == 0


class _StoppedTrainer:
    """What EpochReporter reads of ultralytics' trainer, for a run of 10 epochs that its
    patience stopped after epoch 3."""

    epoch = 2  # 0-based: the third epoch
    start_epoch = 0
    tloss = (1.0, 2.0, 3.0)
    metrics = {"metrics/mAP50-95(B)": 0.25}
    lr = {"lr/pg0": 0.01}

    @staticmethod
    def label_loss_items(loss, prefix="train"):
        return {f"{prefix}/{name}_loss": value
                for name, value in zip(("box", "cls", "dfl"), loss, strict=True)}


def _reporter(server, epochs: int):
    from kfp_yolo.components.spec import TrainSpec
    from kfp_yolo.components.training.reporting import EpochReporter, Tracking

    spec = TrainSpec(run_id="r", dataset_uri="d", model="yolov5n.yaml", imgsz=64, epochs=epochs,
                     batch=8, precision="amp", optimizer="SGD", lr0=0.01, seed=0, workers=0,
                     nodes=1, procs_per_node=1, checkpoint_uri="", output_uri="o", device="cpu",
                     init_timeout_s=60)
    return EpochReporter(Tracking(trainer_status=server.settings()), spec,
                         {"epochs": [{"images_per_s": 10.0}]})


def test_a_training_stopped_early_ends_at_100_percent(server):
    reporter = _reporter(server, epochs=10)
    reporter.train_start(_StoppedTrainer)
    reporter.fit_epoch_end(_StoppedTrainer)
    _wait_for(lambda: len(server.posts) == 1)
    reporter.train_end(_StoppedTrainer)
    reporter.close()
    assert [p["errors"] for p in server.posts] == [[], []]
    first, last = (p["body"]["trainerStatus"] for p in server.posts)
    assert first["progressPercentage"] == 30 and first["estimatedRemainingSeconds"] >= 0
    assert last["progressPercentage"] == 100 and last["estimatedRemainingSeconds"] == 0
    assert {"name": "epoch", "value": "3/10"} in last["metrics"]
    assert {"name": "stopped", "value": "early, after epoch 3"} in last["metrics"]
    assert {"name": "mAP50-95", "value": "0.25"} in last["metrics"]


def test_a_training_that_ran_every_epoch_posts_100_percent_once(server):
    reporter = _reporter(server, epochs=3)
    reporter.fit_epoch_end(_StoppedTrainer)  # epoch 3 of 3
    _wait_for(lambda: len(server.posts) == 1)
    reporter.train_end(_StoppedTrainer)
    reporter.close()
    assert [p["body"]["trainerStatus"]["progressPercentage"] for p in server.posts] == [100]
