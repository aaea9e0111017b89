"""What one training image costs a model (FLOPs, convolutions, activation bytes), cached.

The throughput model (throughput.py) scales the measured reference by these; they come from
the real model: ultralytics' own FLOPs count, its Conv2d layers, and the memory planner's
probe for the activations. Built once per model and cached beside the probes.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from kfp_yolo.components.atomic import write_atomic
from kfp_yolo.components.planner.estimate import estimate_peak, resolve_model
from kfp_yolo.components.planner.probe import _cache_key, build_model
from kfp_yolo.components.planner.throughput import ModelWork

__all__ = ["model_work"]

_BATCH = 16  # activations per image: the probe's at batch 16 (exact linear part), / 16


def model_work(model: str, *, nc: int, precision: str,
               cache_dir: str | Path | None = None) -> ModelWork:
    """FLOPs and convolutions of the model, and its activation MiB per 640 px image."""
    model = resolve_model(model)
    gflops, convs = _size(model, nc, str(cache_dir) if cache_dir else None)
    peak = estimate_peak(model, imgsz=640, batch=_BATCH, precision=precision, nc=nc,
                         cache_dir=cache_dir)
    return ModelWork(gflops_640=gflops, conv_layers=convs,
                     activation_mib_640=peak.breakdown_mib["activations"] / _BATCH)


@lru_cache(maxsize=16)
def _size(model: str, nc: int, cache_dir: str | None) -> tuple[float, int]:
    path = Path(cache_dir) / f"{_cache_key(model, nc, False)}-size.json" if cache_dir else None
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            return float(data["gflops_640"]), int(data["conv_layers"])
        except (ValueError, TypeError, KeyError):
            pass  # a damaged entry is measured again
    import torch
    from ultralytics.utils.torch_utils import get_flops

    net = build_model(model, nc)
    gflops = float(get_flops(net, 640))
    convs = sum(1 for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"gflops_640": gflops, "conv_layers": convs}))
    return gflops, convs
