"""The estimate: the probe's counted tensors plus what tensors do not show, as arithmetic.

fp32 weights, gradients, the EMA copy, optimizer state and step temporaries and DDP gradient
buckets are added to the probe's peak; the caching allocator's overhead, NCCL buffers and the
CUDA context on top. The constants below are where calibration lives: they are fitted to the
real ultralytics trainer on an H200 (issue 14), where
yolov5l 640 batch 16 measured, in MiB:

    precision  NVML over idle  torch reserved  torch allocated  reserved/allocated
    AMP               10820          10144            9014              1.125
    FP32              19822          19144           16205              1.181

A bare training loop (benchmarks/gpu_memory.py) fragments less (1.04-1.09), so the planner
reads high there by that difference, by design: the trainer is what runs on the cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.planner.probe import measure
from kfp_yolo.components.spec import PRECISIONS, canonical_optimizer

__all__ = ["CUDA_CONTEXT_MIB", "FRAGMENTATION", "HEADROOM", "NCCL_MIB", "MemoryEstimate",
           "estimate_peak", "fit_batch", "min_gpu_memory_mib", "resolve_model"]

HEADROOM = 0.9
"""Share of a GPU's memory a plan may fill; the rest absorbs prediction error."""
CUDA_CONTEXT_MIB = 676
"""NVML used minus torch reserved: CUDA context and loaded kernels, invisible to torch.

676 (AMP) and 678 (FP32) MiB measured on an H200 (torch 2.11, cu130, lazy module loading).
"""
FRAGMENTATION = {"amp": 1.13, "bf16": 1.13, "fp32": 1.18}
"""Reserved / allocated of torch's caching allocator in the real trainer, per precision.

Measured 10144 / 9014 = 1.125 (AMP) and 19144 / 16205 = 1.181 (FP32) on an H200; one ratio
for both would be off by 2-3% on one of them. cuBLAS and cuDNN workspaces come from
the same allocator, so they are inside both numbers and need no term of their own. bf16 stores
the same 2-byte activations as AMP and takes AMP's ratio (not measured on its own).
"""
NCCL_MIB = 256
"""NCCL channel buffers, allocated outside torch's allocator, when training on several GPUs."""
_MIB = 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak memory of one training GPU."""

    peak_mib: int
    """Peak GPU memory as NVML would report it (CUDA context included), MiB."""
    breakdown_mib: dict[str, int] = field(default_factory=dict)
    """Parts of the peak, MiB; they add up to peak_mib."""


def resolve_model(model: str) -> str:
    """Normalises a model name: a bare name such as ``yolov5l`` means ``yolov5l.yaml``."""
    model = str(model).strip()
    if not model:
        raise UserError("model is empty; give an ultralytics model YAML such as 'yolov5l.yaml' "
                        "or a path to a .pt checkpoint.")
    suffix = Path(model).suffix.lower()
    if suffix not in (".yaml", ".yml", ".pt"):
        model += ".yaml"
    if Path(model).suffix.lower() == ".pt" and not Path(model).is_file():
        raise UserError(f"model {model!r}: no such .pt file; give an existing checkpoint path or a "
                        "model YAML such as 'yolov5l.yaml' (checkpoints are never downloaded).")
    return model


def _check(imgsz: int, batch: int, precision: str, optimizer: str, nc: int) -> str:
    """Validates the step's inputs; returns the canonical optimizer name."""
    if not isinstance(imgsz, int) or imgsz < 32:
        raise UserError(f"imgsz must be an integer of at least 32 pixels, got {imgsz!r}.")
    if not isinstance(batch, int) or batch < 1:
        raise UserError(f"batch per GPU must be a positive integer, got {batch!r}.")
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}.")
    name = canonical_optimizer(optimizer)
    if not isinstance(nc, int) or nc < 1:
        raise UserError(f"nc (number of classes) must be a positive integer, got {nc!r}.")
    return name


