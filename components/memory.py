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

import hashlib
import json
import math
import os
import weakref
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from components.errors import UserError
from components.pools import GPU_MEMORY_LABEL, Pool

__all__ = [
    "HEADROOM",
    "MemoryEstimate",
    "OPTIMIZERS",
    "PRECISIONS",
    "Plan",
    "choose_pool",
    "estimate_peak",
    "fit_batch",
    "min_gpu_memory_mib",
    "node_affinity",
    "plan",
    "plan_resources_component",
    "resolve_model",
]

PRECISIONS = ("amp", "fp32", "bf16")
OPTIMIZERS = ("SGD", "Adam", "AdamW", "auto")

HEADROOM = 0.9
"""Share of a GPU's memory a plan may fill; the rest absorbs prediction error."""
CUDA_CONTEXT_MIB = 512
"""CUDA context and kernels (0.3-0.7 GB); invisible to torch.cuda.memory_* but not to NVML."""
WORKSPACE_MIB = 384
"""cuBLAS workspaces plus the largest cuDNN convolution workspace (0.3-0.6 GB)."""
FRAGMENTATION = 1.15
"""Reserved / allocated of the caching allocator for a CNN step (published 1.1-1.35)."""
NCCL_MIB = 256
"""NCCL channel buffers, allocated outside torch's allocator, when training on several GPUs."""
BOXES_PER_IMAGE = 100
"""Targets per image in the probe: a dense mosaic; the loss pads every image to the batch max."""
DEFAULT_BATCH_PER_GPU = 16
"""ultralytics' default batch; `plan(batch=0)` picks the smallest pool that fits it."""

_PROBE_VERSION = 1  # bump when the probe changes what it counts: invalidates disk caches
_BLOCK = 512  # CUDA caching allocator rounds every block up to 512 bytes
_MIB = 2**20
_OPTIMIZER_NAMES = {name.lower(): name for name in OPTIMIZERS}


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak memory of one training GPU."""

    peak_mib: int
    """Peak GPU memory as NVML would report it (CUDA context included), MiB."""
    breakdown_mib: dict[str, int] = field(default_factory=dict)
    """Parts of the peak, MiB; they add up to peak_mib."""


@dataclass(frozen=True)
class Plan:
    """Resources of one training run: batch, memory need, node pool and affinity."""

    batch: int
    """Global batch (all GPUs)."""
    batch_per_gpu: int
    """Batch on each GPU."""
    world_size: int
    """Number of GPUs."""
    peak_mib: int
    """Predicted peak per GPU, MiB."""
    min_gpu_memory_mib: int
    """GPU memory the plan requests: peak / headroom, MiB."""
    breakdown_mib: dict[str, int]
    """Parts of peak_mib."""
    pool: Pool
    """The chosen node pool."""
    max_batch: dict[str, int]
    """Largest batch per GPU that fits each pool of the catalog (0 = none)."""
    affinity: list[dict]
    """Node affinity match expressions every GPU task of the run requests."""

    def to_dict(self) -> dict:
        """JSON-ready form (pool by name)."""
        return {
            "batch": self.batch,
            "batch_per_gpu": self.batch_per_gpu,
            "world_size": self.world_size,
            "peak_mib": self.peak_mib,
            "min_gpu_memory_mib": self.min_gpu_memory_mib,
            "breakdown_mib": dict(self.breakdown_mib),
            "pool": self.pool.name,
            "pool_gpu_memory_mib": self.pool.gpu_memory_mib,
            "max_batch": dict(self.max_batch),
            "affinity": [dict(e) for e in self.affinity],
        }


# ---------------------------------------------------------------- inputs


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
    name = _OPTIMIZER_NAMES.get(str(optimizer).lower())
    if name is None:
        raise UserError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}.")
    if not isinstance(nc, int) or nc < 1:
        raise UserError(f"nc (number of classes) must be a positive integer, got {nc!r}.")
    return name


# ---------------------------------------------------------------- the probe


@dataclass(frozen=True)
class _Probe:
    """What one probe pair measured; everything else is arithmetic on it."""

    s0: int
    """Probe image size (twice the largest stride)."""
    stride: int
    """Largest stride: image sizes round up to a multiple of it, as ultralytics does."""
    param_bytes: int
    """Trainable parameters, fp32, each rounded to the allocator block."""
    buffer_bytes: int
    """Buffers (BN running statistics), rounded."""
    hull: tuple[tuple[int, int, int], ...]
    """(F, A, casts) of the ops that can hold the peak: live bytes = F + x * A."""

    def step_peak(self, x: float) -> tuple[int, int]:
        """Peak live bytes of forward/loss/backward at scale x, and the weight casts within."""
        fixed, per_x, casts = max(self.hull, key=lambda p: p[0] + x * p[1])
        return int(fixed + x * per_x), casts


def _round(nbytes: int) -> int:
    return -(-nbytes // _BLOCK) * _BLOCK


class _LiveCounter:
    """TorchDispatchMode factory kept lazy so importing this module does not import torch."""

    @staticmethod
    def make(param_storages: set[int]):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        def storages(tree) -> list:
            return [t.untyped_storage() for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]

        class LiveBytes(TorchDispatchMode):
            """Live bytes of storages created inside the mode, recorded after every op."""

            def __init__(self) -> None:
                super().__init__()
                self.live: dict[int, tuple[object, int, bool]] = {}
                self.total = 0
                self.casts = 0
                self.curve: list[tuple[int, int]] = []

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                inputs = {id(s) for s in storages((args, kwargs))}
                out = func(*args, **kwargs)
                # autocast's fp16 copies of the weights: cached for the forward, saved for backward
                cast = func is torch.ops.aten._to_copy.default and bool(inputs & param_storages)
                for st in storages(out):
                    key = id(st)  # storages keep one Python object while alive, so id is stable
                    if key in inputs or key in self.live or st.nbytes() == 0:
                        continue  # views and in-place results allocate nothing
                    size = _round(st.nbytes())
                    ref = weakref.ref(st, lambda _, key=key: self._free(key))
                    self.live[key] = (ref, size, cast)
                    self.total += size
                    self.casts += size if cast else 0
                self.curve.append((self.total, self.casts))
                return out

            def _free(self, key: int) -> None:
                _, size, cast = self.live.pop(key)
                self.total -= size
                self.casts -= size if cast else 0

        return LiveBytes()


@lru_cache(maxsize=1)  # fp32 and amp probes of one model share it; the probe never steps it
def _build_model(model: str, nc: int):
    """The ultralytics DetectionModel of a YAML or a .pt's architecture, in train mode."""
    from components.runtime import offline_environment

    offline_environment()  # before ultralytics is imported: it reads its settings then
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)  # deterministic weights: the assigner's foreground count follows them
    cfg = model
    try:
        if model.lower().endswith(".pt"):
            ckpt = torch.load(model, map_location="cpu", weights_only=False)
            cfg = (ckpt.get("ema") or ckpt["model"]).yaml
        net = DetectionModel(cfg, nc=nc, verbose=False)
    except Exception as exc:  # a user's file: any failure to read or build it is bad input
        raise UserError(f"model {model!r} cannot be built ({type(exc).__name__}: {exc}); give an "
                        "ultralytics model YAML such as 'yolov5l.yaml' or a detection .pt "
                        "checkpoint.") from None
    net.args = get_cfg()  # the loss reads its box/cls/dfl gains from here
    net.train()
    net.criterion = net.init_criterion()  # outside the probe: its tensors persist across steps
    return net


