"""The plan: the batch, the memory a GPU needs, the node pool and the affinity to request."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.pools import Pool, node_affinity
from kfp_yolo.components.planner.estimate import (
    HEADROOM,
    estimate_peak,
    fit_batch,
    min_gpu_memory_mib,
    resolve_model,
)
from kfp_yolo.components.planner.objective import OBJECTIVES, PoolRow, choose, pool_row
from kfp_yolo.components.planner.throughput import gpu_spec
from kfp_yolo.components.spec import check_batch_shape

__all__ = ["MIN_BATCHES_PER_EPOCH", "NOMINAL_BATCH", "Plan", "accumulate", "auto_batch",
           "batch_limit", "choose_pool", "plan"]

NOMINAL_BATCH = 64
"""ultralytics' nominal batch (``nbs``): it sums gradients over batches until about 64 images."""
MIN_BATCHES_PER_EPOCH = 16
"""Auto keeps an epoch at about this many batches or more (see `batch_limit`). The
optimisation is the same at 16 and 64 only per image: BatchNorm's running statistics move
once per batch (momentum 0.03) and the warmup is counted in batches, so on a small dataset a
large batch leaves them behind (shapes, 20 epochs, mAP50-95 at batch 16 vs 64: 0.64 vs 0.06
on 205 training images, 4 batches of 64 per epoch; 0.81 vs 0.79 on 512, 8 per epoch)."""


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
    auto_batch: dict[str, int]
    """Global batch ``batch: 0`` takes on each pool of the catalog (0 = not one image fits)."""
    batch_rule: str
    """How the batch was chosen and why, one line (starts with ``auto:`` or ``given:``)."""
    objective: str = "smallest"
    """smallest | cost | time: what chose the pool."""
    pool_rule: str = ""
    """Why this pool, one line (starts with ``objective``)."""
    pools: tuple[PoolRow, ...] = ()
    """Every pool of the catalog for this run: batch, fit, images/s, time and cost."""
    epochs: int | None = None
    train_images: int | None = None

    @property
    def accumulate(self) -> int:
        """Batches ultralytics accumulates before each optimizer step at this global batch."""
        return accumulate(self.batch)

    @property
    def effective_batch(self) -> int:
        """Images per optimizer step: batch x accumulate (64 when the nominal batch is kept)."""
        return self.batch * self.accumulate

    def to_dict(self) -> dict:
        """JSON-ready form (pool by name)."""
        return {
            "batch": self.batch,
            "batch_per_gpu": self.batch_per_gpu,
            "world_size": self.world_size,
            "accumulate": self.accumulate,
            "effective_batch": self.effective_batch,
            "batch_rule": self.batch_rule,
            "peak_mib": self.peak_mib,
            "min_gpu_memory_mib": self.min_gpu_memory_mib,
            "breakdown_mib": dict(self.breakdown_mib),
            "pool": self.pool.name,
            "pool_gpu_memory_mib": self.pool.gpu_memory_mib,
            "max_batch": dict(self.max_batch),
            "auto_batch": dict(self.auto_batch),
            "affinity": [dict(e) for e in self.affinity],
            "objective": self.objective,
            "pool_rule": self.pool_rule,
            "epochs": self.epochs,
            "train_images": self.train_images,
            "pools": [row.to_dict() for row in self.pools],
        }


def accumulate(batch: int) -> int:
    """Batches ultralytics accumulates per optimizer step at a global batch.

    ``max(round(nbs / batch), 1)`` as in ultralytics' BaseTrainer._setup_train, on the global
    batch: a total that divides 64 keeps 64 images per optimizer step exactly.
    """
    return max(round(NOMINAL_BATCH / batch), 1)


