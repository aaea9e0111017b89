"""The KFP steps: thin `@dsl.component` wrappers over the pure step logic.

This is the only module of kfp_yolo.components that imports kfp. Each function maps its
artifacts' `.path`/`.uri` onto a typed function of the module it names and records metadata;
the logic lives there. KFP copies each function's source alone into its component, so every
import a step needs is inside its body. (No `from __future__ import annotations` here: KFP
reads the annotations of component functions.)
"""

from typing import NamedTuple

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

__all__ = ["build_tensorrt_component", "deploy_component", "evaluate_component",
           "export_onnx_component", "make_validate_config_component",
           "plan_resources_component", "prepare_dataset_component", "publish_component",
           "train_component"]


def prepare_dataset_component(
    dataset_uri: str,
    seed: int,
    val_fraction: float,
    dataset: Output[Dataset],
    report: Output[Markdown],
) -> NamedTuple("PrepareOutputs", [("content_hash", str), ("nc", int),
                                   ("train_images", int)]):
    """KFP step: prepares the dataset into the Dataset artifact.

    Returns:
        content_hash of the prepared dataset; nc, its number of classes, and train_images, the
        size of its training split (the planner's inputs: the detection head and the loss grow
        with nc; an auto batch keeps enough batches per epoch).
    """
    from collections import namedtuple

    from kfp_yolo.components.data.prepare import prepare_dataset, render_report

    prepared = prepare_dataset(dataset_uri, dataset.path, seed=seed, val_fraction=val_fraction)
    dataset.metadata.update({"content_hash": prepared.content_hash, **prepared.stats})
    with open(report.path, "w") as handle:
        handle.write(render_report(prepared))
    outputs = namedtuple("PrepareOutputs", ["content_hash", "nc", "train_images"])
    return outputs(prepared.content_hash, len(prepared.names), prepared.stats["train_images"])


def plan_resources_component(
    model: str, imgsz: int, batch: int, nodes: int, procs_per_node: int, precision: str,
    optimizer: str, nc: int, node_pools: str, report: Output[Markdown], train_images: int = 0,
    epochs: int = 0, objective: str = "smallest", deadline_h: float = 0.0, workers: int = 0,
    registry_uri: str = "", checkpoint_uri: str = "",
) -> NamedTuple("PlanOutputs", [("batch", int), ("peak_mib", int), ("pool", str),
                                ("min_gpu_memory_mib", int), ("node_affinity", dict),
                                ("tolerations", list), ("batch_rule", str),
                                ("accumulate", int), ("pool_rule", str)]):
    """KFP step: plan the run on the compiled-in node-pool catalog (batch 0 = largest that fits).

    Args:
        nc: number of classes, from the prepare step.
        train_images: the training split's size, from the prepare step (0 = unknown).
        node_pools: the catalog's text (YAML or JSON), a pipeline parameter, so a pool added
            in git needs no new image.
        objective, deadline_h, epochs, workers: how the pool is chosen (smallest, cost or
            time; planner/objective.py); images/s come from the throughput history beside
            registry_uri (else under checkpoint_uri) when one is readable, else from the model.
        report: the per-pool table (batch, fit, images/s, epoch and run time, cost).

    Returns:
        batch (global), peak_mib (per GPU), pool (name), min_gpu_memory_mib, and the
        placement every GPU task of the run gets at run time: node_affinity (a Kubernetes
        NodeAffinity requiring that much GPU memory) and the pool's tolerations; batch_rule
        says how the batch was chosen, accumulate how many steps ultralytics accumulates,
        pool_rule why this pool (the objective).
    """
    # KFP copies this function's source alone into the component: imports live here
    from collections import namedtuple

    from kfp_yolo.components.planner import plan
    from kfp_yolo.components.planner.history import history_uri, read_history
    from kfp_yolo.components.planner.report import markdown_report
    from kfp_yolo.components.pools import (
        load_pools_text,
        pools_for_precision,
        required_node_affinity,
    )

    # bf16 goes only to GPUs that compute in it (Ampere or newer): the others emulate it
    pools = pools_for_precision(load_pools_text(node_pools, source="the node_pools parameter"),
                                precision)
    history, uri = [], history_uri(registry_uri, checkpoint_uri)
    try:  # a hint: a store that cannot be read now plans from the throughput model
        history = read_history(uri) if uri else []
    except Exception as exc:  # noqa: BLE001
        print(f"warning: throughput history {uri} not read ({exc}); planning without it")
    result = plan(model, imgsz=imgsz, batch=batch, world_size=nodes * procs_per_node,
                  precision=precision, optimizer=optimizer, nc=nc, pools=pools,
                  procs_per_node=procs_per_node, train_images=train_images or None,
                  objective=objective, epochs=epochs or None, deadline_h=deadline_h,
                  history=history, workers=workers)
    with open(report.path, "w") as handle:
        handle.write(markdown_report(result, history=uri, records=len(history)))
    print(f"plan: {result.peak_mib} MiB per GPU at batch {result.batch_per_gpu} per GPU "
          f"(global {result.batch}, {nc} classes) -> pool {result.pool.name}; "
          f"{result.batch_rule}; {result.pool_rule}")
    outputs = namedtuple("PlanOutputs", ["batch", "peak_mib", "pool", "min_gpu_memory_mib",
                                         "node_affinity", "tolerations", "batch_rule",
                                         "accumulate", "pool_rule"])
    return outputs(result.batch, result.peak_mib, result.pool.name, result.min_gpu_memory_mib,
                   required_node_affinity(result.affinity),
                   [dict(t) for t in result.pool.tolerations], result.batch_rule,
                   result.accumulate, result.pool_rule)


