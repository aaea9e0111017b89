"""What rank 0 tells the outside world after each epoch: MLflow metrics (step = epoch) and the
TrainJob's progress (trainerStatus). Both adapters are off unless their environment variables
were set (read once, in the worker's `main`, into `Tracking`), and neither can fail or hold up
the training (kfp_yolo.components.tracking).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kfp_yolo.components.spec import TrainSpec
from kfp_yolo.components.tracking.mlflow_log import MlflowSettings, MlflowTracker
from kfp_yolo.components.tracking.trainer_status import (
    TrainerStatusReporter,
    TrainerStatusSettings,
    status_body,
)

__all__ = ["EpochReporter", "Tracking", "epoch_values"]

_STATUS_METRICS = {"metrics/mAP50-95(B)": "mAP50-95", "metrics/mAP50(B)": "mAP50",
                   "metrics/precision(B)": "precision", "metrics/recall(B)": "recall",
                   "train/box_loss": "train/box_loss", "val/box_loss": "val/box_loss",
                   "images_per_s": "images/s"}


@dataclass(frozen=True)
class Tracking:
    """The tracking settings of one training process."""

    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    trainer_status: TrainerStatusSettings = field(default_factory=TrainerStatusSettings)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Tracking:
        return cls(MlflowSettings.from_environ(environ),
                   TrainerStatusSettings.from_environ(environ))


def epoch_values(trainer: Any, progress: Mapping[str, Any], world_size: int) -> dict[str, float]:
    """The epoch's numbers: train losses, val metrics and losses, learning rates, images/s
    (the job's), peak GPU memory (MiB, rank 0's) when on CUDA."""
    values: dict[str, float] = {}
    values.update(trainer.label_loss_items(trainer.tloss, prefix="train"))
    values.update(trainer.metrics or {})
    values.update(trainer.lr or {})
    epochs = progress.get("epochs") or []
    if epochs:
        values["images_per_s"] = round(epochs[-1]["images_per_s"] * world_size, 2)
        if "max_memory_reserved_mib" in epochs[-1]:
            values["gpu_memory_reserved_mib"] = round(epochs[-1]["max_memory_reserved_mib"], 1)
    return {key: float(value) for key, value in values.items()}


class EpochReporter:
    """Callbacks for rank 0's trainer: parameters at the start, numbers after every epoch."""

    def __init__(self, tracking: Tracking, spec: TrainSpec, progress: Mapping[str, Any]):
        self.spec = spec
        self.progress = progress
        self.mlflow = MlflowTracker(tracking.mlflow, run_name=spec.run_id)
        self.status = TrainerStatusReporter(tracking.trainer_status)
        self._started = time.monotonic()
        self._first_epoch: int | None = None
        self._last_percent = 0
        self._last_shown: dict[str, Any] = {}

    def train_start(self, trainer: Any) -> None:
        self._started = time.monotonic()
        self._first_epoch = getattr(trainer, "start_epoch", 0)  # > 0 when resumed
        params = {k: v for k, v in vars(self.spec).items()
                  if k not in ("dataset_uri", "output_uri", "checkpoint_uri")}
        self.mlflow.log_params({**params, "world_size": self.spec.world_size})

    def fit_epoch_end(self, trainer: Any) -> None:
        done = trainer.epoch + 1
        values = epoch_values(trainer, self.progress, self.spec.world_size)
        self.mlflow.log_metrics(values, step=done)
        first = self._first_epoch if self._first_epoch is not None else 0
        per_epoch = (time.monotonic() - self._started) / max(1, done - first)
        shown = {"epoch": f"{done}/{self.spec.epochs}",
                 **{name: round(values[key], 4) for key, name in _STATUS_METRICS.items()
                    if key in values}}
        self._last_percent = round(100 * done / self.spec.epochs)
        self._last_shown = shown
        self.status.report(status_body(
            progress_percentage=self._last_percent,
            estimated_remaining_s=per_epoch * max(0, self.spec.epochs - done), metrics=shown))

    def train_end(self, trainer: Any) -> None:
        """A training that ended before its last epoch (ultralytics' patience) says it is done:
        100%, nothing remaining, the epoch it stopped after."""
        if self._last_percent >= 100:
            return  # the last epoch's post already said so
        done = trainer.epoch + 1
        shown = {**self._last_shown, "epoch": f"{done}/{self.spec.epochs}",
                 "stopped": f"early, after epoch {done}"}
        self._last_percent = 100
        self.status.report(status_body(progress_percentage=100, estimated_remaining_s=0,
                                       metrics=shown))

    def close(self) -> str:
        """Waits a few seconds at most for the last progress post; returns the MLflow run id."""
        self.status.close()
        self.mlflow.finish()
        return self.mlflow.run_id if self.mlflow.active else ""
