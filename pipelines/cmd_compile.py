"""`kfp-yolo compile`: the KFP IR YAML that ML engineers upload to the Kubeflow UI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kfp_yolo.components.atomic import staged
from kfp_yolo.pipelines.config import RunConfig, load_config

__all__ = ["compile_pipeline", "placement_for", "run"]


def placement_for(cfg: RunConfig, pools_path: str | Path | None = None):
    """The planner's placement of cfg's GPU tasks (pool, nvidia.com/gpu.memory Gt affinity)."""
    from kfp_yolo.components.planner import plan
    from kfp_yolo.components.pools import load_pools
    from kfp_yolo.pipelines.training import Placement

    result = plan(cfg.model, imgsz=cfg.imgsz, batch=cfg.batch, world_size=cfg.world_size,
                  precision=cfg.precision, optimizer=cfg.optimizer, nc=80,
                  pools=load_pools(pools_path), procs_per_node=cfg.procs_per_node)
    return Placement(affinity=result.affinity, tolerations=tuple(result.pool.tolerations))


def compile_pipeline(cfg: RunConfig, output: str | Path,
                     pools_path: str | Path | None = None) -> Path:
    """Compiles the DAG for a cluster to output (temporary name, then moved into place)."""
    from kfp import compiler

    from kfp_yolo.pipelines.training import build_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with staged(output, suffix=".yaml") as partial:  # the compiler insists on the extension
        compiler.Compiler().compile(build_pipeline(cfg, placement_for(cfg, pools_path)),
                                    str(partial))
    return output


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + ([f"image={args.image}"] if args.image else [])
    cfg = load_config(args.config, overrides)
    path = compile_pipeline(cfg, args.output, args.pools)
    print(f"wrote {path}", file=sys.stderr)
    return 0
