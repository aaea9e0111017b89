"""The DAG: validate-config -> prepare -> plan -> search -> train -> evaluate -> If(passed):
export_onnx -> build_tensorrt -> publish (-> deploy); Else: gate-not-met, which fails the run
with the gate's sentence.

This module only wires tasks. Every run-time RunConfig key (all but config.COMPILE_TIME) is a
parameter of the pipeline, with the config's value as its default and the field's description
as its description, plus `node_pools`: the node-pool catalog's text, which the plan step places
the run with. The compile-time keys are fixed by `kfp-yolo compile` and listed in the
pipeline's description. The first step, validate-config, checks every value (CPU, seconds, no
data) and the other steps take its checked outputs, not the raw parameters.

Placement happens at run time: the plan step's outputs (a NodeAffinity on
nvidia.com/gpu.memory and the pool's tolerations) place every GPU task through
kfp-kubernetes' *_json settings, so compiling runs no planner and a batch or precision
changed in the Kubeflow UI re-places every GPU task, not only the training job.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from kfp import dsl, kubernetes
from kfp.dsl.pipeline_channel import PipelineChannel

from kfp_yolo.components.config.checks import CLUSTER_JOB_KEYS, CONFIG, NODE_POOLS
from kfp_yolo.components.config.run_config import COMPILE_TIME, RunConfig, parameter_specs
from kfp_yolo.components.config.serving_keys import DEPLOY_TIMEOUT_MAX
from kfp_yolo.components.launchers.cluster import SECRET_KEYS
from kfp_yolo.components.steps import (
    build_tensorrt_component,
    deploy_component,
    evaluate_component,
    export_onnx_component,
    gate_not_met_component,
    make_validate_config_component,
    plan_resources_component,
    prepare_dataset_component,
    publish_component,
    search_component,
    train_component,
)

__all__ = ["NODE_POOLS", "PIPELINE_NAME", "build_pipeline", "compiled_settings"]

PIPELINE_NAME = "kfp-yolo-training"
VALIDATE_CPU, VALIDATE_MEMORY = "500m", "1Gi"
"""Fixed requests of the validate step: step_cpu and step_memory are among what it checks."""
STORAGE_ENV = {name: name for name in SECRET_KEYS}
GPU_STEP_CPU, GPU_STEP_MEMORY = "4", "16Gi"
"""Requests of a pod that holds a GPU (evaluate, build-tensorrt, train with launcher local)."""


def _on_gpu(task: dsl.PipelineTask, plan: dsl.PipelineTask, gpus: int = 1) -> None:
    """The plan step's placement, resolved by the KFP driver when the task starts."""
    kubernetes.add_node_affinity_json(task, plan.outputs["node_affinity"])
    kubernetes.add_toleration_json(task, plan.outputs["tolerations"])
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)
    _requests(task, GPU_STEP_CPU, GPU_STEP_MEMORY)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory")


def _requests(task: dsl.PipelineTask, cpu: str | PipelineChannel,
              memory: str | PipelineChannel) -> None:
    """CPU and memory requests, each a constant or a pipeline parameter.

    A parameter is registered as an input of the task: the compiler adds to a dsl.If sub-DAG's
    inputs only the channels its tasks register (their arguments, kfp-kubernetes' settings),
    and set_cpu_request does not register it, so a sub-DAG's task would read an input its
    DAG never declares and the driver would fail the run when the sub-DAG starts
    (tests/unit/test_compiled_inputs.py checks every DAG of every shipped config).
    """
    task.set_cpu_request(cpu).set_memory_request(memory)
    task.register_pipeline_channels([value for value in (cpu, memory)
                                     if isinstance(value, PipelineChannel)])


def _on_cluster(task: dsl.PipelineTask, p: dict, *, timeout_s: int, retries: int = 0) -> None:
    """Requests (step_cpu, step_memory), storage credentials, timeout, retries.

    The requests are the run's parameters; _on_gpu overrides them for GPU tasks.
    """
    _requests(task, p["step_cpu"], p["step_memory"])
    kubernetes.use_secret_as_env(task, secret_name=p["storage_secret"],
                                 secret_key_to_env=STORAGE_ENV)
    kubernetes.set_timeout(task, timeout_s)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="30s", backoff_factor=2)


