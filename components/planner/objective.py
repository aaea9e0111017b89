"""Per-pool rows (batch, fit, images/s, epoch and run time, cost) and the pool an objective picks.

Objectives (the config's `objective`):
- smallest: the pool with the least GPU memory that runs the largest batch (memory only);
- cost: the lowest cost per epoch among the pools that fit and finish within `deadline_h`;
- time: the shortest epoch among the pools that fit (and finish within `deadline_h`).

A row's images/s is `measured` (the nearest point of the throughput history on that GPU type,
scaled to the planned shape by the throughput model), `estimated` (the model alone) or
`unknown` (a GPU without spec figures and without measurements): cost and time rank unknown
rows last and say so. Cost is the pool's hourly_price per GPU-hour x the GPUs the job holds;
pools without a price rank after the priced ones (and say so), and a catalog without prices
ranks cost by GPU-hours instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.pools import Pool
from kfp_yolo.components.planner.history import nearest
from kfp_yolo.components.planner.throughput import (
    ModelWork,
    estimate_images_per_s,
    gpu_spec,
)
from kfp_yolo.components.reports.plan import money

__all__ = ["OBJECTIVES", "PoolRow", "choose", "pool_row"]

OBJECTIVES = ("smallest", "cost", "time")
DEFAULT_WORKERS = 8
"""Dataloader workers per GPU assumed when neither `workers` nor the pool's cpus_per_node says
(the H200 measurements ran 8)."""


@dataclass(frozen=True)
class PoolRow:
    """One pool of the catalog for this run."""

    name: str
    gpu_product: str
    fits: bool
    """The job's shape and its batch fit this pool (GPU memory, GPUs per node, nodes)."""
    batch: int
    """Global batch the run would take here (0: not one image fits)."""
    batch_per_gpu: int
    peak_mib: int
    """Predicted peak per GPU at that batch (0 when nothing fits)."""
    world_size: int
    workers: int
    """Dataloader workers per GPU assumed for the input pipeline."""
    images_per_s: float | None
    images_per_s_source: str
    """measured | estimated | unknown; '-' when the job does not fit the pool."""
    images_per_s_note: str
    epoch_s: float | None
    run_s: float | None
    price_per_gpu_hour: float | None
    cost_per_epoch: float | None
    cost_per_run: float | None
    why: str = ""
    """Why the row cannot be chosen or ranks last ('' when it can)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _workers(pool: Pool, workers: int) -> int:
    if workers:
        return workers
    if pool.cpus_per_node:
        # each GPU's fair share of the node, one CPU kept for its training loop, at most 16 as
        # training/inputs.py caps it (the worker takes what its pod sees; other jobs may share
        # the node, so the planner does not count on more)
        return max(1, min(16, pool.cpus_per_node // pool.gpus_per_node - 1))
    return DEFAULT_WORKERS


def pool_row(pool: Pool, *, fits: bool, why: str, batch_per_gpu: int, world_size: int,
             peak_mib: int, work: ModelWork | None, model: str, imgsz: int, precision: str,
             workers: int, train_images: int | None, epochs: int | None,
             history: list[dict[str, Any]]) -> PoolRow:
    """The row of one pool: its throughput (measured, estimated or unknown), time and cost."""
    workers = _workers(pool, workers)
    spec = gpu_spec(pool.gpu_product)
    shape = dict(imgsz=imgsz, batch_per_gpu=max(batch_per_gpu, 1), precision=precision,
                 world_size=world_size, workers=workers)
    speed, source, note = None, "unknown", "no spec figures and no measured run for this GPU"
    if work is not None:
        estimate = estimate_images_per_s(spec, work, **shape)
        point = nearest(history, gpu_product=pool.gpu_product, model=model, **shape)
        if point is not None:
            # the measured point, moved to this shape by the model's own ratio (1 when equal);
            # a GPU without figures scales by the reference GPU's
            basis = spec or gpu_spec("H200")
            at_point = estimate_images_per_s(basis, work, **{k: point[k] for k in shape})
            here = estimate_images_per_s(basis, work, **shape)
            ratio = (here.images_per_s / at_point.images_per_s
                     if here.images_per_s and at_point.images_per_s else 1.0)
            speed, source = round(point["images_per_s"] * ratio, 1), "measured"
            runs = point.get("records", 1)
            when = point.get("recorded_at", "undated")
            when = f"median of {runs} runs, newest {when}" if runs > 1 else when
            note = (f"measured {point['images_per_s']} images/s at batch {point['batch_per_gpu']}"
                    f"/GPU x {point['world_size']}, {point['workers']} workers, imgsz "
                    f"{point['imgsz']} ({when}); x{ratio:.2f} to this shape")
        elif estimate.images_per_s is not None:
            speed, source, note = estimate.images_per_s, "estimated", estimate.note
        else:
            note = estimate.note + "; no measured run"
    if not fits:  # nothing runs there: no speed, time or cost
        speed, source, note = None, "-", why
    epoch_s = train_images / speed if speed and train_images else None
    run_s = epoch_s * epochs if epoch_s is not None and epochs else None
    price = pool.hourly_price
    cost_epoch = price * world_size * epoch_s / 3600 if price is not None and epoch_s else None
    cost_run = cost_epoch * epochs if cost_epoch is not None and epochs else None
    if fits and speed is None:
        why = "images/s unknown: ranked last by cost and time"
    return PoolRow(name=pool.name, gpu_product=pool.gpu_product, fits=fits,
                   batch=batch_per_gpu * world_size if fits else 0,
                   batch_per_gpu=batch_per_gpu if fits else 0, peak_mib=peak_mib if fits else 0,
                   world_size=world_size, workers=workers, images_per_s=speed,
                   images_per_s_source=source, images_per_s_note=note, epoch_s=epoch_s,
                   run_s=run_s, price_per_gpu_hour=price, cost_per_epoch=cost_epoch,
                   cost_per_run=cost_run, why=why)


def choose(rows: list[PoolRow], pools: list[Pool], objective: str, *, deadline_h: float = 0.0,
           epochs: int | None = None,
           train_images: int | None = None) -> tuple[PoolRow, str] | None:
    """The row the objective picks (cost or time) and the one-line reason.

    None when no pool that fits has an images/s figure (the caller falls back to smallest).
    Raises UserError when none of those with a figure finishes within the deadline.
    """
    if objective not in OBJECTIVES[1:]:
        raise UserError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}.")
    memory = {p.name: p.gpu_memory_mib for p in pools}
    fitting = [r for r in rows if r.fits]
    known = [r for r in fitting if r.images_per_s]
    if deadline_h and known:
        if not (train_images and epochs):
            raise UserError("deadline_h needs the dataset's size and the epochs to time a run; "
                            "give --train-images N (the DAG passes it) or set deadline_h 0.")
        in_time = [r for r in known if r.run_s <= deadline_h * 3600]
        if not in_time:
            fastest = min(known, key=lambda r: r.run_s)
            raise UserError(f"no pool finishes {epochs} epochs of {train_images} images within "
                            f"deadline_h={deadline_h:g}: the fastest, {fastest.name}, takes about "
                            f"{fastest.run_s / 3600:.1f} h; raise deadline_h, lower epochs or "
                            "train on more GPUs.")
        known = in_time
    if not known:
        return None
    per_image = {r.name: r.world_size / r.images_per_s for r in known}  # GPU-seconds per image
    if objective == "time":
        best = min(known, key=lambda r: (1 / r.images_per_s, r.price_per_gpu_hour or 0,
                                          memory[r.name]))
        reason = f"the shortest epoch ({_speed(best)})"
    else:
        priced = [r for r in known if r.price_per_gpu_hour is not None]
        if priced:
            best = min(priced, key=lambda r: (r.price_per_gpu_hour * per_image[r.name],
                                              1 / r.images_per_s, memory[r.name]))
            reason = f"the lowest cost per epoch ({_speed(best)})"
        else:
            best = min(known, key=lambda r: (per_image[r.name], memory[r.name]))
            none = ("the catalog has no prices" if all(p.hourly_price is None for p in pools)
                    else "no pool that can take it has a price")
            reason = f"the fewest GPU-hours per epoch: {none} ({_speed(best)})"
    unknown = [r.name for r in fitting if not r.images_per_s]
    tail = f"; {', '.join(unknown)}: images/s unknown, ranked last" if unknown else ""
    unpriced = [r.name for r in known if r.price_per_gpu_hour is None]
    if objective == "cost" and unpriced and len(unpriced) < len(known):
        # a pool without hourly_price has no cost to compare: it is never the cost choice
        tail += f"; {', '.join(unpriced)}: no hourly_price, ranked after the priced pools"
    within = f" within deadline_h={deadline_h:g}" if deadline_h else ""
    return best, f"objective {objective}: {best.name} has {reason}{within}{tail}"


def _speed(row: PoolRow) -> str:
    cost = f", ${money(row.cost_per_epoch)} per epoch" if row.cost_per_epoch is not None else ""
    return f"{row.images_per_s:.0f} images/s {row.images_per_s_source}{cost}"
