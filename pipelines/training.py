"""The training DAG: prepare -> train -> evaluate -> If(passed): export_onnx -> build_tensorrt.

This module only wires tasks. Every parameter of the pipeline is a RunConfig key, with the
config's value as its default and the field's description as its description.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from kfp import dsl

from components.data_prep import prepare_dataset_component
from components.evaluate import evaluate_component
from components.export_onnx import export_onnx_component
from components.tensorrt import build_tensorrt_component
from components.train import train_component
from pipelines.config import RunConfig, parameter_specs

__all__ = ["PIPELINE_NAME", "build_pipeline"]

PIPELINE_NAME = "kfp-yolo-training"


def _components(image: str) -> dict[str, Callable]:
    """The step functions as KFP components on the project image (nothing pip-installed)."""
    def wrap(func: Callable) -> Callable:
        return dsl.component(base_image=image, install_kfp_package=False)(func)

    return {
        "prepare": wrap(prepare_dataset_component),
        "train": wrap(train_component),
        "evaluate": wrap(evaluate_component),
        "export": wrap(export_onnx_component),
        "tensorrt": wrap(build_tensorrt_component),
    }


def _wire(c: dict[str, Callable], p: dict) -> None:
    """The DAG itself; p maps parameter names to pipeline channels."""
    prepare = c["prepare"](dataset_uri=p["dataset_uri"], seed=p["seed"],
                           val_fraction=p["val_fraction"]).set_display_name("prepare-dataset")
    train = c["train"](
        dataset=prepare.outputs["dataset"], run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        model=p["model"], imgsz=p["imgsz"], epochs=p["epochs"], batch=p["batch"],
        precision=p["precision"], optimizer=p["optimizer"], lr0=p["lr0"], seed=p["seed"],
        workers=p["workers"], nodes=p["nodes"], procs_per_node=p["procs_per_node"],
        launcher=p["launcher"], checkpoint_uri=p["checkpoint_uri"], image=p["image"],
        namespace=p["namespace"], queue=p["queue"], storage_secret=p["storage_secret"],
        pool="",
    ).set_display_name("train").set_caching_options(False)
    evaluate = c["evaluate"](dataset=prepare.outputs["dataset"], weights=train.outputs["weights"],
                             imgsz=p["imgsz"], min_map50_95=p["min_map50_95"])
    evaluate.set_display_name("evaluate").set_caching_options(False)
    with dsl.If(evaluate.outputs["Output"] == True, name="quality-gate"):  # noqa: E712
        export = c["export"](weights=train.outputs["weights"], imgsz=p["imgsz"],
                             opset=p["onnx_opset"], dynamic=p["onnx_dynamic"],
                             tolerance=p["onnx_tolerance"])
        export.set_display_name("export-onnx").set_caching_options(False)
        trt = c["tensorrt"](onnx_model=export.outputs["onnx_model"], imgsz=p["imgsz"],
                            precision=p["trt_precision"])
        trt.set_display_name("build-tensorrt").set_caching_options(False)


def build_pipeline(cfg: RunConfig) -> Callable:
    """The @dsl.pipeline function for cfg: cfg's values are the parameters' defaults."""
    specs = parameter_specs()
    names = [name for name, *_ in specs]
    components = _components(cfg.image)

    def pipeline_body(*args):
        _wire(components, dict(zip(names, args, strict=True)))

    # KFP reads parameters from the signature and their descriptions from the docstring.
    pipeline_body.__signature__ = inspect.Signature([
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=getattr(cfg, name), annotation=py_type)
        for name, py_type, _, _ in specs])
    pipeline_body.__doc__ = (
        "Train a YOLO detector, gate it on mAP50-95, export ONNX and a TensorRT engine.\n\n"
        "Args:\n" + "".join(f"    {name}: {description}\n"
                            for name, _, _, description in specs))
    pipeline_body.__name__ = "kfp_yolo_training"
    return dsl.pipeline(name=PIPELINE_NAME)(pipeline_body)
