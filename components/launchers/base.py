"""What every launcher backend provides."""

from __future__ import annotations

from typing import Protocol

from kfp_yolo.components.spec import TrainSpec

__all__ = ["Launcher"]


class Launcher(Protocol):
    """Runs one training job to its end."""

    @property
    def kind(self) -> str:
        """What runs the job: local, PyTorchJob or TrainJob (for `launcher: auto`, the kind the
        API server offered; resolved on first use)."""

    def launch(self, spec: TrainSpec) -> None:
        """Blocks until the job ends; raises kfp_yolo.components.errors.JobFailed with the job's own
        error when it fails, and releases everything it started (processes, pods, GPUs) on any
        exit, including SIGTERM."""
