"""`kfp-yolo lineage [--config FILE] [--set KEY=VALUE] VERSION [--json]`: where a version came from.

Reads VERSION's lineage.json under registry_uri/<name>/ and follows each parent that is a
version of the same name, back to the first version trained from scratch or from a file
(components/release/lineage.py). `latest` names the version the `latest` pointer names.
"""

from __future__ import annotations

import argparse
import json

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.release.lineage import read_chain, render_chain
from kfp_yolo.pipelines.published import named_version

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Prints the chain (text, or JSON with --json)."""
    cfg = load_config(args.config, args.overrides)
    version = named_version(cfg, args.version, doing="trace")
    chain = read_chain(cfg.registry_uri, cfg.name, version)
    print(json.dumps(chain, indent=1) if args.json else render_chain(chain))
    return 0
