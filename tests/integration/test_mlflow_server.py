"""The MLflow server the tests start is real: a run logged over HTTP reads back with its history."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(300)


def test_metric_history_round_trips(mlflow_env):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_env.uri)
    experiment = client.create_experiment("smoke")
    run = client.create_run(experiment)
    for step, value in enumerate((0.1, 0.3, 0.2)):
        client.log_metric(run.info.run_id, "mAP50-95", value, step=step)
    history = client.get_metric_history(run.info.run_id, "mAP50-95")
    assert [(m.step, m.value) for m in history] == [(0, 0.1), (1, 0.3), (2, 0.2)]
