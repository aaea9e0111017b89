"""The data and planning steps: prepare-dataset, plan-resources."""

from typing import NamedTuple

from kfp.dsl import Dataset, Markdown, Model, Output

__all__ = ["plan_resources_component", "prepare_dataset_component"]


def prepare_dataset_component(
    dataset_uri: str,
    seed: int,
    val_fraction: float,
    dataset: Output[Dataset],
    report: Output[Markdown],
    dataset_hash: str = "",
) -> NamedTuple("PrepareOutputs", [("content_hash", str), ("nc", int),
                                   ("train_images", int)]):
    """KFP step: prepares the dataset into the Dataset artifact.

    Returns:
        content_hash of the prepared dataset; nc, its number of classes, and train_images, the
        size of its training split (the planner's inputs: the detection head and the loss grow
        with nc; an auto batch keeps enough batches per epoch).

    Raises:
        UserError: dataset_hash is pinned and the prepared data's content hash differs.
    """
    from kfp_yolo.components.boundary import install

    install()  # before any work: a failure from here on becomes the step's record
    from collections import namedtuple

    from kfp_yolo.components.data.prepare import prepare_dataset
    from kfp_yolo.components.reports.dataset import render_report
    from kfp_yolo.components.reports.media import fit_markdown

    prepared = prepare_dataset(dataset_uri, dataset.path, seed=seed, val_fraction=val_fraction)
    if dataset_hash and prepared.content_hash != dataset_hash:
        from kfp_yolo.components.errors import UserError

        raise UserError(f"dataset_hash={dataset_hash!r} is invalid: {dataset_uri} now hashes to "
                        f"{prepared.content_hash!r}, so the data changed since it was pinned; "
                        "pin the new hash, or restore the data.")
    print(f"prepare-dataset: content hash {prepared.content_hash}"
          + (" (matches the pinned dataset_hash)" if dataset_hash else ""))
    dataset.metadata.update({"content_hash": prepared.content_hash, **prepared.stats})
    # how an export was read, beside the statistics in the UI (the same as data.yaml's source)
    source = prepared.conversion or {"format": "yolo"}
    dataset.metadata.update({
        (key if key.startswith("source_") else f"source_{key}"):
            {str(k): v for k, v in value.items()} if isinstance(value, dict) else value
        for key, value in source.items() if key != "files"})
    with open(report.path, "w") as handle:
        handle.write(fit_markdown(render_report(prepared)))
    outputs = namedtuple("PrepareOutputs", ["content_hash", "nc", "train_images"])
    return outputs(prepared.content_hash, len(prepared.names), prepared.stats["train_images"])


