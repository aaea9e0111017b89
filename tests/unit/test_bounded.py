"""One bound for clients of servers we do not own (components/bounded.py): the user's wins."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from kfp_yolo.components.bounded import Bound, bound_mlflow, run_bounded


def test_mlflow_gets_our_bound_where_the_user_set_none():
    environ: dict[str, str] = {}
    assert bound_mlflow(Bound(timeout_s=5, retries=1), environ) == Bound(5, 1, 1.0)
    assert environ == {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                       "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def test_the_users_own_mlflow_timeout_wins():
    environ = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "90"}
    assert bound_mlflow(Bound(timeout_s=5, retries=1), environ).timeout_s == 90
    assert environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "90"


def test_the_tracker_keeps_the_users_timeout(monkeypatch):
    from kfp_yolo.components.tracking.mlflow_log import MlflowSettings, MlflowTracker

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                "MLFLOW_DISABLE_TELEMETRY"):
        monkeypatch.setenv(key, "")  # restored after the test: _connect sets what is unset
        monkeypatch.delenv(key)
    tracker = MlflowTracker(MlflowSettings(tracking_uri="http://127.0.0.1:9"))
    tracker._connect()  # builds the client only: no request yet
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"


def test_an_async_call_is_cancelled_at_its_timeout():
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run_bounded(asyncio.sleep(30), Bound(timeout_s=0.2))
    assert time.monotonic() - started < 5