def train_component(
    dataset: Input[Dataset],
    run_id: str,
    model: str,
    imgsz: int,
    epochs: int,
    batch: int,
    precision: str,
    optimizer: str,
    lr0: float,
    seed: int,
    workers: int,
    cache: str,
    nodes: int,
    procs_per_node: int,
    launcher: str,
    checkpoint_uri: str,
    image: str,
    namespace: str,
    queue: str,
    storage_secret: str,
    workload_priority_class: str,
    service_account: str,
    job_timeout_s: int,
    queue_timeout_s: int,
    min_gpu_memory_mib: int,
    tolerations: list,
    weights: Output[Model],
    report: Output[HTML],
    metrics: Output[Metrics],
    priority_class: str = "",
    backoff_limit: int = 3,
    ttl_after_finished_s: int = 86400,
    registry_uri: str = "",
    name: str = "kfp-yolo",
    pool: str = "",
    node_pools: str = "",
    mlflow_secret: str = "",
):
    """KFP step: trains through the launcher; best.pt, last.pt, results.csv into `weights`.

    The weights' metadata says which launcher ran the job (auto resolves to one) and the
    training's shape and speed (nodes x processes, batch per GPU, workers, cache, images/s);
    the speed also goes to the throughput history beside registry_uri (else under
    checkpoint_uri), which later plans read.
    `report` is the training report (HTML: curves per epoch, best epoch, sample predictions),
    `metrics` its numbers (best epoch, images/s, GPU-hours, cost at `pool`'s price in the
    `node_pools` catalog). With MLFLOW_TRACKING_URI set (KFP's MLflow plugin, or the user) the
    training logs into MLFLOW_RUN_ID, else into a new run in experiment `name`; the pods get
    the MLflow credentials from the Secret `mlflow_secret`.
    """
    import json
    import os

    from kfp_yolo.components import storage
    from kfp_yolo.components.launchers import get_launcher
    from kfp_yolo.components.pools import node_affinity
    from kfp_yolo.components.reports.training import train_step_report
    from kfp_yolo.components.spec import TrainSpec, default_checkpoint_uri
    from kfp_yolo.components.tracking.mlflow_log import MlflowSettings, MlflowTracker

    remote = launcher != "local"
    # Training pods are not KFP tasks: on a cluster they read and write object storage directly.
    output_uri = weights.uri if remote else weights.path
    spec = TrainSpec(
        run_id=run_id, dataset_uri=dataset.uri if remote else dataset.path, model=model,
        imgsz=imgsz, epochs=epochs, batch=batch, precision=precision, optimizer=optimizer,
        lr0=lr0, seed=seed, workers=workers, cache=cache, nodes=nodes,
        procs_per_node=procs_per_node,
        # empty: beside the weights, in object storage for a cluster job (as `job render` shows)
        checkpoint_uri=checkpoint_uri or default_checkpoint_uri(output_uri),
        output_uri=output_uri)
    # The pods require the planner's need (Gt need-1 MiB) and tolerate the chosen pool, as
    # the plan step's outputs say: the image's own copy of the catalog is not read.
    settings = {} if not remote else {
        "image": image, "namespace": namespace, "queue": queue,
        "storage_secret": storage_secret, "workload_priority_class": workload_priority_class,
        "service_account": service_account, "active_deadline_s": job_timeout_s,
        "queue_timeout_s": queue_timeout_s, "priority_class": priority_class,
        "backoff_limit": backoff_limit, "ttl_after_finished_s": ttl_after_finished_s,
        "node_affinity": tuple(node_affinity(min_gpu_memory_mib)),
        "tolerations": tuple(tolerations)}
    # One MLflow run for the whole step: the pods log each epoch into it, the report follows.
    tracker = MlflowTracker(MlflowSettings.from_environ(), experiment=name, run_name=run_id)
    mlflow_run = tracker.start()  # '' when off, or when the server failed (warned once)
    forward = tracker.settings.with_run(mlflow_run).env() if mlflow_run else {}
    if remote:
        settings.update(forward_env=tuple(forward.items()), mlflow_secret=mlflow_secret)
    elif forward:
        settings["env"] = forward
    backend = get_launcher(launcher, **settings)
    try:
        backend.launch(spec)
    except BaseException:
        tracker.finish("FAILED")
        raise
    if remote:
        storage.download(output_uri, weights.path)
    weights.metadata.update({"run_id": run_id, "epochs": epochs, "imgsz": imgsz, "batch": batch,
                             "launcher": backend.kind})
    shape = os.path.join(weights.path, "training.json")
    training = {}
    if os.path.exists(shape):  # absent when a finished run was published from its checkpoint
        with open(shape) as handle:
            training = json.load(handle)
        weights.metadata["training"] = {k: v for k, v in training.items() if k != "epochs"}
    values = train_step_report(weights.path, dataset.path, report.path, training=training,
                               launcher=backend.kind, pool=pool, node_pools=node_pools,
                               precision=precision, model=model, imgsz=imgsz, epochs=epochs,
                               run_id=run_id)
    for key, value in values.items():
        metrics.log_metric(key, value)
    # prefixed: images_per_s and the like are also per-epoch series in the same run
    tracker.log_metrics({f"run/{k}": v for k, v in values.items()},
                        step=values.get("epochs_run", 0))
    tracker.log_artifact(report.path, "reports", name="training_report.html")
    tracker.finish()
    if tracker.active:  # the evaluate step adds its report to the same run
        weights.metadata["mlflow_run_id"] = tracker.run_id
    from kfp_yolo.components.planner.history import history_uri, record_training

    if training and history_uri(registry_uri, checkpoint_uri):
        record_training(history_uri(registry_uri, checkpoint_uri), weights.metadata["training"],
                        model=model, imgsz=imgsz, precision=precision, source=f"run {run_id}")


