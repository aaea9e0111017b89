"""The training's TrainSpec that every trial of a search varies, shared by the local search and
the Katib one (apart from runner.py, which imports both: no cycle)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kfp_yolo.components.spec import TrainSpec, train_spec_from

__all__ = ["base_spec"]


def base_spec(config: dict[str, Any], dataset: str, output_uri: str) -> TrainSpec:
    """The training's TrainSpec that every trial varies (the train step's, without outputs):
    hpo_epochs long, on one node, on hpo_fraction of the training split, no checkpoints."""
    fraction = float(config["hpo_fraction"])
    values = {**config, "epochs": config["hpo_epochs"], "nodes": 1,
              "hyp": {"fraction": fraction} if fraction < 1 else {}}
    return replace(train_spec_from(values, run_id=config["run_id"], dataset_uri=dataset,
                                   output_uri=output_uri), checkpoint_uri="")