def _components(cfg: RunConfig, specs: list[tuple]) -> dict[str, Callable]:
    """The step functions as KFP components on the project image (nothing pip-installed)."""
    def wrap(func: Callable) -> Callable:
        # components/steps/ keeps real annotations (no postponed annotations there): KFP reads them
        return dsl.component(base_image=cfg.image, install_kfp_package=False)(func)

    compiled = {key: getattr(cfg, key) for key in sorted(COMPILE_TIME)}
    return {
        "validate": wrap(make_validate_config_component(
            [(name, py_type) for name, py_type, *_ in specs], compiled)),
        "prepare": wrap(prepare_dataset_component),
        "plan": wrap(plan_resources_component),
        "search": wrap(search_component),
        "train": wrap(train_component),
        "evaluate": wrap(evaluate_component),
        "gate_not_met": wrap(gate_not_met_component),
        "export": wrap(export_onnx_component),
        "tensorrt": wrap(build_tensorrt_component),
        "publish": wrap(publish_component),
        "deploy": wrap(deploy_component),
    }


def _wire(c: dict[str, Callable], raw: dict, cfg: RunConfig, *, cluster: bool) -> None:
    """The DAG itself; raw maps parameter names to pipeline channels.

    The steps take the validate step's checked outputs (p), and the compile-time keys as
    constants from cfg. With cluster=True every task gets requests, credentials and timeouts
    (pod settings read the parameters: the validate step has checked them before any such
    pod starts), and the GPU tasks the plan step's placement. cfg decides what must be fixed
    at compile time: whether the train step itself holds GPUs (launcher local) and the pod
    deadlines.
    """
    validate = c["validate"](**raw).set_display_name("validate-config")
    p = {name: validate.outputs[name] for name in raw}
    p.update({key: getattr(cfg, key) for key in COMPILE_TIME})
    prepare = c["prepare"](dataset_uri=p["dataset_uri"], seed=p["seed"],
                           val_fraction=p["val_fraction"], dataset_hash=p["dataset_hash"],
                           ).set_display_name("prepare-dataset")
    # Runs before any GPU is requested: batch 0 becomes the largest batch that fits the pool.
    plan = c["plan"](model=p["model"], imgsz=p["imgsz"], batch=p["batch"], nodes=p["nodes"],
                     procs_per_node=p["procs_per_node"], precision=p["precision"],
                     optimizer=p["optimizer"], nc=prepare.outputs["nc"],
                     train_images=prepare.outputs["train_images"],
                     node_pools=p[NODE_POOLS], epochs=p["epochs"], objective=p["objective"],
                     deadline_h=p["deadline_h"], workers=p["workers"],
                     registry_uri=p["registry_uri"], checkpoint_uri=p["checkpoint_uri"],
                     hpo_trials=p["hpo_trials"], hpo_epochs=p["hpo_epochs"],
                     hpo_fraction=p["hpo_fraction"], hpo_budget_gpu_h=p["hpo_budget_gpu_h"],
                     name=p["name"], warm_start=p["warm_start"],
                     ).set_display_name("plan-resources")
    plan.set_caching_options(False)  # it reads the throughput history, which grows
    # The search and the training take the checked config whole (a new training key needs no
    # wire here) and what the plan decided; hpo_trials 0 passes imgsz and lr0 through at once.
    config = validate.outputs[CONFIG]
    placed = dict(pool=plan.outputs["pool"], node_pools=p[NODE_POOLS],
                  min_gpu_memory_mib=plan.outputs["min_gpu_memory_mib"],
                  tolerations=plan.outputs["tolerations"])
    search = c["search"](
        dataset=prepare.outputs["dataset"], run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        config=config, batch=plan.outputs["batch"], trial_gpu_h=plan.outputs["trial_gpu_h"],
        **placed).set_display_name("search")
    search.set_caching_options(False)
    imgsz = search.outputs["imgsz"]
    train = c["train"](
        dataset=prepare.outputs["dataset"], run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        config=config, batch=plan.outputs["batch"], imgsz=imgsz, lr0=search.outputs["lr0"],
        hyp=search.outputs["hyp"], search=search.outputs["summary"],
        base_model=plan.outputs["base_model"], **placed,
    ).set_display_name("train").set_caching_options(False)
    evaluate = c["evaluate"](dataset=prepare.outputs["dataset"], weights=train.outputs["weights"],
                             imgsz=imgsz, min_map50_95=p["min_map50_95"],
                             registry_uri=p["registry_uri"], name=p["name"])
    evaluate.set_display_name("evaluate").set_caching_options(False)
    with dsl.If(evaluate.outputs["Output"] == True, name="quality-gate"):  # noqa: E712
        export = c["export"](weights=train.outputs["weights"], imgsz=imgsz,
                             opset=p["onnx_opset"], dynamic=p["onnx_dynamic"],
                             tolerance=p["onnx_tolerance"])
        export.set_display_name("export-onnx").set_caching_options(False)
        trt = c["tensorrt"](onnx_model=export.outputs["onnx_model"],
                            dataset=prepare.outputs["dataset"], imgsz=imgsz,
                            precision=p["trt_precision"])
        trt.set_display_name("build-tensorrt").set_caching_options(False)
        publish = c["publish"](weights=train.outputs["weights"],
                               onnx_model=export.outputs["onnx_model"],
                               engine=trt.outputs["engine"], dataset=prepare.outputs["dataset"],
                               metrics=evaluate.outputs["metrics"],
                               registry_uri=p["registry_uri"], name=p["name"], version="",
                               model_registry_address=p["model_registry_address"],
                               model_registry_token_path=p["model_registry_token_path"],
                               storage_key=p["storage_secret"],
                               run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                               run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                               namespace=p["namespace"], dataset_uri=p["dataset_uri"],
                               config=config, image=p["image"])
        publish.set_display_name("publish").set_caching_options(False)
        with dsl.If(p["deploy"] == "kserve", name="deploy-kserve"):
            deploy = c["deploy"](
                published_uri=publish.output, name=p["name"], namespace=p["namespace"],
                serving_runtime_version=p["serving_runtime_version"],
                serving_format=p["serving_format"],
                serving_service_account=p["serving_service_account"],
                serving_gpu_memory_mib=p["serving_gpu_memory_mib"],
                deploy_timeout_s=p["deploy_timeout_s"], node_pools=p[NODE_POOLS])
            deploy.set_display_name("deploy").set_caching_options(False)
    with dsl.Else(name="quality-gate-not-met"):
        # evaluate has succeeded (its report stays viewable); this step fails the run with the
        # gate's sentence, so a run whose model was not good enough does not end SUCCEEDED
        gate_not_met = c["gate_not_met"](report=evaluate.outputs["report"])
        gate_not_met.set_display_name("gate-not-met").set_caching_options(False)
    if not cluster:
        return
    p = {**p, **{key: raw[key] for key in ("step_cpu", "step_memory", "storage_secret")}}
    # Reads no data and holds no credentials; its own requests cannot be the values it checks.
    validate.set_cpu_request(VALIDATE_CPU).set_memory_request(VALIDATE_MEMORY)
    kubernetes.set_timeout(validate, 600)
    _on_cluster(prepare, p, timeout_s=3600, retries=2)
    _requests(plan, p["step_cpu"], p["step_memory"])
    kubernetes.set_timeout(plan, 900)
    # it reads the throughput history (registry or checkpoint store)
    kubernetes.use_secret_as_env(plan, secret_name=p["storage_secret"],
                                 secret_key_to_env=STORAGE_ENV)
    # With a cluster launcher the train step only creates and watches the job (the job's pods
    # get the GPUs and the placement); with launcher=local it trains in its own pod. Pod
    # deadlines cannot be parameters: the step may wait for the queue, then the job runs.
    waiting_s = cfg.queue_timeout_s or cfg.job_timeout_s
    _on_cluster(train, p, timeout_s=cfg.job_timeout_s + waiting_s + 3600)
    # With launcher local the trials train in the search step's own pod; else it creates and
    # watches a Katib Experiment (its TrainJob trials get the GPUs).
    _on_cluster(search, p, timeout_s=cfg.job_timeout_s + waiting_s + 3600)
    kubernetes.use_field_path_as_env(search, env_name="POD_NAMESPACE",
                                      field_path="metadata.namespace")
    if cfg.launcher == "local":
        _on_gpu(search, plan, gpus=cfg.procs_per_node)
    if cfg.launcher == "local":
        _on_gpu(train, plan, gpus=cfg.procs_per_node)
    kubernetes.use_field_path_as_env(train, env_name="POD_NAME", field_path="metadata.name")
    kubernetes.use_field_path_as_env(train, env_name="POD_UID", field_path="metadata.uid")
    kubernetes.use_field_path_as_env(train, env_name="POD_NAMESPACE",
                                     field_path="metadata.namespace")
    _on_cluster(evaluate, p, timeout_s=4 * 3600)
    _on_gpu(evaluate, plan)
    _on_cluster(export, p, timeout_s=3600, retries=1)
    _on_cluster(trt, p, timeout_s=2 * 3600)
    _on_gpu(trt, plan)
    _on_cluster(publish, p, timeout_s=3600, retries=2)
    # reads only the report's metadata: no credentials, the validate step's small requests
    _requests(gate_not_met, VALIDATE_CPU, VALIDATE_MEMORY)
    kubernetes.set_timeout(gate_not_met, 600)
    # the deploy step reads the registry (is the chosen model there?) with the Secret's keys
    # deploy_timeout_s is a run-time parameter (the step waits that long): the pod's deadline
    # is its largest value, or a longer wait typed in the UI would be cut by the compiled one
    _on_cluster(deploy, p, timeout_s=DEPLOY_TIMEOUT_MAX + 600, retries=1)


