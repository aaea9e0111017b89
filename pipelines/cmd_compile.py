"""`kfp-yolo compile`: the KFP IR YAML that ML engineers upload to the Kubeflow UI."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from pipelines.config import RunConfig, load_config

__all__ = ["compile_pipeline", "run"]


def compile_pipeline(cfg: RunConfig, output: str | Path) -> Path:
    """Compiles the DAG for cfg to output, written under a temporary name and moved into place."""
    from kfp import compiler

    from pipelines.training import build_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".yaml", dir=output.parent)
    os.close(fd)
    try:
        compiler.Compiler().compile(build_pipeline(cfg), partial)
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return output


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + ([f"image={args.image}"] if args.image else [])
    cfg = load_config(args.config, overrides)
    path = compile_pipeline(cfg, args.output)
    print(f"wrote {path}", file=sys.stderr)
    return 0
