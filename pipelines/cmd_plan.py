"""`kfp-yolo plan`: peak GPU memory and its breakdown, and per pool: batch, fit, images/s, time
and cost; the pool the objective picks.

Speaks the config's language: `--config F` and `--set K=V` as `run` and `compile` take them,
the same defaults (RunConfig), a global `--batch`; the flags override the config. `--batch 0`
shows the auto batch (per pool in the table), and the rule that chose it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from pydantic import ValidationError

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.config.run_config import RunConfig, format_error
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.pools import Pool, load_pools
from kfp_yolo.components.planner import HEADROOM, Plan, plan, resolve_model
from kfp_yolo.components.planner.history import History, history_uri, load_history
from kfp_yolo.components.reports.plan import duration, money
from kfp_yolo.components.runtime import offline_environment

__all__ = ["run"]

FLAGS = ("model", "imgsz", "batch", "precision", "optimizer", "epochs", "objective",
         "deadline_h")
"""Flags that are config keys of the same name (--deadline-h is deadline_h)."""


def run(args: argparse.Namespace) -> int:
    """Plans one configuration and prints a table, or JSON with --json."""
    cfg = _config(args)
    if args.gpus is not None and args.gpus < 1:
        raise UserError(f"--gpus must be at least 1, got {args.gpus}.")
    if args.train_images is not None and args.train_images < 1:
        raise UserError(f"--train-images must be the training split's image count (>= 1), got "
                        f"{args.train_images}.")
    model = resolve_model(cfg.model)
    pools = load_pools(args.pools)
    # --gpus N: N GPUs of any shape; else the config's nodes x procs_per_node, as the DAG plans
    world = args.gpus or cfg.world_size
    source = args.history if args.history is not None else history_uri(cfg.registry_uri,
                                                                       cfg.checkpoint_uri)
    history = _history(source, explicit=args.history is not None)
    # probes are cached beside ultralytics' settings, so a second `plan` answers at once
    cache_dir = offline_environment() / "memory-probes"
    # ultralytics announces its settings file on stdout at first import: keep stdout for the answer
    with contextlib.redirect_stdout(sys.stderr):
        result = plan(model, imgsz=cfg.imgsz, batch=cfg.batch, world_size=world,
                      precision=cfg.precision, optimizer=cfg.optimizer, nc=args.nc, pools=pools,
                      cache_dir=cache_dir, procs_per_node=None if args.gpus else
                      cfg.procs_per_node, train_images=args.train_images,
                      objective=cfg.objective, epochs=cfg.epochs, deadline_h=cfg.deadline_h,
                      history=history.records, workers=cfg.workers)
    if args.json:
        print(json.dumps({"model": model, "imgsz": cfg.imgsz, "precision": cfg.precision,
                          "optimizer": cfg.optimizer, "nc": args.nc, "headroom": HEADROOM,
                          "deadline_h": cfg.deadline_h, "history": source,
                          "history_records": len(history.records),
                          "history_ignored": [{"name": name, "why": why} for name, why
                                              in history.ignored.items()],
                          **result.to_dict()}, indent=2))
    else:
        print(_table(result, model, cfg, args.nc, pools, source, history))
    return 0


def _config(args: argparse.Namespace) -> RunConfig:
    """The config file and --set values, then the flags given (each checked as its key)."""
    cfg = load_config(args.config, args.overrides)
    flags = {key: getattr(args, key) for key in FLAGS if getattr(args, key) is not None}
    if "model" in flags:
        flags["model"] = resolve_model(flags["model"])  # a bare `yolov5l` means yolov5l.yaml
    if not flags:
        return cfg
    try:
        return RunConfig(**{**cfg.model_dump(), **flags})
    except ValidationError as err:
        loc = err.errors()[0]["loc"]
        key = str(loc[0]) if loc else ""
        where = f"--{key.replace('_', '-')}" if key in flags else (args.config or "--set")
        raise UserError(format_error(err, where)) from None


def _history(uri: str, *, explicit: bool) -> History:
    """The history; a store the config names but that cannot be read is a warning."""
    if not uri:
        return History()
    try:
        return load_history(uri)
    except Exception as exc:  # noqa: BLE001 - only --history given on purpose must work
        if explicit:
            raise
        print(f"kfp-yolo: warning: throughput history {uri} not read ({exc}); planning "
              "without it", file=sys.stderr)
        return History()


def pools_table(result: Plan) -> list[str]:
    """The per-pool table (also in the plan step's report): fit, batch, speed, time, cost."""
    lines = [f"   {'pool':<12}{'batch':>6}{'peak MiB':>10}{'fits':>6}{'images/s':>10} "
             f"{'(source)':<12}{'epoch':>8}{'run':>8}{'$/GPU-h':>9}{'$/epoch':>9}{'$/run':>9}"]
    for row in result.pools:
        mark = "*" if row.name == result.pool.name else " "
        speed = f"{row.images_per_s:,.0f}" if row.images_per_s else "-"
        price = f"{row.price_per_gpu_hour:.2f}" if row.price_per_gpu_hour is not None else "-"
        lines.append(f" {mark} {row.name:<12}{row.batch:>6}{row.peak_mib:>10,}"
                     f"{'yes' if row.fits else 'no':>6}{speed:>10} "
                     f"{row.images_per_s_source:<12}{duration(row.epoch_s):>8}"
                     f"{duration(row.run_s):>8}{price:>9}{money(row.cost_per_epoch):>9}"
                     f"{money(row.cost_per_run):>9}")
    return lines


def _table(result: Plan, model: str, cfg: RunConfig, nc: int, pools: list[Pool],
           history: str = "", read: History | None = None) -> str:
    lines = [
        f"model {model}  imgsz {cfg.imgsz}  precision {cfg.precision}  "
        f"optimizer {cfg.optimizer}  nc {nc}",
        f"batch {result.batch_per_gpu} per GPU x {result.world_size} GPU(s) = {result.batch}, "
        f"accumulate {result.accumulate} (effective batch {result.effective_batch})",
        f"  {result.batch_rule}",
        "",
        f"{'predicted peak per GPU':<24}{'MiB':>8}",
    ]
    for part, mib in result.breakdown_mib.items():
        if mib:
            lines.append(f"  {part:<22}{mib:>8,}")
    lines += [
        f"  {'total':<22}{result.peak_mib:>8,}  ({result.peak_mib / 1024:.1f} GiB)",
        f"  {'requested':<22}{result.min_gpu_memory_mib:>8,}  (peak / {HEADROOM:.0%} headroom)",
        "",
        f"   {'pool':<12}{'GPU':<24}{'GPU MiB':>8}{'max batch/GPU':>15}{'auto batch':>12}"
        f"{'$/GPU-hour':>12}",
    ]
    for pool in pools:
        mark = "*" if pool.name == result.pool.name else " "
        price = f"{pool.hourly_price:.2f}" if pool.hourly_price is not None else "-"
        lines.append(f" {mark} {pool.name:<12}{pool.gpu_product[:23]:<24}"
                     f"{pool.gpu_memory_mib:>8,}{result.max_batch.get(pool.name, 0):>15}"
                     f"{result.auto_batch.get(pool.name, 0):>12}{price:>12}")
    per = (f"{result.train_images} training images x {result.epochs} epochs"
           if result.train_images else "epoch and run need --train-images N")
    lines += ["", f"time and cost ({per}; images/s of the whole job; $ = the catalog's "
              "hourly_price x GPUs x hours):", *pools_table(result), "",
              "images/s source: measured = the nearest run in the throughput history "
              f"({_history_note(history, read or History())}), scaled to this shape (the median "
              "of that shape's newest records); estimated = the "
              "H200 reference scaled by the GPU's spec sheet, capped by the dataloader; "
              "unknown = neither."]
    for row in result.pools:  # why a row cannot be chosen, else where its images/s comes from
        lines.append(f"   {row.name}: {row.why or row.images_per_s_note}")
    expr = result.affinity[0]
    lines += ["", result.pool_rule,
              f"pool {result.pool.name}: node affinity {expr['key']} {expr['operator']} "
              f"{expr['values'][0]}"]
    return "\n".join(lines)


def _history_note(uri: str, read: History) -> str:
    if not uri:
        return "none configured: registry_uri, checkpoint_uri or --history"
    ignored = read.ignored_note()
    return f"{uri}, {len(read.records)} record(s)" + (f"; {ignored}" if ignored else "")