def evaluate_component(
    dataset: Input[Dataset],
    weights: Input[Model],
    imgsz: int,
    min_map50_95: float,
    registry_uri: str,
    name: str,
    metrics: Output[Metrics],
    report: Output[Markdown],
) -> bool:
    """KFP step: validation metrics, a Markdown report; returns whether the gate passed.

    A single `bool` output on purpose: kfp.local resolves a dsl.If condition on a task's
    single `Output`, not on a named output of a NamedTuple.
    """
    import os

    from kfp_yolo.components.evaluate import champion_map50_95, evaluate, gate, render_report
    from kfp_yolo.components.tracking.mlflow_log import MlflowSettings, MlflowTracker

    # MLflow (when on): KFP's run for this task, else the training's run
    settings = MlflowSettings.from_environ()
    tracker = MlflowTracker(settings if settings.run_id else settings.with_run(
        weights.metadata.get("mlflow_run_id", "")), experiment=name)
    data_yaml = os.path.join(dataset.path, "data.yaml")
    work = os.path.dirname(report.path)
    result = evaluate(os.path.join(weights.path, "best.pt"), data_yaml, imgsz=imgsz,
                      out_dir=os.path.join(work, "plots"))
    champion = champion_map50_95(registry_uri, name, data_yaml, imgsz=imgsz, work=work)
    passed, verdict = gate(result, min_map50_95=min_map50_95, champion=champion)
    if champion is not None:
        metrics.log_metric("champion_mAP50-95", round(champion[0], 6))
    for key, value in (("mAP50-95", result.map50_95), ("mAP50", result.map50),
                       ("precision", result.precision), ("recall", result.recall)):
        metrics.log_metric(key, round(value, 6))
    for name, row in result.per_class.items():
        metrics.log_metric(f"mAP50-95/{name}", round(row["mAP50-95"], 6))
    with open(report.path, "w") as handle:
        handle.write(render_report(result, min_map50_95=min_map50_95, passed=passed,
                                   verdict=verdict))
    report.metadata["verdict"] = verdict
    tracker.log_metrics({f"eval/{k}": v for k, v in metrics.metadata.items()
                         if isinstance(v, int | float)}, step=weights.metadata.get("epochs", 0))
    tracker.log_artifact(report.path, "reports", name="evaluation_report.md")
    print(f"quality gate {'passed' if passed else 'failed'}: {verdict}")
    return passed


