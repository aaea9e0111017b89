"""The DAG: prepare -> train -> evaluate -> If(passed): export_onnx -> build_tensorrt -> publish.

This module only wires tasks. Every parameter of the pipeline is a RunConfig key, with the
config's value as its default and the field's description as its description.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

from kfp import dsl, kubernetes

from kfp_yolo.components.steps import (
    build_tensorrt_component,
    evaluate_component,
    export_onnx_component,
    plan_resources_component,
    prepare_dataset_component,
    publish_component,
    train_component,
)
from kfp_yolo.pipelines.config import RunConfig, parameter_specs

__all__ = ["PIPELINE_NAME", "Placement", "build_pipeline"]

PIPELINE_NAME = "kfp-yolo-training"
STORAGE_ENV = {name: name for name in
               ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where GPU tasks go on a cluster, from the memory planner at compile time."""

    affinity: list[dict] = field(default_factory=list)
    """Required node-affinity match expressions (nvidia.com/gpu.memory Gt N)."""
    tolerations: tuple[dict, ...] = ()
    """The pool's tolerations."""


def _on_gpu(task: dsl.PipelineTask, placement: Placement, gpus: int = 1) -> None:
    kubernetes.add_node_affinity(task, match_expressions=placement.affinity)
    for toleration in placement.tolerations:
        kubernetes.add_toleration(task, **toleration)
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory")


def _on_cluster(task: dsl.PipelineTask, p: dict, *, cpu: str, memory: str, timeout_s: int,
                retries: int = 0) -> None:
    """Requests, storage credentials from the Secret named by a parameter, timeout, retries."""
    task.set_cpu_request(cpu).set_memory_request(memory)
    kubernetes.use_secret_as_env(task, secret_name=p["storage_secret"],
                                 secret_key_to_env=STORAGE_ENV)
    kubernetes.set_timeout(task, timeout_s)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="30s", backoff_factor=2)


def _components(image: str) -> dict[str, Callable]:
    """The step functions as KFP components on the project image (nothing pip-installed)."""
    def wrap(func: Callable) -> Callable:
        # KFP reads real annotations; a module with postponed annotations has strings there.
        func.__annotations__ = typing.get_type_hints(
            func, globalns={**vars(dsl), **func.__globals__}, include_extras=True)
        return dsl.component(base_image=image, install_kfp_package=False)(func)

    return {
        "prepare": wrap(prepare_dataset_component),
        "plan": wrap(plan_resources_component),
        "train": wrap(train_component),
        "evaluate": wrap(evaluate_component),
        "export": wrap(export_onnx_component),
        "tensorrt": wrap(build_tensorrt_component),
        "publish": wrap(publish_component),
    }


