"""The plan: the batch, the memory a GPU needs, the node pool and the affinity to request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.planner.estimate import (
    HEADROOM,
    estimate_peak,
    fit_batch,
    min_gpu_memory_mib,
)
from kfp_yolo.components.pools import Pool, node_affinity
from kfp_yolo.components.spec import check_batch_shape

__all__ = ["DEFAULT_BATCH_PER_GPU", "Plan", "choose_pool", "plan"]

DEFAULT_BATCH_PER_GPU = 16
"""ultralytics' default batch; `plan(batch=0)` picks the smallest pool that fits it."""


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
        from kfp_yolo.components.pools import load_pools

        pools = load_pools()
    if not isinstance(world_size, int) or world_size < 1:
        raise UserError(f"world_size must be a positive integer, got {world_size!r}.")
    if not isinstance(batch, int) or batch < 0:
        raise UserError(f"batch must be 0 (the largest that fits) or a positive integer, "
                        f"got {batch!r}.")
    check_batch_shape(batch, world_size)
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