def plan_resources_component(
    model: str, imgsz: int, batch: int, nodes: int, procs_per_node: int, precision: str,
    optimizer: str, nc: int, node_pools: str, report: Output[Markdown], train_images: int = 0,
    epochs: int = 0, objective: str = "smallest", deadline_h: float = 0.0, workers: int = 0,
    registry_uri: str = "", checkpoint_uri: str = "", hpo_trials: int = 0, hpo_epochs: int = 3,
    hpo_fraction: float = 1.0, hpo_budget_gpu_h: float = 0.0, name: str = "",
    warm_start: str = "none", base_model: Output[Model] = None,
) -> NamedTuple("PlanOutputs", [("batch", int), ("peak_mib", int), ("pool", str),
                                ("min_gpu_memory_mib", int), ("node_affinity", dict),
                                ("tolerations", list), ("batch_rule", str),
                                ("accumulate", int), ("pool_rule", str),
                                ("trial_gpu_h", float)]):
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
        hpo_*: the search before the training: one trial's GPU-hours are estimated on the
            chosen pool, and a search the budget cannot pay for is refused here, before any
            GPU (components/hpo/budget.py).
        name, warm_start: with model a .pt URI or path or registry:VERSION, or warm_start
            champion/latest, the checkpoint is fetched once into `base_model` (base.pt, its
            sha256 and classes in the metadata), checked, and sized from its architecture; the
            train step and its pods read those bytes.

    Returns:
        batch (global), peak_mib (per GPU), pool (name), min_gpu_memory_mib, and the
        placement every GPU task of the run gets at run time: node_affinity (a Kubernetes
        NodeAffinity requiring that much GPU memory) and the pool's tolerations; batch_rule
        says how the batch was chosen, accumulate how many steps ultralytics accumulates,
        pool_rule why this pool (the objective).
    """
    from kfp_yolo.components.boundary import install

    install()  # before any work: a failure from here on becomes the step's record
    # KFP copies this function's source alone into the component: imports live here
    import tempfile
    from collections import namedtuple

    from kfp_yolo.components.k8s.pools import (
        load_pools_text,
        pools_for_precision,
        required_node_affinity,
    )
    from kfp_yolo.components.planner import plan
    from kfp_yolo.components.planner.history import History, history_uri, load_history
    from kfp_yolo.components.reports.media import fit_markdown
    from kfp_yolo.components.reports.plan import markdown_report
    from kfp_yolo.components.training.warm_start import fetch_base_model

    # Before the planner: a missing, corrupt or wrong-task checkpoint is refused here, in one
    # sentence, and the planner sizes the GPUs from the checkpoint's own architecture.
    out = base_model.path if base_model is not None else tempfile.mkdtemp(prefix="kfp-yolo-")
    base = fetch_base_model(model, out, warm_start=warm_start, registry_uri=registry_uri,
                            name=name)
    if base is not None:
        if base_model is not None:  # None only when a test calls the function directly
            base_model.metadata.update(base.metadata())
        model = str(base.path)

    # bf16 goes only to GPUs that compute in it (Ampere or newer): the others emulate it
    pools = pools_for_precision(load_pools_text(node_pools, source="the node_pools parameter"),
                                precision)
    history, uri = History(), history_uri(registry_uri, checkpoint_uri)
    try:  # a hint: a store that cannot be read now plans from the throughput model
        history = load_history(uri) if uri else History()
    except Exception as exc:  # noqa: BLE001
        print(f"warning: throughput history {uri} not read ({exc}); planning without it")
    result = plan(model, imgsz=imgsz, batch=batch, world_size=nodes * procs_per_node,
                  precision=precision, optimizer=optimizer, nc=nc, pools=pools,
                  procs_per_node=procs_per_node, train_images=train_images or None,
                  objective=objective, epochs=epochs or None, deadline_h=deadline_h,
                  history=history.records, workers=workers)
    from kfp_yolo.components.hpo.budget import check_budget, trial_cost

    cost = trial_cost(result, epochs=hpo_epochs, fraction=hpo_fraction)
    check_budget(hpo_trials, hpo_budget_gpu_h, cost)
    with open(report.path, "w") as handle:
        handle.write(fit_markdown(markdown_report(result, history=uri,
                                                  records=len(history.records),
                                                  ignored=history.ignored_note(shown=10))))
    if history.ignored:
        print(f"warning: throughput history {uri}: {history.ignored_note()}")
    print(f"plan: {result.peak_mib} MiB per GPU at batch {result.batch_per_gpu} per GPU "
          f"(global {result.batch}, {nc} classes) -> pool {result.pool.name}; "
          f"{result.batch_rule}; {result.pool_rule}")
    outputs = namedtuple("PlanOutputs", ["batch", "peak_mib", "pool", "min_gpu_memory_mib",
                                         "node_affinity", "tolerations", "batch_rule",
                                         "accumulate", "pool_rule", "trial_gpu_h"])
    return outputs(result.batch, result.peak_mib, result.pool.name, result.min_gpu_memory_mib,
                   required_node_affinity(result.affinity),
                   [dict(t) for t in result.pool.tolerations], result.batch_rule,
                   result.accumulate, result.pool_rule, cost.gpu_h or 0.0)
