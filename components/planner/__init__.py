"""GPU memory planner: predict the peak memory of one training GPU on a CPU, pick the node pool.

How the prediction is made (no GPU needed):

1. Probe. The real ultralytics DetectionModel runs one real training step (uint8 -> float
   images, forward, the model's own v8 loss with its task-aligned assigner, backward into existing
   gradients) on CPU at a small image size ``s0`` (twice the largest stride), for batch 1 and 2,
   under autocast when the precision is amp/bf16 (both store 2-byte activations, as CUDA's fp16
   policy does for conv/BN/SiLU). A TorchDispatchMode counts every storage created during the step,
   rounded as CUDA's caching allocator rounds (512 B), and records the live bytes after each op.
   Real tensors rather than FakeTensorMode because the loss is data dependent (``unique``,
   ``counts.max()`` size its target tensor), which fake and meta tensors cannot run.
2. Scale. Every tensor of the step is either fixed (weight casts, weight gradients) or
   proportional to x = batch * (imgsz / s0)**2 (activations, their gradients, the loss's
   per-anchor tensors), so from the two probes each op's live bytes are ``F + x * A`` and the peak
   for any batch and image size is ``max_op F + x * A``: exact for the counted tensors, and one
   probe pair serves every batch and image size (cached in memory and optionally on disk).
3. Add what tensors of the step do not show: the fp32 weights, their gradients, the EMA copy,
   the optimizer state and step temporaries, DDP gradient buckets, cuBLAS/cuDNN workspaces,
   the caching allocator's rounding and fragmentation, NCCL buffers and the CUDA context.

The constants of step 3 are the published ranges (DESIGN.md, "GPU memory"); benchmarks/
gpu_memory.py measures the real peak on a GPU to calibrate them.
"""

from kfp_yolo.components.planner.estimate import (
    CUDA_CONTEXT_MIB,
    FRAGMENTATION,
    HEADROOM,
    NCCL_MIB,
    WORKSPACE_MIB,
    MemoryEstimate,
    estimate_peak,
    fit_batch,
    min_gpu_memory_mib,
    resolve_model,
)
from kfp_yolo.components.planner.plan import DEFAULT_BATCH_PER_GPU, Plan, choose_pool, plan
from kfp_yolo.components.planner.probe import BOXES_PER_IMAGE
from kfp_yolo.components.pools import node_affinity
from kfp_yolo.components.spec import OPTIMIZERS, PRECISIONS

__all__ = ["BOXES_PER_IMAGE", "CUDA_CONTEXT_MIB", "DEFAULT_BATCH_PER_GPU", "FRAGMENTATION",
           "HEADROOM", "NCCL_MIB", "OPTIMIZERS", "PRECISIONS", "WORKSPACE_MIB", "MemoryEstimate",
           "Plan", "choose_pool", "estimate_peak", "fit_batch", "min_gpu_memory_mib",
           "node_affinity", "plan", "resolve_model"]
