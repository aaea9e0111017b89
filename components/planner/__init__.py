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
   the optimizer state and step temporaries, DDP gradient buckets, the caching allocator's
   slack (reserved / allocated, per precision; cuBLAS/cuDNN workspaces are inside it), NCCL
   buffers and the CUDA context.
4. Plan: the pool and, for ``batch: 0``, the batch (plan.py: the largest of 64/32/16/... in
   total that fits, keeping ultralytics' nominal batch of 64).
5. Cost and time (objective.py): per pool, images/s from the throughput history of finished
   runs (history.py) or the H200 reference scaled by the GPU's spec sheet (throughput.py),
   epoch and run time, cost from the catalog's price per GPU-hour; the objective (smallest,
   cost, time) and the deadline pick the pool.

The constants of step 3 are calibrated against the real trainer on an H200 (the measured
figures are in estimate.py's docstring); benchmarks/gpu_memory.py measures them on a GPU.
"""

from kfp_yolo.components.k8s.pools import node_affinity
from kfp_yolo.components.planner.estimate import (
    CUDA_CONTEXT_MIB,
    FRAGMENTATION,
    HEADROOM,
    NCCL_MIB,
    MemoryEstimate,
    estimate_peak,
    fit_batch,
    min_gpu_memory_mib,
    resolve_model,
)
from kfp_yolo.components.planner.objective import OBJECTIVES, PoolRow
from kfp_yolo.components.planner.plan import (
    MIN_BATCHES_PER_EPOCH,
    NOMINAL_BATCH,
    Plan,
    auto_batch,
    batch_limit,
    choose_pool,
    plan,
)
from kfp_yolo.components.planner.probe import BOXES_PER_IMAGE
from kfp_yolo.components.spec import OPTIMIZERS, PRECISIONS

__all__ = ["BOXES_PER_IMAGE", "CUDA_CONTEXT_MIB", "FRAGMENTATION", "HEADROOM", "NCCL_MIB",
           "MIN_BATCHES_PER_EPOCH", "NOMINAL_BATCH", "OBJECTIVES", "OPTIMIZERS", "PRECISIONS",
           "MemoryEstimate", "Plan", "PoolRow", "auto_batch", "batch_limit", "choose_pool",
           "estimate_peak", "fit_batch", "min_gpu_memory_mib", "node_affinity", "plan",
           "resolve_model"]
