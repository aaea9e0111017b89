"""The search step: hyperparameter trials before the training (components/hpo)."""

from typing import NamedTuple

from kfp.dsl import HTML, Dataset, Input, Metrics, Output

__all__ = ["search_component"]


def search_component(
    dataset: Input[Dataset], run_id: str, config: dict, batch: int, trial_gpu_h: float,
    pool: str, node_pools: str, min_gpu_memory_mib: int, tolerations: list,
    report: Output[HTML], metrics: Output[Metrics],
) -> NamedTuple("SearchOutputs", [("imgsz", int), ("lr0", float), ("hyp", dict),
                                  ("summary", dict)]):
    """KFP step: with hpo_trials > 0, short trials over the hpo_* search space; the best
    trial's imgsz, lr0 and other training arguments (hyp) go to the training. With 0 it passes
    the config's imgsz and lr0 through at once.

    `config` is the validate step's checked values, whole. Trials run through the local
    launcher here (launcher local: torchrun in this step's pod); a cluster launcher's search
    is a Katib Experiment of TrainJob trials (components/hpo/katib). `batch` is the plan's,
    `trial_gpu_h` its estimate of one trial on `pool`; `report` the search report (HTML),
    `metrics` its numbers (trials, pruned, best mAP50-95, GPU-hours).
    """
    from kfp_yolo.components.boundary import install

    install()  # before any work: a failure from here on becomes the step's record
    from collections import namedtuple
    from pathlib import Path

    from kfp_yolo.components.hpo.runner import run_search_step

    outputs = namedtuple("SearchOutputs", ["imgsz", "lr0", "hyp", "summary"])
    imgsz, lr0 = int(config["imgsz"]), float(config["lr0"])
    if not config["hpo_trials"]:
        Path(report.path).write_text("<!doctype html><meta charset='utf-8'><title>search"
                                     "</title><p>No hyperparameter search: hpo_trials is 0.</p>")
        return outputs(imgsz, lr0, {}, {})
    best, summary = run_search_step(
        dataset_path=dataset.path, dataset_uri=dataset.uri, report_path=report.path,
        report_uri=report.uri,
        config={**config, "run_id": run_id, "batch": batch, "trial_gpu_h": trial_gpu_h,
                "pool": pool, "node_pools": node_pools,
                "min_gpu_memory_mib": min_gpu_memory_mib, "tolerations": tolerations})
    for key, value in summary.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics.log_metric(f"search/{key}", value)
    hyp = {k: v for k, v in best.items() if k not in ("imgsz", "lr0")}
    summary = {k: v for k, v in summary.items() if v is not None}  # KFP's Struct has no null
    return outputs(int(best.get("imgsz", imgsz)), float(best.get("lr0", lr0)), hyp, summary)
