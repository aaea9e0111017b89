"""Launcher backends: where the training processes of one TrainSpec run.

- local: torchrun on this machine (`kfp-yolo run`, tests, a single GPU box);
- pytorchjob: a Kubeflow PyTorchJob (Training Operator v1) on the cluster;
- trainjob: a Kubeflow TrainJob (Trainer v2) on the cluster;
- auto: TrainJob or PyTorchJob, whichever the API server serves (TrainJob first), chosen at run
  time.

Each is imported lazily by `get_launcher`: local runs never import the kubernetes client. Every
launcher has `kind` (local, PyTorchJob or TrainJob) for the run summary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kfp_yolo.components.launchers.base import Launcher

__all__ = ["LAUNCHERS", "get_launcher"]

LAUNCHERS = ("local", "pytorchjob", "trainjob", "auto")


def get_launcher(name: str, **settings) -> Launcher:
    """The launcher backend for `launcher=name`, imported lazily (local runs need no kubernetes)."""
    if name == "local":
        from kfp_yolo.components.launchers.local import LocalLauncher

        return LocalLauncher(**settings)
    if name == "pytorchjob":
        from kfp_yolo.components.launchers.lifecycle import PyTorchJobLauncher

        return PyTorchJobLauncher(**settings)
    if name == "trainjob":
        from kfp_yolo.components.launchers.lifecycle import TrainJobLauncher

        return TrainJobLauncher(**settings)
    if name == "auto":
        from kfp_yolo.components.launchers.auto import AutoLauncher

        return AutoLauncher(**settings)
    raise ValueError(f"unknown launcher {name!r}; use one of {', '.join(LAUNCHERS)}")
