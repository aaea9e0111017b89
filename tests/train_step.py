"""The train step as the cluster launchers see it: what `train_component` hands `get_launcher`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from kfp.dsl import HTML, Dataset, Metrics, Model

from kfp_yolo.components import launchers
from kfp_yolo.components.launchers.cluster import ClusterSettings
from kfp_yolo.components.steps import train_component

__all__ = ["STEP_ARGUMENTS", "cluster_settings_of_train_step", "train_step_arguments"]

# A cluster run's train step arguments (config keys and the step's own inputs mixed, as a test
# names them); a test overrides what it is about.
STEP_ARGUMENTS: dict[str, Any] = dict(
    run_id="run-1", model="yolov5n.yaml", imgsz=64, epochs=1, batch=8, precision="amp",
    optimizer="SGD", lr0=0.01, seed=0, workers=0, cache="auto", nodes=1, procs_per_node=1,
    launcher="trainjob", checkpoint_uri="minio://ck/run", image="registry.example/kfp-yolo:1",
    namespace="team-a", queue="", storage_secret="team-s3", workload_priority_class="",
    service_account="", job_timeout_s=7200, queue_timeout_s=0, min_gpu_memory_mib=12000,
    tolerations=[])


def train_step_arguments(**arguments: Any) -> dict[str, Any]:
    """train_component's keyword arguments: its own inputs by name, every other key into
    `config` over a RunConfig's checked values (what the validate step hands it)."""
    from kfp_yolo.components.config.checks import step_values
    from kfp_yolo.components.config.run_config import RunConfig

    own = set(inspect.signature(train_component).parameters)
    given = {**STEP_ARGUMENTS, **arguments}
    config = {k: v for k, v in given.items() if k not in own}
    checked = step_values(RunConfig(**{k: v for k, v in config.items()
                                       if k in RunConfig.model_fields}))
    return {**{k: v for k, v in given.items() if k in own}, "config": {**checked, **config}}


class _Stop(Exception):
    """Raised once the launcher is built: the job itself is never run."""


def cluster_settings_of_train_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   **arguments: Any) -> ClusterSettings:
    """The ClusterSettings the real launcher gets from train_component(**arguments)."""
    made, real = [], launchers.get_launcher

    def build_then_stop(name: str, **settings: Any) -> None:
        made.append(real(name, **settings))  # the real launcher validates its settings
        raise _Stop

    monkeypatch.setattr(launchers, "get_launcher", build_then_stop)
    with pytest.raises(_Stop):
        train_component(
            dataset=Dataset(name="dataset", uri="minio://mlpipeline/run/dataset", metadata={}),
            weights=Model(name="weights", uri="minio://mlpipeline/run/weights", metadata={}),
            report=HTML(name="report", uri=str(tmp_path / "report"), metadata={}),
            metrics=Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={}),
            **train_step_arguments(**arguments))
    return made[0].cluster