def export_onnx_component(
    weights: Input[Model],
    imgsz: int,
    opset: int,
    dynamic: bool,
    tolerance: float,
    onnx_model: Output[Model],
    parity: Output[Metrics],
) -> NamedTuple("ExportOutputs", [("max_abs_diff", float)]):
    """KFP step: model.onnx into the Model artifact; fails when parity exceeds the tolerance."""
    import os
    from collections import namedtuple

    from kfp_yolo.components.errors import JobFailed
    from kfp_yolo.components.export_onnx import export_onnx, parity_check

    os.makedirs(onnx_model.path, exist_ok=True)
    best = os.path.join(weights.path, "best.pt")
    onnx_path = export_onnx(best, os.path.join(onnx_model.path, "model.onnx"), imgsz=imgsz,
                            opset=opset, dynamic=dynamic)
    result = parity_check(best, onnx_path, imgsz=imgsz)
    parity.log_metric("max_abs_diff", result.max_abs_diff)
    parity.log_metric("tolerance", tolerance)
    onnx_model.metadata.update({"opset": opset, "dynamic": dynamic, "imgsz": imgsz,
                                "max_abs_diff": result.max_abs_diff})
    print(f"ONNX parity: max |onnx - torch| = {result.max_abs_diff:.3g} (tolerance {tolerance})")
    if result.max_abs_diff > tolerance:
        raise JobFailed(f"ONNX parity check failed: max |onnx - torch| = "
                        f"{result.max_abs_diff:.3g} exceeds onnx_tolerance={tolerance}; check the "
                        "opset or raise the tolerance.")
    return namedtuple("ExportOutputs", ["max_abs_diff"])(result.max_abs_diff)


