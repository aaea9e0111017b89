"""What a search costs, in what users pay: a trial's GPU-hours (and dollars) from the plan's
own figures, how many trials a budget fits, and the refusal of a search that cannot fit.

A trial's estimate is the chosen pool's epoch time (its images/s, measured or estimated by the
planner, over the training split) x hpo_epochs x hpo_fraction x the GPUs it holds. What a search
measured is its trials' wall time x the processes they ran (device-hours: on this machine a CPU
process counts as one device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kfp_yolo.components.errors import UserError

__all__ = ["TrialCost", "check_budget", "trial_cost", "trials_that_fit"]


@dataclass(frozen=True)
class TrialCost:
    """The estimated cost of one search trial on the plan's pool."""

    gpu_h: float | None
    """GPU-hours of one trial that runs every epoch (None: the pool's images/s is unknown)."""
    pool: str
    price_per_gpu_hour: float | None
    epochs: int

    @property
    def dollars(self) -> float | None:
        if self.gpu_h is None or self.price_per_gpu_hour is None:
            return None
        return self.gpu_h * self.price_per_gpu_hour

    def to_dict(self) -> dict[str, Any]:
        return {"gpu_h": self.gpu_h, "pool": self.pool, "dollars": self.dollars,
                "price_per_gpu_hour": self.price_per_gpu_hour, "epochs": self.epochs}


def trial_cost(plan: Any, *, epochs: int, fraction: float = 1.0) -> TrialCost:
    """One trial's cost from a planner.Plan made with the dataset's train_images."""
    row = next((r for r in plan.pools if r.name == plan.pool.name), None)
    seconds = row.epoch_s if row is not None else None
    gpu_h = (row.world_size * seconds * fraction * epochs / 3600
             if seconds is not None else None)
    return TrialCost(gpu_h=gpu_h, pool=plan.pool.name,
                     price_per_gpu_hour=plan.pool.hourly_price, epochs=epochs)


def trials_that_fit(budget_gpu_h: float, cost: TrialCost) -> int:
    """Whole trials the budget pays for (all when there is no budget or no estimate)."""
    if not budget_gpu_h or not cost.gpu_h:
        return 1 << 30
    return math.floor(budget_gpu_h / cost.gpu_h + 1e-9)


def check_budget(trials: int, budget_gpu_h: float, cost: TrialCost) -> None:
    """Refuses, before any GPU, a search of `trials` that the budget cannot pay for.

    Raises:
        UserError: the estimate says fewer trials fit (the sentence says how many), or the pool
            has no images/s figure to judge the budget with.
    """
    if not trials or not budget_gpu_h:
        return
    if cost.gpu_h is None:
        raise UserError(f"hpo_budget_gpu_h={budget_gpu_h:g} cannot be checked: pool {cost.pool} "
                        "has no images/s figure to time a trial; record a run on it (its "
                        "throughput history) or set hpo_budget_gpu_h=0.")
    fit = trials_that_fit(budget_gpu_h, cost)
    if fit >= trials:
        return
    price = (f", about ${cost.dollars:.4g} each at ${cost.price_per_gpu_hour:g} per GPU-hour"
             if cost.dollars is not None else "")
    raise UserError(
        f"hpo_budget_gpu_h={budget_gpu_h:g} fits {fit} of hpo_trials={trials} trials: each "
        f"takes about {cost.gpu_h:.3g} GPU-hours ({cost.epochs} epochs on pool {cost.pool}"
        f"{price}); " + (f"set hpo_trials={fit} or fewer, or " if fit else "") +
        f"raise hpo_budget_gpu_h to {trials * cost.gpu_h:.3g}" +
        ("" if fit else " (or set hpo_trials=0: no search)") + ".")
