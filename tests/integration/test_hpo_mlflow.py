"""MLflow runs per search trial, nested under the search's run, against a real `mlflow server`."""

from __future__ import annotations

from kfp_yolo.components.hpo.result import TrialRecord
from kfp_yolo.components.hpo.tracking import TrialRuns
from kfp_yolo.components.tracking.mlflow_log import MlflowSettings


def test_each_trial_is_a_nested_run_with_its_values_and_epochs(mlflow_env):
    from mlflow.tracking import MlflowClient

    runs = TrialRuns(MlflowSettings.from_environ(), experiment="searched", run_name="r-search")
    done = TrialRecord(0, {"lr0": 0.003, "mosaic": 0.5}, "complete", (0.1, 0.3), 60, 0.02)
    pruned = TrialRecord(1, {"lr0": 0.02, "mosaic": 0.9}, "pruned", (0.01,), 20, 0.005)
    ids = [runs.trial(done), runs.trial(pruned)]
    runs.finish(done)
    client = MlflowClient(mlflow_env.uri)
    parent = client.get_run(runs.parent.run_id)
    assert parent.info.status == "FINISHED" and parent.data.params["best/lr0"] == "0.003"
    children = [client.get_run(i) for i in ids]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert all(c.info.experiment_id == parent.info.experiment_id for c in children)
    assert [c.info.status for c in children] == ["FINISHED", "KILLED"]
    assert children[1].data.params == {"lr0": "0.02", "mosaic": "0.9", "state": "pruned",
                                       "trial": "1"}
    history = client.get_metric_history(ids[0], "map50_95")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.3)]


def test_a_search_without_mlflow_logs_nothing():
    runs = TrialRuns(MlflowSettings(), experiment="x", run_name="y")
    assert runs.trial(TrialRecord(0, {"lr0": 0.01}, "complete", (0.2,))) == ""
    runs.finish(None)