def build_tensorrt_component(
    onnx_model: Input[Model],
    dataset: Input[Dataset],
    imgsz: int,
    precision: str,
    engine: Output[Model],
    latency: Output[Metrics],
) -> NamedTuple("TrtOutputs", [("status", str), ("reason", str)]):
    """KFP step: model.engine and its latency, or status `skipped` with the reason."""
    import os
    from collections import namedtuple

    from kfp_yolo.components.tensorrt import availability, build_engine, measure_latency

    outputs = namedtuple("TrtOutputs", ["status", "reason"])
    reason = availability()
    if reason:
        print(f"TensorRT build skipped: {reason}")
        engine.metadata["status"] = "skipped"
        latency.log_metric("built", 0)
        return outputs("skipped", reason)
    os.makedirs(engine.path, exist_ok=True)
    max_batch = 8
    path = build_engine(os.path.join(onnx_model.path, "model.onnx"),
                        os.path.join(engine.path, "model.engine"), imgsz=imgsz,
                        precision=precision, max_batch=max_batch,
                        calibration_images=os.path.join(dataset.path, "images", "val"))
    for batch in (1, max_batch):
        milliseconds = measure_latency(path, imgsz=imgsz, batch=batch)
        latency.log_metric(f"latency_ms_batch{batch}", round(milliseconds, 4))
        latency.log_metric(f"images_per_s_batch{batch}", round(batch * 1000 / milliseconds, 1))
    latency.log_metric("built", 1)
    import tensorrt  # the plan loads only in a Triton of this TensorRT: publish records it

    engine.metadata.update({"status": "built", "precision": precision,
                            "tensorrt_version": tensorrt.__version__})
    return outputs("built", "")


def publish_component(
    weights: Input[Model],
    onnx_model: Input[Model],
    engine: Input[Model],
    dataset: Input[Dataset],
    metrics: Input[Metrics],
    registry_uri: str,
    name: str,
    version: str,
    model_registry_address: str = "",
    model_registry_token_path: str = "",
    storage_key: str = "",
    run_id: str = "",
    run_name: str = "",
    namespace: str = "",
) -> str:
    """KFP step: publishes the gated model; the version URI, or '' when registry_uri is ''.

    The version holds a Triton model repository (triton/), and is registered in MLflow's
    registry when MLFLOW_TRACKING_URI is set and in the Kubeflow Model Registry when
    model_registry_address is; `latest` moves after both.
    """
    import json
    import os
    import tempfile
    from pathlib import Path

    from kfp_yolo.components.publish import publish
    from kfp_yolo.components.registries import RunSource, open_registries
    from kfp_yolo.components.triton import build_repository

    if not registry_uri:
        print("publish skipped: registry_uri is empty")
        return ""
    files = {"best.pt": Path(weights.path) / "best.pt",
             "model.onnx": Path(onnx_model.path) / "model.onnx",
             "data.yaml": Path(dataset.path) / "data.yaml"}
    engine_file = Path(engine.path) / "model.engine"
    if engine.metadata.get("status") == "built" and engine_file.is_file():
        files["model.engine"] = engine_file
    # KFP keeps Metrics values in the artifact's metadata, not in its file.
    values = {k: v for k, v in metrics.metadata.items() if isinstance(v, int | float)}
    metadata = {"metrics": values, "training": dict(weights.metadata),
                "dataset": dict(dataset.metadata), "onnx": dict(onnx_model.metadata),
                "tensorrt": dict(engine.metadata) or {"status": "not built"}}
    # The environment is read here, at the step's edge: KFP's MLflow plugin injects it.
    registries = open_registries(mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
                                 model_registry_address=model_registry_address,
                                 model_registry_token_path=model_registry_token_path,
                                 storage_key=storage_key)
    with tempfile.TemporaryDirectory() as tmp:
        metrics_file = os.path.join(tmp, "metrics.json")
        with open(metrics_file, "w") as handle:
            json.dump(values, handle, indent=1, sort_keys=True)
        files["metrics.json"] = Path(metrics_file)
        triton = Path(tmp) / "triton"
        models = build_repository(triton, name, files["model.onnx"], files.get("model.engine"))
        print(f"Triton model repository: {', '.join(models)}")
        uri = publish(registry_uri=registry_uri, name=name, version=version, files=files,
                      metadata=metadata, folders={"triton": triton}, registries=registries,
                      source=RunSource(run_id, run_name, namespace) if run_id else None,
                      dataset_hash=str(dataset.metadata.get("content_hash", "")),
                      tensorrt_version=str(engine.metadata.get("tensorrt_version", "")))
    print(f"published {uri}" + "".join(f"; registered in {r.label}" for r in registries))
    return uri


