"""`kfp-yolo serve local [--config F] [--set K=V] [--version V] [--http-port P] [--grpc-port P]`.

Serves a published version's Triton repository with the real Triton of the `serve` extra on
loopback until SIGTERM or Ctrl-C, which stop Triton's whole process group (exit 143 / 130).
The raw ONNX detector runs through onnxruntime in a python-backend model (this Triton build has
no onnxruntime backend); everything else is loaded as published. The URLs go to stdout, one per
line, once the server is ready; Triton's log goes to a file in the work folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.errors import UserError
from kfp_yolo.pipelines.published import named_version

__all__ = ["run"]


def _version(cfg, version: str | None) -> str:
    from kfp_yolo.components.release.publish import finished_version

    version = named_version(cfg, version, doing="serve")
    return finished_version(cfg.registry_uri, cfg.name, version,
                            command="kfp-yolo serve local --version")


def run(args: argparse.Namespace) -> int:
    """Blocks until stopped; the CLI turns SIGTERM/Ctrl-C into its exit code."""
    from kfp_yolo.components import storage
    from kfp_yolo.components.release.triton_local import (
        LocalTriton,
        local_repository,
        tritonserver_home,
    )

    cfg = load_config(args.config, args.overrides)
    uri = _version(cfg, args.version)
    tritonserver_home()  # the extra is missing: say so before downloading anything
    for port in (args.http_port, args.grpc_port):
        if port is not None and not 1 <= port <= 65535:
            raise UserError(f"port {port} is not a TCP port; give 1-65535.")
    with tempfile.TemporaryDirectory(prefix="kfp-yolo-serve-") as tmp:
        work = Path(tmp)
        storage.download(f"{uri}/triton", str(work / "published"))
        models = local_repository(work / "published", work / "repository")
        server = LocalTriton(work / "repository", work, http_port=args.http_port or 0,
                             grpc_port=args.grpc_port or 0)
        print(f"serve: starting Triton for {uri} (models {', '.join(models)}); log "
              f"{work / 'tritonserver.log'}", file=sys.stderr)
        with server:
            print(f"{server.url}/{cfg.name}", flush=True)
            print(f"grpc://127.0.0.1:{server.grpc_port}/{cfg.name}", flush=True)
            print(f"serve: ready; `kfp-yolo predict --url {server.url}/{cfg.name} IMAGE`; "
                  "Ctrl-C stops it", file=sys.stderr, flush=True)
            while server.process is not None and server.process.poll() is None:
                time.sleep(0.5)
            raise UserError(f"tritonserver exited by itself: {server.log_tail()}")
    return 0