def estimate_peak(model: str, *, imgsz: int, batch: int, precision: str = "amp",
                  optimizer: str = "SGD", nc: int = 80, world_size: int = 1,
                  cache_dir: str | Path | None = None) -> MemoryEstimate:
    """Predicts the peak memory of one training GPU.

    Args:
        model: ultralytics model YAML (``yolov5l.yaml``; a bare ``yolov5l`` works) or a .pt path.
        imgsz: Training image size; rounded up to a multiple of the largest stride.
        batch: Batch per GPU.
        precision: ``amp`` (fp16 autocast), ``bf16`` (bf16 autocast) or ``fp32``.
        optimizer: ``SGD``, ``Adam``, ``AdamW`` or ``auto`` (counted as AdamW, the larger state).
        nc: Number of classes.
        world_size: GPUs in the job; above 1 adds DDP gradient buckets and NCCL buffers.
        cache_dir: Folder for the on-disk probe cache (None: in-memory only).

    Returns:
        The peak (MiB, as NVML reports it) and its parts: weights, gradients, ema,
        optimizer_state, ddp_buckets, activations (saved activations, loss and backward
        temporaries at the peak op), autocast_weights, optimizer_step (temporaries, when the
        step is the peak), allocator_overhead (reserved minus the tensors above: the cache's
        slack and the cuBLAS/cuDNN workspaces), nccl and cuda_context. The parts before
        allocator_overhead predict torch's max_memory_allocated, those before nccl its
        max_memory_reserved.
    """
    optimizer = _check(imgsz, batch, precision, optimizer, nc)
    if not isinstance(world_size, int) or world_size < 1:
        raise UserError(f"world_size must be a positive integer, got {world_size!r}.")
    probe = measure(resolve_model(model), nc, precision != "fp32",
                   str(cache_dir) if cache_dir else None)
    s = max(math.ceil(imgsz / probe.stride) * probe.stride, probe.stride)
    step_bytes, cast_bytes = probe.step_peak(batch * (s / probe.s0) ** 2)

    grads = probe.param_bytes
    # SGD keeps a momentum buffer, Adam/AdamW two moments; "auto" may pick AdamW
    state = grads * (1 if optimizer == "SGD" else 2)
    # foreach step temporaries: SGD's weight-decayed gradient copy, AdamW's sqrt(v), Adam's both
    step_temp = grads * (2 if optimizer == "Adam" else 1)
    activations, casts = step_bytes - cast_bytes, cast_bytes
    if step_temp > step_bytes:  # tiny steps: the optimizer step holds the peak, not backward
        activations, casts = 0, 0
    else:
        step_temp = 0
    parts = {
        "weights": probe.param_bytes + probe.buffer_bytes,
        "gradients": grads,
        "ema": probe.param_bytes + probe.buffer_bytes,  # ModelEMA: a full fp32 copy
        "optimizer_state": state,
        # DDP copies gradients into its own flat buckets (gradient_as_bucket_view is off)
        "ddp_buckets": grads if world_size > 1 else 0,
        "activations": activations,
        "autocast_weights": casts,
        "optimizer_step": step_temp,
    }
    tensors = sum(parts.values())
    parts["allocator_overhead"] = int(tensors * (FRAGMENTATION[precision] - 1))
    parts["nccl"] = NCCL_MIB * _MIB if world_size > 1 else 0
    parts["cuda_context"] = CUDA_CONTEXT_MIB * _MIB
    breakdown = {name: round(nbytes / _MIB) for name, nbytes in parts.items()}
    return MemoryEstimate(peak_mib=sum(breakdown.values()), breakdown_mib=breakdown)


def min_gpu_memory_mib(peak_mib: int, headroom: float = HEADROOM) -> int:
    """GPU memory a predicted peak asks for: the peak plus the headroom for prediction error."""
    if not 0 < headroom <= 1:
        raise UserError(f"headroom must be in (0, 1], got {headroom!r}.")
    return math.ceil(peak_mib / headroom)


def fit_batch(model: str, *, imgsz: int, precision: str, optimizer: str, nc: int,
              gpu_memory_mib: int, headroom: float = HEADROOM, world_size: int = 1,
              cache_dir: str | Path | None = None, limit: int = 4096) -> int:
    """Largest batch per GPU whose predicted peak fits ``headroom * gpu_memory_mib`` (0: none).

    The global batch for N GPUs is N times this.
    """
    def fits(batch: int) -> bool:
        peak = estimate_peak(model, imgsz=imgsz, batch=batch, precision=precision,
                             optimizer=optimizer, nc=nc, world_size=world_size,
                             cache_dir=cache_dir).peak_mib
        return min_gpu_memory_mib(peak, headroom) <= gpu_memory_mib

    if not fits(1):
        return 0
    low, high = 1, 2  # peak grows with batch: double until it no longer fits, then bisect
    while high <= limit and fits(high):
        low, high = high, high * 2
    if high > limit:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low
