"""`kfp-yolo plan`: predicted peak GPU memory, its breakdown, the pool that fits, batch per pool.

`--batch 0` shows the auto batch: the largest of 64/32/16/... in total that fits (per pool in
the table's `auto batch` column), and the rule that chose it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.planner import HEADROOM, Plan, plan, resolve_model
from kfp_yolo.components.pools import Pool, load_pools
from kfp_yolo.components.runtime import offline_environment

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Plans one configuration and prints a table, or JSON with --json."""
    if args.gpus < 1:
        raise UserError(f"--gpus must be at least 1, got {args.gpus}.")
    if args.batch < 0:
        raise UserError(f"--batch must be 0 (auto: the largest of 64/32/16/... that fits) or "
                        f"positive, got {args.batch}.")
    model = resolve_model(args.model)
    pools = load_pools(args.pools)
    # probes are cached beside ultralytics' settings, so a second `plan` answers at once
    cache_dir = offline_environment() / "memory-probes"
    # ultralytics announces its settings file on stdout at first import: keep stdout for the answer
    with contextlib.redirect_stdout(sys.stderr):
        result = plan(model, imgsz=args.imgsz, batch=args.batch * args.gpus,
                      world_size=args.gpus, precision=args.precision, optimizer=args.optimizer,
                      nc=args.nc, pools=pools, cache_dir=cache_dir)
    if args.json:
        print(json.dumps({"model": model, "imgsz": args.imgsz, "precision": args.precision,
                          "optimizer": args.optimizer, "nc": args.nc, "headroom": HEADROOM,
                          **result.to_dict()}, indent=2))
    else:
        print(_table(result, model, args, pools))
    return 0


def _table(result: Plan, model: str, args: argparse.Namespace, pools: list[Pool]) -> str:
    lines = [
        f"model {model}  imgsz {args.imgsz}  precision {args.precision}  "
        f"optimizer {args.optimizer}  nc {args.nc}",
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
        f"   {'pool':<12}{'GPU':<24}{'MiB':>8}{'max batch/GPU':>15}{'auto batch':>12}"
        f"{'$/node-hour':>13}",
    ]
    for pool in pools:
        mark = "*" if pool.name == result.pool.name else " "
        price = f"{pool.hourly_price:.2f}" if pool.hourly_price is not None else "-"
        lines.append(f" {mark} {pool.name:<12}{pool.gpu_product[:23]:<24}"
                     f"{pool.gpu_memory_mib:>8,}{result.max_batch.get(pool.name, 0):>15}"
                     f"{result.auto_batch.get(pool.name, 0):>12}{price:>13}")
    expr = result.affinity[0]
    lines += ["", f"pool {result.pool.name}: node affinity {expr['key']} {expr['operator']} "
                  f"{expr['values'][0]}"]
    return "\n".join(lines)
