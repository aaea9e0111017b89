"""The search space, from the config's hpo_* keys, and its checks.

A range key is `LOW..HIGH` (empty = not searched; not `LOW:HIGH`, which YAML 1.1 reads as
a base-60 number: `0:1` is 1); lr0 and weight_decay are searched on a log
scale, the others uniformly. hpo_hsv is a gain on ultralytics' default HSV augmentation
(hsv_h 0.015, hsv_s 0.7, hsv_v 0.4: 0 = none, 1 = the defaults). hpo_imgsz is a list of image
sizes (`64,96,128`), each a multiple of 32 and at most the config's imgsz, which the plan step
sizes GPU memory for. The same space becomes Optuna distributions here (local.py) and Katib
parameters on a cluster (experiment.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["HSV_DEFAULTS", "Param", "RANGE_KEYS", "SearchSpace", "apply_values", "check_imgsz",
           "check_range", "parse_hyp_args"]

HSV_DEFAULTS = {"hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4}
"""ultralytics' defaults (cfg/default.yaml), which hpo_hsv's gain scales."""
RANGE_KEYS = {
    # config key: (searched value, lowest, highest allowed, log scale)
    "hpo_lr0": ("lr0", 1e-6, 1.0, True),
    "hpo_momentum": ("momentum", 0.0, 0.999, False),
    "hpo_weight_decay": ("weight_decay", 1e-7, 0.1, True),
    "hpo_mosaic": ("mosaic", 0.0, 1.0, False),
    "hpo_scale": ("scale", 0.0, 0.95, False),
    "hpo_hsv": ("hsv", 0.0, 2.0, False),
}
# Values a trial's `--hyp KEY=VALUE` may set: the searched ones and hsv's three channels.
_HYP_NAMES = {"imgsz", "fraction", *HSV_DEFAULTS, *(v[0] for v in RANGE_KEYS.values())} - {"hsv"}


def check_range(key: str, text: str) -> tuple[float, float] | None:
    """(low, high) of a range key's `LOW..HIGH`, None when empty; ValueError says what is
    wrong."""
    _, lowest, highest, log = RANGE_KEYS[key]
    if not isinstance(text, str):  # YAML made a number of it (0:1 is base 60 there)
        raise ValueError(f"give a range LOW..HIGH such as {lowest:g}..{highest:g}, or empty to "
                         "leave it unsearched")
    if not text.strip():
        return None
    parts = text.split("..")
    try:
        low, high = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"give a range LOW..HIGH such as {lowest:g}..{highest:g}, or empty "
                         "to leave it unsearched")
    if not lowest <= low < high <= highest:
        raise ValueError(f"needs {lowest:g} <= LOW < HIGH <= {highest:g}"
                         + (" (searched on a log scale, so LOW > 0)" if log else ""))
    return low, high


def check_imgsz(text: str, imgsz: int) -> tuple[int, ...]:
    """The image sizes of hpo_imgsz (empty = not searched); ValueError says what is wrong."""
    if not text.strip():
        return ()
    try:
        sizes = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ValueError("give image sizes separated by commas, such as 64,96,128") from None
    bad = [s for s in sizes if s % 32 or not 32 <= s <= imgsz]
    if bad:
        raise ValueError(f"{bad[0]} is not a multiple of 32 from 32 to imgsz={imgsz} (the plan "
                         "step sizes GPU memory for imgsz: raise imgsz to search larger sizes)")
    if len(set(sizes)) < 2:
        raise ValueError("give at least two different sizes, or leave it empty")
    return tuple(sorted(set(sizes)))


@dataclass(frozen=True)
class Param:
    """One searched value: a float range (log or uniform) or a list of image sizes."""

    name: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[int, ...] = ()


@dataclass(frozen=True)
class SearchSpace:
    """What a search varies, in a fixed order (the report's columns)."""

    params: tuple[Param, ...]

    @classmethod
    def from_config(cls, values: dict[str, Any]) -> SearchSpace:
        """The space of a config's hpo_* keys (a RunConfig's fields or the validate step's
        values); ValueError names the key when one is wrong."""
        params = []
        for key, (name, _, _, log) in RANGE_KEYS.items():
            try:
                bounds = check_range(key, values.get(key, ""))
            except ValueError as exc:
                raise ValueError(f"{key}={values.get(key)!r} is invalid: {exc}") from None
            if bounds:
                params.append(Param(name, bounds[0], bounds[1], log))
        try:
            sizes = check_imgsz(str(values.get("hpo_imgsz", "")), int(values["imgsz"]))
        except ValueError as exc:
            raise ValueError(f"hpo_imgsz={values.get('hpo_imgsz')!r} is invalid: {exc}") from None
        if sizes:
            params.append(Param("imgsz", choices=sizes))
        return cls(tuple(params))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]


def apply_values(values: dict[str, float]) -> dict[str, float]:
    """A trial's searched values as training arguments: hsv's gain becomes hsv_h/s/v."""
    out = {k: v for k, v in values.items() if k != "hsv"}
    if "hsv" in values:
        out.update({k: round(min(1.0, d * values["hsv"]), 6) for k, d in HSV_DEFAULTS.items()})
    return out


def parse_hyp_args(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings (a trial's `--hyp` arguments) as training arguments; hsv expands."""
    values: dict[str, float] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or (key not in _HYP_NAMES and key != "hsv"):
            from kfp_yolo.components.errors import UserError

            raise UserError(f"--hyp {item!r}: give KEY=VALUE with KEY one of "
                            f"{', '.join(sorted(_HYP_NAMES | {'hsv'}))}.")
        values[key] = float(text)
    out: dict[str, Any] = apply_values(values)
    if "imgsz" in out:
        out["imgsz"] = int(out["imgsz"])
    return out
