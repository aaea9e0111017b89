"""The KFP steps: thin `@dsl.component` wrappers over the pure step logic.

This package is the only part of kfp_yolo.components that imports kfp. Each function maps
its artifacts' `.path`/`.uri` onto a typed function of the module it names and records
metadata; the logic lives there. KFP copies each function's source alone into its component,
so every import a step needs is inside its body. (No `from __future__ import annotations`
in these modules: KFP reads the annotations of component functions.)

    data.py      prepare-dataset, plan-resources
    search.py    search (hyperparameter trials before the training)
    train.py     train, evaluate, gate-not-met
    release.py   export-onnx, build-tensorrt, publish, deploy
    validate.py  validate-config (written out for the config's keys at compile time)
"""

from kfp_yolo.components.steps.data import plan_resources_component, prepare_dataset_component
from kfp_yolo.components.steps.release import (
    build_tensorrt_component,
    deploy_component,
    export_onnx_component,
    publish_component,
)
from kfp_yolo.components.steps.search import search_component
from kfp_yolo.components.steps.train import (
    evaluate_component,
    gate_not_met_component,
    train_component,
)
from kfp_yolo.components.steps.validate import make_validate_config_component

__all__ = ["build_tensorrt_component", "deploy_component", "evaluate_component",
           "export_onnx_component", "gate_not_met_component", "make_validate_config_component",
           "plan_resources_component", "prepare_dataset_component", "publish_component",
           "search_component",
           "train_component"]
