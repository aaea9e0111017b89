"""Training images/s of a model on a GPU type: the measured H200 reference scaled by spec sheets.

The model (stated, so it can be checked and replaced by measurements, see history.py):

- One training step of ``b`` images per GPU takes ``max(host, b x gpu)``: the host's Python
  dispatch of forward, loss and backward (``HOST_MS_PER_STEP``, which does not get faster on a
  bigger GPU) or the GPU's own work, whichever is longer. On the H200 yolov5l at 640 is
  host-bound at batch 16 (AMP 235.5 images/s = 68 ms per step) and GPU-bound at 64 (AMP 487.7
  images/s = 2.05 ms per image; FP32 284.2 = 3.52 ms). FP32 at 16 predicts 235 vs 225.6
  measured (+4%).
- The GPU's time per image is the reference's, half compute-bound (convolutions: scaled by the
  dense tensor throughput of the precision and by the model's FLOPs) and half memory-bound
  (batch norm, activations, the loss: scaled by memory bandwidth and by the activation bytes
  per image the memory planner's probe counts). FP32 convolutions run as TF32 on Ampere and
  later (PyTorch's cuDNN default), on CUDA cores before. bf16 needs Ampere or later.
- The input pipeline caps it: dataloader workers per GPU x ``WORKER_IMAGES_PER_S`` (one
  worker decodes and augments about 78 images/s at 640), scaled by pixels.
- Several GPUs: world size x the one-GPU rate x ``MULTI_GPU_EFFICIENCY``.

Published YOLOv5l points (torch 1.9, the older yolov5 trainer) against this model at batch 16:
A100-40GB about 95 images/s vs 156 estimated, V100 about 68 vs 74;
tests/integration/test_planner_cost.py keeps the model within 0.5x-2x of them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPUS", "HOST_MS_PER_STEP", "MULTI_GPU_EFFICIENCY", "REFERENCE", "WORKER_IMAGES_PER_S",
           "GpuSpec", "ModelWork", "Throughput", "estimate_images_per_s", "gpu_spec",
           "input_images_per_s"]


@dataclass(frozen=True)
class GpuSpec:
    """Public figures of one GPU type (dense, no sparsity)."""

    name: str
    fp16_tflops: float
    """FP16/BF16 tensor-core TFLOPS, dense."""
    fp32_tflops: float
    """FP32 TFLOPS on CUDA cores."""
    tf32_tflops: float | None
    """TF32 tensor-core TFLOPS, dense (None before Ampere)."""
    bandwidth_gbs: float
    """Memory bandwidth, GB/s."""
    bf16: bool
    """Native bf16 (Ampere and later)."""
    tokens: tuple[str, ...]
    """Every one of these is in the product name GPU Feature Discovery reports (split on '-')."""


# Sources (checked 2026-12): NVIDIA's data sheets for T4, Quadro RTX 4000, V100 (SXM2), A10,
# L4, L40S, A100 (SXM4 40 and 80 GB), H100 (SXM5 and PCIe), H200 (SXM); A10G is AWS's own
# variant with no NVIDIA data sheet: figures from Baseten's "NVIDIA A10 vs A10G" (2023).
# More specific entries first: "A100 80GB" before "A100", "H100 PCIe" before "H100".
GPUS: tuple[GpuSpec, ...] = (
    GpuSpec("H200", 989.0, 67.0, 494.5, 4800.0, True, ("H200",)),
    GpuSpec("H100-PCIe", 756.0, 51.0, 378.0, 2000.0, True, ("H100", "PCIE")),
    GpuSpec("H100", 989.0, 67.0, 494.5, 3350.0, True, ("H100",)),
    GpuSpec("A100-80GB", 312.0, 19.5, 156.0, 2039.0, True, ("A100", "80GB")),
    GpuSpec("A100-40GB", 312.0, 19.5, 156.0, 1555.0, True, ("A100",)),
    GpuSpec("L40S", 362.0, 91.6, 183.0, 864.0, True, ("L40S",)),
    GpuSpec("L4", 121.0, 30.3, 60.0, 300.0, True, ("L4",)),
    GpuSpec("A10G", 70.0, 35.0, 35.0, 600.0, True, ("A10G",)),
    GpuSpec("A10", 125.0, 31.2, 62.5, 600.0, True, ("A10",)),
    GpuSpec("V100", 125.0, 15.7, None, 900.0, False, ("V100",)),
    GpuSpec("T4", 65.0, 8.1, None, 320.0, False, ("T4",)),
    GpuSpec("RTX-4000", 57.0, 7.1, None, 416.0, False, ("RTX", "4000")),
)


def gpu_spec(product: str) -> GpuSpec | None:
    """The figures for a GPU product name as GFD or torch report it (None: not in the table).

    ``NVIDIA-A100-SXM4-40GB`` (GFD) and ``NVIDIA A100-SXM4-40GB`` (torch) are the same GPU.
    """
    tokens = set(str(product).upper().replace(" ", "-").replace("_", "-").split("-"))
    if "MIG" in tokens:  # a MIG slice (NVIDIA-A100-SXM4-40GB-MIG-1g.5gb) has a share of the GPU
        return None
    return next((g for g in GPUS if set(g.tokens) <= tokens), None)


@dataclass(frozen=True)
class ModelWork:
    """What one training image costs a model, relative quantities only."""

    gflops_640: float
    """Forward GFLOPs of one 640 px image, as ultralytics reports them (0: not counted)."""
    conv_layers: int
    """Convolutions in the model: the host's dispatch work per step grows with them."""
    activation_mib_640: float
    """Activation bytes per 640 px image at the precision (the memory planner's probe), MiB."""


