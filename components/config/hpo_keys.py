"""The hyperparameter search's config keys (hpo_*): their fields and checks, kept out of
config.py as serving_keys.py keeps the registry and serving keys. The search itself is
components/hpo; the range and image-size rules are components/hpo/space.py's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from kfp_yolo.components.hpo.space import RANGE_KEYS, SearchSpace, check_imgsz, check_range

__all__ = ["RANGE_KEYS", "HpoAlgorithm", "check_range_key", "check_search"]

HpoAlgorithm = Literal["tpe", "multivariate-tpe", "random"]
"""The algorithms both Optuna (here) and Katib (a cluster) run under these names."""

TRIALS_FIELD = Field(0, ge=0, le=1000, description=
    "Trials of the hyperparameter search before the training, 0 to 1000; 0 = no search. The best "
    "trial's values train the model.")
EPOCHS_FIELD = Field(3, ge=1, le=1000, description=
    "Epochs of each search trial, 1 to 1000 (the median pruner stops a trial after any epoch).")
FRACTION_FIELD = Field(1.0, gt=0, le=1, description=
    "Share of the training split each trial trains on: more than 0, at most 1.")
PARALLEL_FIELD = Field(1, ge=1, le=64, description=
    "Trials run at once, 1 to 64 (at most hpo_trials).")
ALGORITHM_FIELD = Field("tpe", description=
    "Search algorithm: tpe, multivariate-tpe or random (Optuna here, Katib on a cluster).")
BUDGET_FIELD = Field(0.0, ge=0, le=1e6, description=
    "GPU-hours the search may spend, 0 = no budget: the plan refuses a search whose estimated "
    "trials do not fit, and no trial starts once it is spent.")
LR0_FIELD = Field("0.0005..0.02", description=
    "Search range LOW..HIGH of the initial learning rate (log scale); empty = not searched.")
MOMENTUM_FIELD = Field("", description=
    "Search range LOW..HIGH of the optimizer's momentum (SGD) or beta1 (Adam, AdamW), within "
    "0..0.999; empty = not searched.")
WEIGHT_DECAY_FIELD = Field("", description=
    "Search range LOW..HIGH of the weight decay (log scale), within 1e-7..0.1; empty = not "
    "searched.")
MOSAIC_FIELD = Field("0..1", description=
    "Search range LOW..HIGH of the mosaic augmentation's probability, within 0..1; empty = not "
    "searched.")
SCALE_FIELD = Field("", description=
    "Search range LOW..HIGH of the scale augmentation's gain, within 0..0.95; empty = not "
    "searched.")
HSV_FIELD = Field("", description=
    "Search range LOW..HIGH of a gain on ultralytics' HSV augmentation (1 = its defaults), within"
    " 0..2; empty = not searched.")
IMGSZ_FIELD = Field("", description=
    "Image sizes to search, separated by commas (e.g. 64,96,128), multiples of 32 up to imgsz; "
    "empty = not searched.")


def check_range_key(key: str, value: Any) -> Any:
    """A range key's value as given, or ValueError (RunConfig's sentence says which key)."""
    check_range(key, value)
    return value


def check_search(cfg: Any) -> None:
    """The checks that need several keys: hpo_imgsz within imgsz, something to search, and
    no more trials at once than trials."""
    try:
        check_imgsz(cfg.hpo_imgsz, cfg.imgsz)
    except ValueError as exc:
        raise ValueError(f"hpo_imgsz={cfg.hpo_imgsz!r} is invalid: {exc}") from None
    if cfg.hpo_trials and not SearchSpace.from_config(cfg.model_dump()).params:
        raise ValueError(f"hpo_trials={cfg.hpo_trials} searches nothing: set a range such as "
                         "hpo_lr0=0.0005..0.02, or set hpo_trials=0")
    if cfg.hpo_trials and cfg.hpo_parallel > cfg.hpo_trials:
        raise ValueError(f"hpo_parallel={cfg.hpo_parallel} is more than "
                         f"hpo_trials={cfg.hpo_trials}; lower it")