def compiled_settings(cfg: RunConfig) -> str:
    """The pipeline description's line of compile-time keys and their compiled values."""
    values = ", ".join(f"{key}={getattr(cfg, key)}" for key in sorted(COMPILE_TIME))
    local = (" With launcher=local the train step trains in its own pod: "
             f"{', '.join(CLUSTER_JOB_KEYS)} (a cluster job's settings) change nothing."
             if cfg.launcher == "local" else "")
    return (f"Compiled with {values} (fixed at compile time: `kfp-yolo compile --set KEY=VALUE` "
            f"to change them).{local}")


def build_pipeline(cfg: RunConfig, *, node_pools: str | None = None,
                   cluster: bool = False) -> Callable:
    """The @dsl.pipeline function for cfg: cfg's values are the parameters' defaults.

    Args:
        cfg: the run's config.
        node_pools: the node-pool catalog as JSON (pools.catalog_json), the default of the
            `node_pools` parameter; None = the catalog shipped in the package.
        cluster: add the Kubernetes settings (compiling for a cluster); the local DAG runs
            without them (kfp.local ignores them anyway).
    """
    if node_pools is None:
        from kfp_yolo.components.k8s.pools import catalog_json

        node_pools = catalog_json()
    specs = [(name, py_type, getattr(cfg, name), text)
             for name, py_type, _, text in parameter_specs()]
    specs.append((NODE_POOLS, str, node_pools, "Node-pool catalog (k8s/node-pools.yaml "
                  "as JSON) the plan step places the GPU tasks with; compiled in "
                  "from `kfp-yolo compile --pools`."))
    names = [name for name, *_ in specs]
    components = _components(cfg, specs)

    def pipeline_body(*args):
        _wire(components, dict(zip(names, args, strict=True)), cfg, cluster=cluster)

    # KFP reads parameters from the signature and their descriptions from the docstring.
    pipeline_body.__signature__ = inspect.Signature([
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=default, annotation=py_type)
        for name, py_type, default, _ in specs])
    pipeline_body.__doc__ = (
        "Train a YOLO detector, gate it on mAP50-95, export ONNX and a TensorRT engine.\n\n"
        f"{compiled_settings(cfg)}\n\n"
        "Args:\n" + "".join(f"    {name}: {description}\n"
                            for name, _, _, description in specs))
    pipeline_body.__name__ = "kfp_yolo_training"
    return dsl.pipeline(name=PIPELINE_NAME)(pipeline_body)