REFERENCE = {
    "gpu": "H200", "model": "yolov5l.yaml", "imgsz": 640,
    # ultralytics' get_flops of yolov5l.yaml (nc 80) at 640 and its Conv2d count
    "gflops_640": 135.62, "conv_layers": 120,
    # the probe's activations per image at 640, MiB (estimate_peak's at batch 16, / 16)
    "activation_mib_640": {"amp": 512.7, "bf16": 512.7, "fp32": 980.9},
    # 1000 / images/s at batch 64 with the batch on the GPU (GPU-bound)
    "gpu_ms_per_image": {"amp": 1000 / 487.7, "bf16": 1000 / 487.7, "fp32": 1000 / 284.2},
}
"""The measured point everything is scaled from: yolov5l.yaml 640 on one H200 (DESIGN.md)."""
HOST_MS_PER_STEP = 68.0
"""yolov5l's step at AMP batch 16 on the H200 (16 / 235.5 images/s): host-bound, so it is what
Python's dispatch of the step costs there; scaled by the model's convolutions."""
COMPUTE_SHARE = 0.5
"""Share of the reference GPU time that scales with tensor throughput (the rest: bandwidth)."""
WORKER_IMAGES_PER_S = 78.0
"""One dataloader worker decodes, mosaics and augments about 78 images/s at 640 (DESIGN.md)."""
INPUT_SCALE_MAX = 4.0
"""Smaller images decode faster, with pixels, up to 4x (fixed per-image costs; not measured)."""
MULTI_GPU_EFFICIENCY = 0.9
"""Share of N x one GPU's images/s that DDP keeps: its gradient all-reduce overlaps backward
(the usual figure for convnets on NVLink nodes; not measured here)."""


@dataclass(frozen=True)
class Throughput:
    """Images/s of a whole job and what limits it."""

    images_per_s: float | None
    """None: no figure (a GPU not in the table, or a precision it cannot run)."""
    bound: str
    """gpu | host | input | unknown."""
    note: str


def input_images_per_s(workers: int, imgsz: int) -> float:
    """What the dataloader of one GPU can feed: workers x 78 images/s at 640, by pixels."""
    scale = min((640 / imgsz) ** 2, INPUT_SCALE_MAX)
    return max(workers, 1) * WORKER_IMAGES_PER_S * scale


def estimate_images_per_s(gpu: GpuSpec | None, work: ModelWork, *, imgsz: int,
                          batch_per_gpu: int, precision: str, world_size: int = 1,
                          workers: int = 8) -> Throughput:
    """Estimated training images/s of the job (all GPUs), by the model in this module's doc."""
    if gpu is None:
        return Throughput(None, "unknown", "no spec figures for this GPU")
    if precision == "bf16" and not gpu.bf16:
        return Throughput(None, "unknown", f"{gpu.name} has no native bf16")
    ref = gpu_spec(REFERENCE["gpu"])
    if precision == "fp32":
        rate, ref_rate = gpu.tf32_tflops or gpu.fp32_tflops, ref.tf32_tflops
    else:
        rate, ref_rate = gpu.fp16_tflops, ref.fp16_tflops
    pixels = (imgsz / REFERENCE["imgsz"]) ** 2
    memory = work.activation_mib_640 / REFERENCE["activation_mib_640"][precision] * pixels
    # no FLOPs count (ultralytics-thop absent): the compute part follows the activations
    flops = work.gflops_640 / REFERENCE["gflops_640"] * pixels if work.gflops_640 else memory
    gpu_ms = REFERENCE["gpu_ms_per_image"][precision] * (
        COMPUTE_SHARE * flops * ref_rate / rate
        + (1 - COMPUTE_SHARE) * memory * ref.bandwidth_gbs / gpu.bandwidth_gbs)
    host_ms = HOST_MS_PER_STEP * work.conv_layers / REFERENCE["conv_layers"]
    step_ms = max(host_ms, batch_per_gpu * gpu_ms)
    per_gpu = batch_per_gpu * 1000 / step_ms
    feed = input_images_per_s(workers, imgsz)
    bound = "input" if feed < per_gpu else ("gpu" if batch_per_gpu * gpu_ms >= host_ms else "host")
    per_gpu = min(per_gpu, feed)
    scaling = MULTI_GPU_EFFICIENCY if world_size > 1 else 1.0
    total = per_gpu * world_size * scaling
    note = (f"{gpu.name} spec scaled from the H200's measured {REFERENCE['model']}; "
            f"{bound}-bound ({workers} workers/GPU feed {feed:.0f} images/s)")
    return Throughput(round(total, 1), bound, note)