def deploy_component(
    published_uri: str,
    name: str,
    namespace: str,
    serving_runtime_version: str,
    serving_format: str,
    serving_service_account: str,
    serving_gpu_memory_mib: int,
    deploy_timeout_s: int,
    node_pools: str,
) -> str:
    """KFP step: creates or updates the InferenceService of the published version, waits until
    it is Ready; returns its URL ('' when nothing was published)."""
    from kfp_yolo.components import storage
    from kfp_yolo.components.deploy import deploy_inferenceservice
    from kfp_yolo.components.errors import UserError
    from kfp_yolo.components.kserve import (
        ServingSettings,
        build_inferenceservice,
        pool_tolerations,
        served_model,
    )
    from kfp_yolo.components.pools import load_pools_text
    from kfp_yolo.components.registries import serving_uri

    if not published_uri:
        print("deploy skipped: nothing was published (registry_uri is empty)")
        return ""
    pools = load_pools_text(node_pools, source="the node_pools parameter")
    settings = ServingSettings(
        namespace=namespace, runtime_version=serving_runtime_version,
        model_format=serving_format, service_account=serving_service_account,
        gpu_memory_mib=serving_gpu_memory_mib,
        tolerations=pool_tolerations(pools, serving_gpu_memory_mib))
    repository = f"{published_uri.rstrip('/')}/triton"
    if not storage.exists(f"{repository}/{served_model(name, settings)}/config.pbtxt"):
        raise UserError(f"{repository} has no {serving_format} model (no TensorRT engine is "
                        "built without a GPU pool); set serving_format: onnx.")
    service = build_inferenceservice(name, published_uri.rstrip("/").rsplit("/", 1)[-1],
                                     serving_uri(repository), settings)
    return deploy_inferenceservice(service, timeout_s=deploy_timeout_s)


def make_validate_config_component(parameters: list, compiled: dict):
    """The `validate-config` step's function, written for this RunConfig's keys.

    KFP reads a component's inputs from its function's signature and ships the function's
    source, so a step that takes every run-time key as a typed input is written out here
    from `parameters` ((name, python type) of each pipeline parameter; the pipeline passes
    every one, so none has a default here and a changed default changes no step); `compiled`
    (the compile-time keys' values) is baked into its body. The function checks every value
    with RunConfig's rules (kfp_yolo.pipelines.checks) and returns the checked values, which
    the later steps take instead of the raw parameters.
    """
    import linecache

    args = ",\n".join(f"    {name}: {kind.__name__}" for name, kind in parameters)
    outputs = ", ".join(f"({name!r}, {kind.__name__})" for name, kind in parameters)
    source = (
        f"def validate_config_component(\n{args},\n"
        f") -> NamedTuple('CheckedConfig', [{outputs}]):\n"
        '    """KFP step: every parameter checked with the config\'s rules, before any data or '
        'GPU."""\n'
        "    values = dict(locals())\n"
        "    from kfp_yolo.pipelines.checks import check_run_parameters\n\n"
        f"    return check_run_parameters(values, compiled={compiled!r})\n")
    filename = f"<kfp-yolo validate-config {abs(hash(source)):x}>"
    # inspect.getsource (which KFP calls) finds the source of exec'd code through linecache
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"NamedTuple": NamedTuple}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - source built above
    return namespace["validate_config_component"]