def auto_batch(max_per_gpu: int, world_size: int, limit: int = NOMINAL_BATCH) -> int:
    """The global batch ``batch: 0`` takes on GPUs that hold ``max_per_gpu`` images each.

    The largest total of at most ``limit`` (64, or less for a small dataset: see `batch_limit`)
    that splits evenly over ``world_size`` and fits: one of 64, 32, 16, ... (each keeps
    ultralytics' effective batch at 64) when ``world_size`` divides 64; otherwise (3, 6, 12
    GPUs: none of those splits evenly) the largest multiple of ``world_size`` up to the limit.
    At least one image per GPU; 0 when not one image per GPU fits.
    """
    per_gpu = min(max(limit // world_size, 1), max_per_gpu)
    if per_gpu < 1:
        return 0
    if NOMINAL_BATCH % world_size == 0:
        per_gpu = 1 << (per_gpu.bit_length() - 1)  # the largest power of two <= per_gpu
    return per_gpu * world_size


def batch_limit(train_images: int | None) -> int:
    """The largest total auto may take: 64, or for a small dataset the power of two nearest to
    train_images / MIN_BATCHES_PER_EPOCH (log scale: 205 images -> 16, 512 -> 32)."""
    if not train_images:
        return NOMINAL_BATCH
    share = max(train_images / MIN_BATCHES_PER_EPOCH, 1.0)
    return min(NOMINAL_BATCH, 2 ** round(math.log2(share)))


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
         procs_per_node: int | None = None, train_images: int | None = None,
         objective: str = "smallest", epochs: int | None = None, deadline_h: float = 0.0,
         history: list[dict] | None = None, workers: int = 0) -> Plan:
    """Plans a run: the batch, its memory need, the node pool and the affinity to request.

    A given global ``batch`` (a multiple of ``world_size``) is kept as given, and the smallest
    pool that holds it is chosen. ``batch=0`` (auto) keeps ultralytics' nominal batch: on each
    pool it takes the largest of 64, 32, 16, ... in total that splits evenly over the GPUs and
    fits (`auto_batch`), never more than 64 in total (above 64 ultralytics no longer
    accumulates and its effective batch grows past the nominal: another optimisation). The
    pool is the smallest on which the largest of those totals fits: the smallest pool that runs
    a full 64 when any pool does, else the smallest that runs 32, and so on. Only pools with at
    least ``world_size`` GPUs in all are considered; with ``procs_per_node`` (GPUs per pod),
    only pools whose nodes have that many GPUs and that scale to world_size / procs_per_node
    nodes. With ``train_images`` (the prepared dataset's training split), auto also keeps at
    least MIN_BATCHES_PER_EPOCH batches per epoch.

    That is ``objective`` smallest. ``cost`` takes the pool with the lowest cost per epoch,
    ``time`` the one with the shortest epoch, among those that fit the batch (auto: each
    pool's own auto batch) and finish ``epochs`` within ``deadline_h`` (0 = no deadline);
    images/s come from ``history`` (throughput records, history.py) or the throughput model,
    with ``workers`` dataloader workers per GPU (0 = from the pool's cpus_per_node). Every
    pool's row is in `Plan.pools` whatever the objective.
    """
    model = resolve_model(model)  # history records name the model's file: yolov5l.yaml
    if objective not in OBJECTIVES:
        raise UserError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}.")
    if isinstance(deadline_h, bool) or not isinstance(deadline_h, int | float) \
            or not math.isfinite(deadline_h) or deadline_h < 0:
        raise UserError(f"deadline_h must be a number of hours, 0 for none, got {deadline_h!r}.")
    if pools is None:
        from kfp_yolo.components.k8s.pools import load_pools

        pools = load_pools()
    if not isinstance(world_size, int) or world_size < 1:
        raise UserError(f"world_size must be a positive integer, got {world_size!r}.")
    if not isinstance(batch, int) or batch < 0:
        raise UserError(f"batch must be 0 (auto: the largest of 64/32/16/... that fits) or a "
                        f"positive integer, got {batch!r}.")
    check_batch_shape(batch, world_size)
    if not batch and world_size > NOMINAL_BATCH:
        raise UserError(f"batch 0 keeps the global batch at most {NOMINAL_BATCH}, which does not "
                        f"split over {world_size} GPUs; give an explicit batch, a multiple of "
                        f"{world_size}.")
    big_enough = _pools_for_shape(pools, world_size, procs_per_node)
    common = dict(imgsz=imgsz, precision=precision, optimizer=optimizer, nc=nc,
                  world_size=world_size, cache_dir=cache_dir)
    max_batch = {p.name: fit_batch(model, gpu_memory_mib=p.gpu_memory_mib, headroom=headroom,
                                   **common) for p in pools}
    limit = batch_limit(train_images)
    auto = {name: auto_batch(fits, world_size, limit) for name, fits in max_batch.items()}
    rows = _rows(model, pools, big_enough, max_batch, auto, batch=batch, common=common,
                 train_images=train_images, epochs=epochs, history=history or [],
                 workers=workers)
    picked = None
    if objective != "smallest":
        picked = choose(rows, pools, objective, deadline_h=deadline_h, epochs=epochs,
                        train_images=train_images)
    chosen = next((p for p in pools if picked and p.name == picked[0].name), None)
    if batch:
        per_gpu = batch // world_size
        rule = (f"given: batch {batch} as configured (ultralytics accumulates {accumulate(batch)}"
                f" batch(es) per optimizer step: {batch * accumulate(batch)} images)")
    else:
        ranked = sorted(big_enough, key=lambda p: p.gpu_memory_mib)
        best = max((auto[p.name] for p in ranked), default=0)
        smallest = next((p for p in ranked if auto[p.name] == best), None)
        if chosen is not None:
            best, smallest = auto[chosen.name], chosen
        # not even one image fits: per_gpu 1, and choose_pool below says which pool and what to do
        per_gpu = max(best // world_size, 1)
        rule = _auto_rule(best, world_size, smallest,
                          lambda b: estimate_peak(model, batch=b, **common).peak_mib, headroom,
                          limit, train_images, holder=chosen.name if chosen else "")
    estimate = estimate_peak(model, batch=per_gpu, **common)
    need = min_gpu_memory_mib(estimate.peak_mib, headroom)
    pool = chosen or choose_pool(need, big_enough)
    if objective != "smallest" and picked is None:
        reason = (f"objective {objective}: no pool that fits has an images/s figure, so the "
                  f"smallest pool that fits, as objective smallest")
    else:
        # with batch 0 the pools run different batches: say which one the smallest pool holds
        total = per_gpu * world_size
        less = any(auto[p.name] < total for p in big_enough)
        what = (f"batch {batch}" if batch else f"the largest auto batch, {total}"
                + (" (smaller pools run less)" if less else ""))
        reason = picked[1] if picked else \
            f"objective smallest: the least GPU memory that fits {what}"
    if objective == "smallest" and deadline_h:
        reason += f"; deadline_h={deadline_h:g} is not checked (cost and time use it)"
    total = per_gpu * world_size
    return Plan(batch=total, batch_per_gpu=per_gpu, world_size=world_size,
                peak_mib=estimate.peak_mib, min_gpu_memory_mib=need,
                breakdown_mib=estimate.breakdown_mib, pool=pool, max_batch=max_batch,
                affinity=node_affinity(need), auto_batch=auto,
                batch_rule=rule, objective=objective, pool_rule=reason, pools=tuple(rows),
                epochs=epochs, train_images=train_images)


def _rows(model: str, pools: list[Pool], big_enough: list[Pool], max_batch: dict[str, int],
          auto: dict[str, int], *, batch: int, common: dict, train_images: int | None,
          epochs: int | None, history: list[dict], workers: int) -> list[PoolRow]:
    """One row per pool of the catalog: the batch it would take, fit, throughput, time, cost."""
    world_size = common["world_size"]
    work = None
    if history or any(gpu_spec(p.gpu_product) for p in pools):
        from kfp_yolo.components.planner.work import model_work

        work = model_work(model, nc=common["nc"], precision=common["precision"],
                          cache_dir=common["cache_dir"])
    rows = []
    for pool in pools:
        per_gpu = batch // world_size if batch else auto[pool.name] // world_size
        why = ""
        if pool not in big_enough:
            why = f"cannot host {world_size} GPU(s) in this job's shape"
        elif per_gpu < 1 or max_batch[pool.name] < per_gpu:
            why = f"batch {max(per_gpu, 1)}/GPU does not fit its {pool.gpu_memory_mib} MiB"
        fits = not why
        peak = estimate_peak(model, batch=per_gpu, **common).peak_mib if fits else 0
        rows.append(pool_row(pool, fits=fits, why=why, batch_per_gpu=per_gpu,
                             world_size=world_size, peak_mib=peak, work=work, model=model,
                             imgsz=common["imgsz"], precision=common["precision"],
                             workers=workers, train_images=train_images, epochs=epochs,
                             history=history))
    return rows


def _pools_for_shape(pools: list[Pool], world_size: int,
                     procs_per_node: int | None) -> list[Pool]:
    """The pools that can host world_size GPUs, procs_per_node on each node when given."""
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
    return big_enough


def _auto_rule(total: int, world_size: int, pool: Pool | None, peak_at: Callable[[int], int],
               headroom: float, limit: int = NOMINAL_BATCH,
               train_images: int | None = None, holder: str = "") -> str:
    """The one-line reason for an auto batch; says what the next larger candidate needs."""
    if not total or pool is None:
        return "auto: not one image per GPU fits any pool that can run the job"
    even = NOMINAL_BATCH % world_size == 0
    candidates = "64/32/16/..." if even else f"the multiples of {world_size} up to 64"
    rule = f"auto: largest of {candidates} that fits {pool.name} (nominal batch {NOMINAL_BATCH}"
    if not even:
        rule += f"; {world_size} GPUs split none of 64/32/16/... evenly"
    if limit < NOMINAL_BATCH and 2 * total > limit:
        rule += (f"; {train_images} training images: at most {limit} per batch keeps about "
                 f"{MIN_BATCHES_PER_EPOCH} batches per epoch or more for BatchNorm and the "
                 f"warmup; ultralytics accumulates {accumulate(total)} batches")
    elif total < NOMINAL_BATCH:
        larger = 2 * total if even else total + world_size
        need = min_gpu_memory_mib(peak_at(larger // world_size), headroom)
        holds = holder or "any pool for this job shape"
        rule += (f"; {larger} needs {need} MiB per GPU, more than {holds} holds; ultralytics "
                 f"accumulates {accumulate(total)} batches")
    return rule + ")"
