"""The training steps: train (through the launcher) and evaluate (with the gate)."""


from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

__all__ = ["evaluate_component", "gate_not_met_component", "train_component"]


def train_component(
    dataset: Input[Dataset],
    run_id: str,
    config: dict,
    batch: int,
    imgsz: int,
    lr0: float,
    min_gpu_memory_mib: int,
    tolerations: list,
    weights: Output[Model],
    report: Output[HTML],
    metrics: Output[Metrics],
    pool: str = "",
    node_pools: str = "",
    hyp: dict = {},  # noqa: B006 (KFP reads the default; the step never changes it)
    search: dict = {},  # noqa: B006
    base_model: Input[Model] = None,
):
    """KFP step: trains through the launcher; best.pt, last.pt, results.csv into `weights`.

    `config` is the validate step's checked values, whole (a new training key reaches the
    job through it and `train_spec_from`, with no wire of its own); the other inputs are
    what later steps decided: the plan's global `batch`, placement (`min_gpu_memory_mib`,
    `tolerations`), `pool` and the `node_pools` catalog it was priced from; the search's
    `imgsz`, `lr0` and other training arguments (`hyp`), and its summary (`search`), which
    the weights' metadata (and so the registry) records.
    The weights' metadata says which launcher ran the job (auto resolves to one) and the
    training's shape and speed (nodes x processes, batch per GPU, workers, cache, images/s);
    the speed also goes to the throughput history beside registry_uri (else under
    checkpoint_uri), which later plans read.
    `report` is the training report (HTML: curves per epoch, best epoch, sample predictions),
    `metrics` its numbers (best epoch, images/s, GPU-hours, cost at `pool`'s price). With
    MLFLOW_TRACKING_URI set (KFP's MLflow plugin, or the user) the training logs into
    MLFLOW_RUN_ID, else into a new run in experiment `name`; the pods get the MLflow
    credentials from the Secret `mlflow_secret`.
    `base_model` is the checkpoint the plan step fetched (empty when the run trains `model`
    from its YAML): the pods fine-tune from those bytes, and the weights' metadata names it as
    the parent.
    """
    from kfp_yolo.components.boundary import install

    install()  # before any work: a failure from here on becomes the step's record
    import json
    import os

    from kfp_yolo.components import storage
    from kfp_yolo.components.k8s.pools import node_affinity
    from kfp_yolo.components.launchers import get_launcher
    from kfp_yolo.components.launchers.cluster import cluster_settings_from
    from kfp_yolo.components.reports.training import train_step_report
    from kfp_yolo.components.spec import train_spec_from
    from kfp_yolo.components.tracking.mlflow_log import MlflowSettings, MlflowTracker

    # the checked config with what the plan and the search decided
    values = {**config, "batch": batch, "imgsz": imgsz, "lr0": lr0, "hyp": dict(hyp)}
    launcher, model, epochs = values["launcher"], values["model"], values["epochs"]
    precision, name, registry_uri = values["precision"], values["name"], values["registry_uri"]
    remote = launcher != "local"
    # Training pods are not KFP tasks: on a cluster they read and write object storage directly.
    output_uri = weights.uri if remote else weights.path
    parent = dict(base_model.metadata) if base_model is not None else {}
    if parent.get("sha256"):  # the plan step's fetched bytes, read as the dataset is
        values["model"] = (f"{base_model.uri.rstrip('/')}/{parent['file']}" if remote
                           else os.path.join(base_model.path, parent["file"]))
        values["model_sha256"] = str(parent["sha256"])
    if not values["lr0"]:  # a warm start: validate-config left it to what the plan step found
        from kfp_yolo.components.config.values import default_lr0

        values["lr0"] = default_lr0(values["optimizer"], fine_tune=bool(parent.get("sha256")))
    spec = train_spec_from(values, run_id=run_id, output_uri=output_uri,
                           dataset_uri=dataset.uri if remote else dataset.path)
    # The pods require the planner's need (Gt need-1 MiB) and tolerate the chosen pool, as
    # the plan step's outputs say: the image's own copy of the catalog is not read.
    settings = {} if not remote else cluster_settings_from(
        values, node_affinity=tuple(node_affinity(min_gpu_memory_mib)),
        tolerations=tuple(tolerations))
    # One MLflow run for the whole step: the pods log each epoch into it, the report follows.
    tracker = MlflowTracker(MlflowSettings.from_environ(), experiment=name, run_name=run_id)
    mlflow_run = tracker.start()  # '' when off, or when the server failed (warned once)
    forward = tracker.settings.with_run(mlflow_run).env() if mlflow_run else {}
    if remote:
        settings.update(forward_env=tuple(forward.items()))
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
                             "launcher": backend.kind,
                             "parent": parent or {"source": model}})
    if search:
        weights.metadata["search"] = {**search, "lr0": values["lr0"], "imgsz": imgsz,
                                      "hyp": dict(hyp)}
    shape = os.path.join(weights.path, "training.json")
    training = {}
    if os.path.exists(shape):  # absent when a finished run was published from its checkpoint
        with open(shape) as handle:
            training = json.load(handle)
        weights.metadata["training"] = {k: v for k, v in training.items() if k != "epochs"}
    figures = train_step_report(weights.path, dataset.path, report.path, training=training,
                               launcher=backend.kind, pool=pool, node_pools=node_pools,
                               precision=precision, model=model, imgsz=imgsz, epochs=epochs,
                               run_id=run_id)
    for key, value in figures.items():
        metrics.log_metric(key, value)
    # prefixed: images_per_s and the like are also per-epoch series in the same run
    tracker.log_metrics({f"run/{k}": v for k, v in figures.items()},
                        step=figures.get("epochs_run", 0))
    tracker.log_artifact(report.path, "reports", name="training_report.html")
    tracker.finish()
    if tracker.active:  # the evaluate step adds its report to the same run
        weights.metadata["mlflow_run_id"] = tracker.run_id
    from kfp_yolo.components.planner.history import history_uri, record_training

    history = history_uri(registry_uri, values["checkpoint_uri"])
    if training and history:
        record_training(history, weights.metadata["training"],
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
    from kfp_yolo.components.boundary import install

    install()  # before any work: a failure from here on becomes the step's record
    import os

    from kfp_yolo.components.evaluate import champion_map50_95, evaluate, gate
    from kfp_yolo.components.reports.evaluation import render_report
    from kfp_yolo.components.reports.media import fit_markdown
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
        handle.write(fit_markdown(render_report(result, min_map50_95=min_map50_95,
                                                passed=passed, verdict=verdict)))
    report.metadata["verdict"] = verdict
    report.metadata["champion"] = (f"{champion[1]} (mAP50-95 {champion[0]:.4f})" if champion
                                   else "none published")
    tracker.log_metrics({f"eval/{k}": v for k, v in metrics.metadata.items()
                         if isinstance(v, int | float)}, step=weights.metadata.get("epochs", 0))
    tracker.log_artifact(report.path, "reports", name="evaluation_report.md")
    print(f"quality gate {'passed' if passed else 'failed'}: {verdict}")
    return passed


def gate_not_met_component(report: Input[Markdown]):
    """KFP step, the quality gate's else-branch: fails the run with the gate's sentence.

    The evaluate step itself succeeds, so its report and metrics stay viewable in the UI; this
    step's failure (its message on the node and as the pod's termination message) is what
    ends the run FAILED, as `kfp-yolo run` exits 1 for the same values.
    """
    from kfp_yolo.components.boundary import install

    install()  # the failure below becomes the step's record (failure.json, termination log)
    from kfp_yolo.components.errors import JobFailed

    verdict = report.metadata.get("verdict", "the evaluate step gave no verdict")
    champion = report.metadata.get("champion", "unknown")
    raise JobFailed(f"quality gate not met: {verdict} (champion: {champion}); nothing was "
                    "exported or published; the evaluate step's report has the metrics.")
