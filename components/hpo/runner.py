"""One search, as the search step and `kfp-yolo tune` run it: the space from the config, the
trials (Optuna here; a Katib Experiment for a cluster launcher), the report and search.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from kfp_yolo.components.hpo.budget import TrialCost, check_budget
from kfp_yolo.components.hpo.result import SearchResult, TrialRecord, format_table
from kfp_yolo.components.hpo.space import SearchSpace, apply_values
from kfp_yolo.components.hpo.trial import base_spec

__all__ = ["price_of", "run_search", "run_search_step"]




def price_of(pool: str, node_pools: str) -> float | None:
    """The catalog's price per GPU-hour of `pool` (None: no price, or no such pool)."""
    if not node_pools:
        return None
    from kfp_yolo.components.k8s.pools import load_pools_text

    return next((p.hourly_price for p in load_pools_text(node_pools) if p.name == pool), None)


def run_search(config: dict[str, Any], dataset: str, workdir: Path, cost: TrialCost | None,
               *, echo: bool = True) -> SearchResult:
    """Checks the budget, runs the trials (progress lines on stderr), returns the result."""
    space = SearchSpace.from_config(config)
    trials, budget = int(config["hpo_trials"]), float(config["hpo_budget_gpu_h"])
    if cost is not None:
        check_budget(trials, budget, cost)

    from kfp_yolo.components.hpo.tracking import TrialRuns
    from kfp_yolo.components.tracking.mlflow_log import MlflowSettings

    runs = TrialRuns(MlflowSettings.from_environ(), experiment=config.get("name", "kfp-yolo"),
                     run_name=f"{config['run_id']}-search")

    def progress(record: TrialRecord) -> None:
        runs.trial(record)
        if echo:
            metric = f"{record.best_metric:.4f}" if record.best_metric is not None else "-"
            print(f"search: trial {record.number} {record.state} after {len(record.metrics)} "
                  f"epoch(s), mAP50-95 {metric}, {record.seconds:.0f} s", file=sys.stderr,
                  flush=True)

    if config.get("launcher", "local") != "local":
        from kfp_yolo.components.hpo.katib import run_katib_search

        result = run_katib_search(config, space, dataset, cost)
        for record in result.trials:
            runs.trial(record)
        runs.finish(result.best_trial)
        return result
    from kfp_yolo.components.hpo.local import run_local_search

    try:
        result = run_local_search(
            base_spec(config, dataset, str(workdir / "weights")), space, trials=trials,
            epochs=int(config["hpo_epochs"]), workdir=workdir,
            algorithm=config["hpo_algorithm"], parallel=int(config["hpo_parallel"]),
            budget_gpu_h=budget, cost=cost, on_trial=progress)
    except BaseException:
        runs.parent.finish("FAILED")
        raise
    runs.finish(result.best_trial)
    return result


def write_outputs(result: SearchResult, report_path: str | Path, title: str) -> None:
    """The HTML report at report_path and search.json beside it."""
    from kfp_yolo.components.reports.search import render_report

    report = Path(report_path)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_report(result, title=title))
    (report.parent / "search.json").write_text(json.dumps(result.to_dict(), indent=1))


def run_search_step(*, dataset_path: str, dataset_uri: str, report_path: str, report_uri: str,
                    config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The search step's work: (the best trial's training arguments, the summary)."""
    gpu_h = float(config.get("trial_gpu_h") or 0)
    cost = TrialCost(gpu_h=gpu_h or None, pool=config.get("pool", ""),
                     price_per_gpu_hour=price_of(config.get("pool", ""),
                                                 config.get("node_pools", "")),
                     epochs=int(config["hpo_epochs"]))
    remote = config.get("launcher", "local") != "local"
    workdir = Path(report_path).parent / "trials"
    # a cluster's trials write beside the report artifact, in the pipeline root's store
    config = {**config, "output_uri": report_uri.rstrip("/").rsplit("/", 1)[0] + "/trials"}
    result = run_search(config, dataset_uri if remote else dataset_path, workdir, cost)
    print(format_table(result), flush=True)
    write_outputs(result, report_path, title=f"Search before run {config['run_id']}")
    return apply_values(result.best_trial.values), result.summary()