def _run_step(net, batch: int, s: int, low_precision: bool, param_storages: set[int]) -> list:
    """One counted training step; returns the (live bytes, cast bytes) curve."""
    import torch

    gen = torch.Generator().manual_seed(0)
    n = batch * BOXES_PER_IMAGE
    images = torch.randint(0, 256, (batch, 3, s, s), dtype=torch.uint8, generator=gen)
    targets = {
        "batch_idx": torch.arange(batch).repeat_interleave(BOXES_PER_IMAGE).float(),
        "cls": torch.randint(0, net.model[-1].nc, (n, 1), generator=gen).float(),
        "bboxes": torch.rand(n, 4, generator=gen) * 0.5 + 0.25,
    }
    counter = _LiveCounter.make(param_storages)
    with counter:
        # bf16 on CPU stands for CUDA's fp16: same bytes, same cast ops for conv/BN/SiLU/cat
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low_precision):
            img = images.float() / 255  # ultralytics' preprocess_batch, inside autocast
            loss, _ = net.loss({"img": img, **targets})
            loss = loss.sum()
        del img
        loss.backward()
        del loss
    return counter.curve


def _hull(c1: list, c2: list) -> tuple[tuple[int, int, int], ...]:
    """Per-op (F, A, casts) from the batch-1 and batch-2 curves, pruned to the upper hull."""
    if len(c1) == len(c2):
        points = {(2 * a - b, b - a, ca) for (a, ca), (b, _) in zip(c1, c2, strict=True)}
    else:  # the loss took a data-dependent branch: fall back to the two peaks
        (p1, k1), (p2, _) = max(c1), max(c2)
        points = {(2 * p1 - p2, p2 - p1, k1)}
    # only points on the upper convex hull of (A, F) can be the maximum for some x >= 0
    hull: list[tuple[int, int, int]] = []
    for p in sorted(points, key=lambda p: (p[1], p[0])):
        while len(hull) >= 2:
            (f1, a1, _), (f2, a2, _) = hull[-2], hull[-1]
            if (a2 - a1) * (p[0] - f1) - (f2 - f1) * (p[1] - a1) >= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    return tuple(hull)