def _wire(c: dict[str, Callable], p: dict, placement: Placement | None, *,
          launcher: str = "local", procs_per_node: int = 1) -> None:
    """The DAG itself; p maps parameter names to pipeline channels.

    With a placement (compiling for a cluster) every task gets requests, credentials and
    timeouts, and the GPU tasks the planner's node affinity.
    """
    prepare = c["prepare"](dataset_uri=p["dataset_uri"], seed=p["seed"],
                           val_fraction=p["val_fraction"]).set_display_name("prepare-dataset")
    # Runs before any GPU is requested: batch 0 becomes the largest batch that fits the pool.
    plan = c["plan"](model=p["model"], imgsz=p["imgsz"], batch=p["batch"], nodes=p["nodes"],
                     procs_per_node=p["procs_per_node"], precision=p["precision"],
                     optimizer=p["optimizer"], nc=80).set_display_name("plan-resources")
    train = c["train"](
        dataset=prepare.outputs["dataset"], run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        model=p["model"], imgsz=p["imgsz"], epochs=p["epochs"], batch=plan.outputs["batch"],
        precision=p["precision"], optimizer=p["optimizer"], lr0=p["lr0"], seed=p["seed"],
        workers=p["workers"], nodes=p["nodes"], procs_per_node=p["procs_per_node"],
        launcher=p["launcher"], checkpoint_uri=p["checkpoint_uri"], image=p["image"],
        namespace=p["namespace"], queue=p["queue"], storage_secret=p["storage_secret"],
        pool=plan.outputs["pool"], min_gpu_memory_mib=plan.outputs["min_gpu_memory_mib"],
    ).set_display_name("train").set_caching_options(False)
    evaluate = c["evaluate"](dataset=prepare.outputs["dataset"], weights=train.outputs["weights"],
                             imgsz=p["imgsz"], min_map50_95=p["min_map50_95"],
                             registry_uri=p["registry_uri"], name=p["name"])
    evaluate.set_display_name("evaluate").set_caching_options(False)
    with dsl.If(evaluate.outputs["Output"] == True, name="quality-gate"):  # noqa: E712
        export = c["export"](weights=train.outputs["weights"], imgsz=p["imgsz"],
                             opset=p["onnx_opset"], dynamic=p["onnx_dynamic"],
                             tolerance=p["onnx_tolerance"])
        export.set_display_name("export-onnx").set_caching_options(False)
        trt = c["tensorrt"](onnx_model=export.outputs["onnx_model"],
                            dataset=prepare.outputs["dataset"], imgsz=p["imgsz"],
                            precision=p["trt_precision"])
        trt.set_display_name("build-tensorrt").set_caching_options(False)
        publish = c["publish"](weights=train.outputs["weights"],
                               onnx_model=export.outputs["onnx_model"],
                               engine=trt.outputs["engine"], dataset=prepare.outputs["dataset"],
                               metrics=evaluate.outputs["metrics"],
                               registry_uri=p["registry_uri"], name=p["name"], version="")
        publish.set_display_name("publish").set_caching_options(False)
    if placement is None:
        return
    _on_cluster(prepare, p, cpu="2", memory="8Gi", timeout_s=3600, retries=2)
    plan.set_cpu_request("2").set_memory_request("8Gi")
    kubernetes.set_timeout(plan, 900)
    # With launcher=pytorchjob the train step only creates and watches the job (the job's pods
    # get the GPUs and the affinity); with launcher=local it trains in its own pod.
    _on_cluster(train, p, cpu="4", memory="16Gi", timeout_s=7 * 86400)
    if launcher == "local":
        _on_gpu(train, placement, gpus=procs_per_node)
    kubernetes.use_field_path_as_env(train, env_name="POD_NAME", field_path="metadata.name")
    kubernetes.use_field_path_as_env(train, env_name="POD_UID", field_path="metadata.uid")
    kubernetes.use_field_path_as_env(train, env_name="POD_NAMESPACE",
                                     field_path="metadata.namespace")
    _on_cluster(evaluate, p, cpu="4", memory="16Gi", timeout_s=4 * 3600)
    _on_gpu(evaluate, placement)
    _on_cluster(export, p, cpu="2", memory="8Gi", timeout_s=3600, retries=1)
    _on_cluster(trt, p, cpu="4", memory="16Gi", timeout_s=2 * 3600)
    _on_gpu(trt, placement)
    _on_cluster(publish, p, cpu="1", memory="2Gi", timeout_s=3600, retries=2)


def build_pipeline(cfg: RunConfig, placement: Placement | None = None) -> Callable:
    """The @dsl.pipeline function for cfg: cfg's values are the parameters' defaults.

    placement=None is the local DAG (kfp.local ignores Kubernetes settings anyway); compiling
    for a cluster passes the planner's placement.
    """
    specs = parameter_specs()
    names = [name for name, *_ in specs]
    components = _components(cfg.image)

    def pipeline_body(*args):
        _wire(components, dict(zip(names, args, strict=True)), placement,
              launcher=cfg.launcher, procs_per_node=cfg.procs_per_node)

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
