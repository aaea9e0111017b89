"""The training's TrainSpec that every trial of a search varies, shared by the local search and
the Katib one (apart from runner.py, which imports both: no cycle)."""

from __future__ import annotations

from typing import Any

from kfp_yolo.components.spec import TrainSpec

__all__ = ["base_spec"]


def base_spec(config: dict[str, Any], dataset: str, output_uri: str) -> TrainSpec:
    """The training's TrainSpec that every trial varies (the train step's, without outputs)."""
    return TrainSpec(
        run_id=config["run_id"], dataset_uri=dataset, model=config["model"],
        imgsz=int(config["imgsz"]), epochs=int(config["hpo_epochs"]),
        batch=int(config["batch"]), precision=config["precision"],
        optimizer=config["optimizer"], lr0=float(config["lr0"]), seed=int(config["seed"]),
        workers=int(config["workers"]), cache=config["cache"], nodes=1,
        procs_per_node=int(config["procs_per_node"]), checkpoint_uri="",
        output_uri=output_uri, hyp={"fraction": float(config["hpo_fraction"])}
        if float(config["hpo_fraction"]) < 1 else {})
