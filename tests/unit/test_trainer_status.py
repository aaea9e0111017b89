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
        pytest.skip("the TrainJob CRD is not in ../shared/schemas")
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
