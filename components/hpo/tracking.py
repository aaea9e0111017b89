"""MLflow runs per search trial, nested under the search's own run, when MLflow is set
(MLFLOW_TRACKING_URI; the search step's run is KFP's, else one made in experiment `name`).

Each trial's run (tag `mlflow.parentRunId`, what MLflow's UI nests by) gets the trial's values
as parameters, its map50_95 per epoch (step = epoch), its state, and ends FINISHED, KILLED
(pruned) or FAILED. Built on MlflowTracker: bounded requests, and the first failure turns MLflow
off with one warning; it never fails the search.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from kfp_yolo.components.hpo.result import TrialRecord
from kfp_yolo.components.tracking.mlflow_log import MlflowSettings, MlflowTracker

__all__ = ["TrialRuns"]

_END = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}


class TrialRuns:
    """The search's parent run and one nested run per finished trial."""

    def __init__(self, settings: MlflowSettings, *, experiment: str, run_name: str) -> None:
        self.settings = settings
        self.parent = MlflowTracker(settings, experiment=experiment, run_name=run_name)
        self.experiment = experiment
        self._experiment_id = settings.experiment_id
        self._lock = threading.Lock()  # parallel trials end on several threads

    def trial(self, record: TrialRecord) -> str:
        """Logs one trial as a nested run; its run id ('' when MLflow is off or failed)."""
        with self._lock:
            return self._trial(record)

    def _trial(self, record: TrialRecord) -> str:
        parent = self.parent.start()
        if not parent:
            return ""
        if not self._experiment_id:  # the nested runs go where the parent is
            client = self.parent._connect()
            self._experiment_id = client.get_run(parent).info.experiment_id
        child = MlflowTracker(replace(self.settings, run_id="",
                                      experiment_id=self._experiment_id),
                              experiment=self.experiment, run_name=f"trial {record.number}")
        if not child.start():
            return ""
        child._call("tag the trial's run",
                    lambda c: c.set_tag(child.run_id, "mlflow.parentRunId", parent))
        child.log_params({**record.values, "state": record.state, "trial": record.number})
        for epoch, value in enumerate(record.metrics, start=1):
            child.log_metrics({"map50_95": value}, step=epoch)
        for epoch, value in enumerate(record.val_losses, start=1):
            child.log_metrics({"val_loss": value}, step=epoch)
        child.log_metrics({"measured_gpu_h": record.measured_gpu_h}, step=len(record.metrics))
        child.finish(_END.get(record.state, "FINISHED"))
        return child.run_id

    def finish(self, best: TrialRecord | None) -> None:
        """The parent gets the best trial's values and metric, then ends (if made here)."""
        if best is not None:
            self.parent.log_params({f"best/{k}": v for k, v in best.values.items()})
            if best.best_metric is not None:
                self.parent.log_metrics({"search/best_map50_95": best.best_metric},
                                        step=len(best.metrics))
        self.parent.finish()