@lru_cache(maxsize=32)
def _probe(model: str, nc: int, low_precision: bool, cache_dir: str | None) -> _Probe:
    """Measures (or reads from the disk cache) the probe pair of a model."""
    path = Path(cache_dir) / f"{_cache_key(model, nc, low_precision)}.json" if cache_dir else None
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            return _Probe(**{**data, "hull": tuple(tuple(p) for p in data["hull"])})
        except (ValueError, TypeError, KeyError):
            pass  # a damaged cache entry is measured again and overwritten
    import torch

    threads = torch.get_num_threads()
    # one thread: small ops run several times faster on a shared machine than with OpenMP
    # workers spinning for busy cores, and the float results (hence the assigner) are stable
    torch.set_num_threads(1)
    try:
        net = _build_model(model, nc)
        stride = max(int(net.stride.max()), 32)
        s0 = 2 * stride
        params = [p for p in net.parameters() if p.requires_grad]
        for p in params:  # gradients exist before the step (accumulation): backward adds to them
            p.grad = torch.zeros_like(p)
        param_storages = {id(p.untyped_storage()) for p in params}
        c1 = _run_step(net, 1, s0, low_precision, param_storages)
        c2 = _run_step(net, 2, s0, low_precision, param_storages)
    finally:
        torch.set_num_threads(threads)
    probe = _Probe(
        s0=s0,
        stride=stride,
        param_bytes=sum(_round(p.nbytes) for p in params),
        buffer_bytes=sum(_round(b.nbytes) for b in net.buffers()),
        hull=_hull(c1, c2),
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({**probe.__dict__, "hull": [list(p) for p in probe.hull]}))
        partial.replace(path)  # atomic: concurrent planners never read half a file
    return probe


def _cache_key(model: str, nc: int, low_precision: bool) -> str:
    """Disk cache key: the probe's inputs, the model file's content and the library versions."""
    parts = [str(_PROBE_VERSION), metadata.version("torch"), metadata.version("ultralytics"),
             model, str(nc), "2byte" if low_precision else "fp32", str(BOXES_PER_IMAGE)]
    local = Path(model)
    if local.is_file():  # a user's YAML or .pt: the same name may hold another architecture
        parts.append(hashlib.sha256(local.read_bytes()).hexdigest())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


