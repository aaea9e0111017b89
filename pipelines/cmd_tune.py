"""`kfp-yolo tune [--config FILE] [--set KEY=VALUE ...] [--workdir DIR] [--pools FILE]`.

The search alone, on this machine: prepares the dataset, plans the run (a trial's GPU-hours on
the pool the objective picks), refuses a search the budget cannot pay for (exit 2, before any
trial), then runs hpo_trials real trials with Optuna through the local launcher. stdout gets
the trials table (the best marked *); progress goes to stderr; DIR gets search.json and the
HTML report (search_report.html).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.config.run_config import RunConfig
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.hpo.result import SearchResult, format_table

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    # stdout is the trials table: ultralytics' and the trials' logs go to stderr
    with contextlib.redirect_stdout(sys.stderr):
        search, workdir = _search(cfg, args)
    print(format_table(search), flush=True)
    print(f"tune: report {workdir / 'search_report.html'}, trials {workdir / 'search.json'}",
          file=sys.stderr)
    return 0


def _search(cfg: RunConfig, args: argparse.Namespace) -> tuple[SearchResult, Path]:
    from kfp_yolo.components.data.prepare import prepare_dataset
    from kfp_yolo.components.hpo.budget import trial_cost
    from kfp_yolo.components.hpo.runner import run_search, write_outputs
    from kfp_yolo.components.k8s.pools import load_pools, pools_for_precision
    from kfp_yolo.components.planner import plan

    if not cfg.hpo_trials:
        raise UserError("kfp-yolo tune: hpo_trials is 0, so there is nothing to search; "
                        "add --set hpo_trials=4 (or set it in the config).")
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"tune: preparing {cfg.dataset_uri}", file=sys.stderr, flush=True)
    prepared = prepare_dataset(cfg.dataset_uri, workdir / "dataset", seed=cfg.seed,
                               val_fraction=cfg.val_fraction)
    optimizer = "AdamW" if cfg.optimizer == "auto" else cfg.optimizer
    result = plan(cfg.model, imgsz=cfg.imgsz, batch=cfg.batch, world_size=cfg.world_size,
                  precision=cfg.precision, optimizer=optimizer, nc=len(prepared.names),
                  pools=pools_for_precision(load_pools(args.pools), cfg.precision),
                  procs_per_node=cfg.procs_per_node,
                  train_images=prepared.stats["train_images"], objective=cfg.objective,
                  epochs=cfg.hpo_epochs)
    cost = trial_cost(result, epochs=cfg.hpo_epochs, fraction=cfg.hpo_fraction)
    # lr0 resolved as `job render` resolves it (a trial that does not search lr0 trains with it)
    config = {**cfg.model_dump(), "lr0": cfg.learning_rate, "run_id": cfg.name,
              "batch": result.batch, "launcher": "local"}
    search = run_search(config, str(workdir / "dataset"), workdir / "trials", cost)
    write_outputs(search, workdir / "search_report.html", title=f"Search for {cfg.name}")
    return search, workdir
