"""The value a search ranks trials by: mAP50-95, ties broken by the validation loss.

Why a tie-break: on small or early data every trial's mAP50-95 after an epoch can be the same
(0.0 on the demo's synthetic shapes). Optuna's median pruner stops a trial only when it is
strictly worse than the median, so ties never prune, and TPE learns nothing from equal values.
The validation loss (box + cls + dfl, which ultralytics' validator computes every epoch) is
continuous and falls as the detector learns, so it orders trials that mAP50-95 cannot.

Why lexicographic and not a weighted sum: the worker prints mAP50-95 with MAP_DECIMALS decimals,
so two different values differ by at least 10**-MAP_DECIMALS. The tie-break is
TIE_BREAK_SCALE * loss / (1 + loss), in [0, TIE_BREAK_SCALE) with TIE_BREAK_SCALE half that
step: it orders only trials whose printed mAP50-95 are equal and never reorders a real
difference, whatever the loss's scale. A trial without a loss (no `val_loss` line) ranks last
among its equals.

Katib's objective stays the plain `map50_95` line (its medianstop and optimal trial use it);
`val_loss` is an additional metric there, used to break ties when the step picks the best.
"""

from __future__ import annotations

import math

__all__ = ["MAP_DECIMALS", "TIE_BREAK_SCALE", "best_value", "trial_value"]

MAP_DECIMALS = 6
"""Decimals of the worker's `map50_95=` line."""
TIE_BREAK_SCALE = 0.5 * 10.0 ** -MAP_DECIMALS
"""The tie-break's range: half the smallest difference between two printed mAP50-95 values."""


def trial_value(map50_95: float, val_loss: float | None) -> float:
    """One epoch's value for the search (higher is better): mAP50-95, rounded as printed, less
    a tie-break below its resolution that grows with the validation loss."""
    if val_loss is None or not math.isfinite(val_loss):
        squashed = 1.0  # no loss, or a diverged one: last among equal mAP50-95
    else:
        loss = max(0.0, val_loss)
        squashed = loss / (1.0 + loss)
    return round(map50_95, MAP_DECIMALS) - TIE_BREAK_SCALE * squashed


def best_value(maps: tuple[float, ...] | list[float],
               losses: tuple[float, ...] | list[float]) -> float | None:
    """The best epoch's value of a trial (None: it reported no epoch). `losses` pairs with
    `maps` by position; missing ones count as no loss."""
    if not maps:
        return None
    return max(trial_value(m, losses[i] if i < len(losses) else None)
               for i, m in enumerate(maps))