# ---------------------------------------------------------------- the estimate


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
        step is the peak), allocator_overhead, workspaces, nccl and cuda_context.
    """
    optimizer = _check(imgsz, batch, precision, optimizer, nc)
    if not isinstance(world_size, int) or world_size < 1:
        raise UserError(f"world_size must be a positive integer, got {world_size!r}.")
    probe = _probe(resolve_model(model), nc, precision != "fp32",
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
    parts["allocator_overhead"] = int(tensors * (FRAGMENTATION - 1))
    parts["workspaces"] = WORKSPACE_MIB * _MIB
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


# ---------------------------------------------------------------- pools and affinity


def choose_pool(need_mib: int, pools: list[Pool]) -> Pool:
    """The pool with the least GPU memory that still holds ``need_mib`` per GPU."""
    if not pools:
        raise UserError("the node-pool catalog is empty; add a pool to k8s/node-pools.yaml.")
    for pool in sorted(pools, key=lambda p: p.gpu_memory_mib):
        if pool.gpu_memory_mib >= need_mib:
            return pool
    largest = max(pools, key=lambda p: p.gpu_memory_mib)
    raise UserError(
        f"the run needs {need_mib} MiB per GPU but the largest node pool, {largest.name!r}, has "
        f"{largest.gpu_memory_mib} MiB; lower the batch per GPU, use precision 'amp', or add a "
        "larger pool to k8s/node-pools.yaml.")


def node_affinity(need_mib: int) -> list[dict]:
    """Required node-affinity match expressions: GPU memory label strictly above need - 1 MiB."""
    if not isinstance(need_mib, int) or need_mib < 1:
        raise UserError(f"GPU memory need must be a positive integer of MiB, got {need_mib!r}.")
    # GFD labels are integers and Gt is strict: Gt (need - 1) means at least `need` MiB
    return [{"key": GPU_MEMORY_LABEL, "operator": "Gt", "values": [str(need_mib - 1)]}]


def plan(model: str, *, imgsz: int, batch: int, world_size: int = 1, precision: str = "amp",
         optimizer: str = "SGD", nc: int = 80, pools: list[Pool] | None = None,
         headroom: float = HEADROOM, cache_dir: str | Path | None = None,
         procs_per_node: int | None = None) -> Plan:
    """Plans a run: the batch, its memory need, the node pool and the affinity to request.

    A given global ``batch`` (a multiple of ``world_size``) chooses the smallest pool that holds
    it. ``batch=0`` means the largest batch that fits the chosen pool, which is the smallest pool
    that fits ``DEFAULT_BATCH_PER_GPU`` per GPU, or else the largest pool (with a smaller batch).
    Only pools with at least ``world_size`` GPUs in all are considered; with
    ``procs_per_node`` (GPUs per pod), only pools whose nodes have that many GPUs and that
    scale to world_size / procs_per_node nodes.
    """
    if pools is None:
        from components.pools import load_pools

        pools = load_pools()
    if not isinstance(world_size, int) or world_size < 1:
        raise UserError(f"world_size must be a positive integer, got {world_size!r}.")
    if not isinstance(batch, int) or batch < 0:
        raise UserError(f"batch must be 0 (the largest that fits) or a positive integer, "
                        f"got {batch!r}.")
    if batch % world_size:
        raise UserError(f"batch {batch} does not split over {world_size} GPUs; use a multiple of "
                        f"{world_size} such as {max(1, batch // world_size) * world_size}.")
    big_enough = [p for p in pools if p.gpus_per_node * p.max_nodes >= world_size]
    if pools and not big_enough:
        raise UserError(f"no node pool has {world_size} GPUs in all (GPUs per node x max nodes); "
                        "lower the number of GPUs or raise max_nodes in k8s/node-pools.yaml.")
    if procs_per_node:
        nodes = -(-world_size // procs_per_node)
        big_enough = [p for p in big_enough
                      if p.gpus_per_node >= procs_per_node and p.max_nodes >= nodes]
        if pools and not big_enough:
            raise UserError(f"no node pool has {nodes} node(s) with {procs_per_node} GPUs each; "
                            "lower procs_per_node or nodes, or add such a pool to "
                            "k8s/node-pools.yaml.")
    common = dict(imgsz=imgsz, precision=precision, optimizer=optimizer, nc=nc,
                  world_size=world_size, cache_dir=cache_dir)
    max_batch = {p.name: fit_batch(model, gpu_memory_mib=p.gpu_memory_mib, headroom=headroom,
                                   **common) for p in pools}
    if batch:
        per_gpu = batch // world_size
    else:
        ranked = sorted(big_enough, key=lambda p: p.gpu_memory_mib)
        pool = next((p for p in ranked if max_batch[p.name] >= DEFAULT_BATCH_PER_GPU), None)
        pool = pool or (ranked[-1] if ranked else None)
        per_gpu = max_batch[pool.name] if pool else 0
        if per_gpu == 0:  # not even one image: choose_pool below says which pool and what to do
            per_gpu = 1
    estimate = estimate_peak(model, batch=per_gpu, **common)
    need = min_gpu_memory_mib(estimate.peak_mib, headroom)
    pool = choose_pool(need, big_enough)
    return Plan(batch=per_gpu * world_size, batch_per_gpu=per_gpu, world_size=world_size,
                peak_mib=estimate.peak_mib, min_gpu_memory_mib=need,
                breakdown_mib=estimate.breakdown_mib, pool=pool, max_batch=max_batch,
                affinity=node_affinity(need))


# ---------------------------------------------------------------- KFP step


def plan_resources_component(
    model: str, imgsz: int, batch: int, nodes: int, procs_per_node: int, precision: str,
    optimizer: str, nc: int,
) -> NamedTuple("PlanOutputs", [("batch", int), ("peak_mib", int), ("pool", str),
                                ("min_gpu_memory_mib", int)]):
    """KFP step: plan the run from the image's node-pool catalog (batch 0 = largest that fits).

    Returns:
        batch (global), peak_mib (per GPU), pool (name) and min_gpu_memory_mib, the GPU memory
        the train step requests through node affinity.
    """
    # KFP copies this function's source alone into the component: imports live here
    from typing import NamedTuple

    from components.memory import plan
    from components.pools import load_pools

    result = plan(model, imgsz=imgsz, batch=batch, world_size=nodes * procs_per_node,
                  precision=precision, optimizer=optimizer, nc=nc, pools=load_pools(),
                  procs_per_node=procs_per_node)
    print(f"plan: {result.peak_mib} MiB per GPU at batch {result.batch_per_gpu} per GPU "
          f"(global {result.batch}) -> pool {result.pool.name}")

    class PlanOutputs(NamedTuple):
        batch: int
        peak_mib: int
        pool: str
        min_gpu_memory_mib: int

    return PlanOutputs(result.batch, result.peak_mib, result.pool.name, result.min_gpu_memory_mib)
