"""`kfp-yolo promote --config FILE [--set KEY=VALUE] VERSION`: a rollback in one command.

Points the registries' champion (MLflow's alias when MLFLOW_TRACKING_URI is set, the Model
Registry's when model_registry_address is) and then `latest` at VERSION, an earlier finished
version under registry_uri/<name>/. A registry that is down fails the command (exit 1) with
`latest` left where it was; running it again finishes the job.
"""

from __future__ import annotations

import argparse
import os

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.registries.configured import open_registries
from kfp_yolo.components.release.publish import finished_version, promote
from kfp_yolo.pipelines.published import registry_root

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Promotes args.version; prints the new `latest`."""
    cfg = load_config(args.config, args.overrides)
    registry_root(cfg, "promote")
    # a wrong version is found before any registry is asked (or found to be down)
    finished_version(cfg.registry_uri, cfg.name, args.version)
    registries = open_registries(
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
        model_registry_address=cfg.model_registry_address,
        model_registry_token_path=cfg.model_registry_token_path,
        storage_key=cfg.storage_secret)
    pointer = promote(registry_uri=cfg.registry_uri, name=cfg.name, version=args.version,
                      registries=registries)
    where = "".join(f", {r.label}" for r in registries)
    print(f"latest{where} -> {pointer['version']} ({pointer['uri']})")
    return 0
