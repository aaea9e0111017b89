"""`kfp-yolo run`: the whole DAG on this machine with kfp.local's SubprocessRunner."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from kfp_yolo.components.atomic import write_atomic
from kfp_yolo.components.errors import JobFailed
from kfp_yolo.pipelines.config import RunConfig, load_config
from kfp_yolo.pipelines.summary import collect_summary, format_summary

__all__ = ["run", "run_local"]


def run_local(cfg: RunConfig, workdir: str | Path) -> dict:
    """Runs the DAG for cfg under workdir; returns the summary (also written to summary.json)."""
    from kfp import local

    from kfp_yolo.components.runtime import offline_environment
    from kfp_yolo.pipelines.training import build_pipeline

    workdir = Path(workdir).resolve()
    pipeline_root = workdir / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    # Every step runs in a subprocess of this environment and inherits these settings.
    offline_environment(workdir / "yolo_config")
    if not cfg.checkpoint_uri:
        cfg = cfg.model_copy(update={"checkpoint_uri": str(workdir / "checkpoints")})
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=False)
    before = set(pipeline_root.iterdir())
    started = time.monotonic()
    build_pipeline(cfg)()
    elapsed = time.monotonic() - started
    runs = sorted(set(pipeline_root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    run_dir = runs[-1] if runs else None
    summary = collect_summary(run_dir, cfg, elapsed_s=elapsed)
    write_atomic(workdir / "summary.json", json.dumps(summary, indent=2))
    return summary


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    summary = run_local(cfg, args.workdir)
    print(format_summary(summary), file=sys.stderr)
    print(f"summary: {Path(args.workdir).resolve() / 'summary.json'}", file=sys.stderr)
    if summary["status"] != "succeeded":
        raise JobFailed(summary["reason"])
    return 0
