"""`kfp-yolo compile`: the KFP IR YAML that ML engineers upload to the Kubeflow UI.

Compiling runs no planner and imports no torch: the plan step places the GPU tasks at run time,
from the node-pool catalog compiled in here as the `node_pools` parameter's default (the
`--pools` file, else the catalog shipped in the package) as one line of JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kfp_yolo.components.atomic import staged
from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.config.run_config import RunConfig

__all__ = ["compile_pipeline", "run"]


def compile_pipeline(cfg: RunConfig, output: str | Path,
                     pools_path: str | Path | None = None) -> Path:
    """Compiles the DAG for a cluster to output (temporary name, then moved into place)."""
    from kfp import compiler

    from kfp_yolo.components.config.checks import check_config
    from kfp_yolo.components.k8s.pools import catalog_json
    from kfp_yolo.pipelines.training import build_pipeline

    # Checked here: a bad catalog, or a config the catalog cannot run (bf16 with no Ampere
    # pool), fails the compile and the submit, not the run's first step on the cluster.
    node_pools = catalog_json(pools_path)
    check_config(cfg.model_dump(), node_pools, source="config")
    pipeline = build_pipeline(cfg, node_pools=node_pools, cluster=True)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with staged(output, suffix=".yaml") as partial:  # the compiler insists on the extension
        compiler.Compiler().compile(pipeline, str(partial))
    return output


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + ([f"image={args.image}"] if args.image else [])
    cfg = load_config(args.config, overrides)
    if args.output == "-":  # the YAML on stdout (`kfp-yolo compile -o - | ...`), nothing else
        import tempfile

        with tempfile.TemporaryDirectory(prefix="kfp-yolo-compile-") as folder:
            path = compile_pipeline(cfg, Path(folder) / "pipeline.yaml", args.pools)
            sys.stdout.write(path.read_text())
        return 0
    path = compile_pipeline(cfg, args.output, args.pools)
    print(f"wrote {path}", file=sys.stderr)
    return 0
