"""What a search found: every trial (values, metric per epoch, pruned or not, device-hours) and
the best, as JSON for the steps and a plain table for the terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kfp_yolo.components.hpo.budget import TrialCost
from kfp_yolo.components.hpo.objective import best_value

__all__ = ["SearchResult", "TrialRecord", "best_of", "format_table"]


@dataclass(frozen=True)
class TrialRecord:
    """One trial."""

    number: int
    values: dict[str, float]
    state: str
    """complete | pruned | failed."""
    metrics: tuple[float, ...] = ()
    """mAP50-95 after each epoch it ran."""
    seconds: float = 0.0
    measured_gpu_h: float = 0.0
    """Wall time x the devices it held (on a CPU machine: its processes)."""
    estimated_gpu_h: float | None = None
    """The plan's estimate for the epochs it ran."""
    error: str = ""
    name: str = ""
    """The Katib Trial's name on a cluster."""
    val_losses: tuple[float, ...] = ()
    """The validation loss after each epoch it ran (on a cluster: Katib's minimum)."""

    @property
    def best_metric(self) -> float | None:
        return max(self.metrics) if self.metrics else None

    @property
    def score(self) -> float | None:
        """What the search ranks it by: its best epoch's mAP50-95 with the validation loss as
        the tie-break (hpo/objective.py); None when it reported no epoch."""
        return best_value(self.metrics, self.val_losses)

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "values": self.values, "state": self.state,
                "metrics": list(self.metrics), "val_losses": list(self.val_losses),
                "best_metric": self.best_metric,
                "epochs_run": len(self.metrics), "seconds": self.seconds,
                "measured_gpu_h": self.measured_gpu_h, "estimated_gpu_h": self.estimated_gpu_h,
                "error": self.error, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        return cls(number=int(data["number"]), values=dict(data["values"]),
                   state=data["state"], metrics=tuple(data.get("metrics", ())),
                   seconds=float(data.get("seconds", 0)),
                   measured_gpu_h=float(data.get("measured_gpu_h", 0)),
                   estimated_gpu_h=data.get("estimated_gpu_h"), error=data.get("error", ""),
                   name=data.get("name", ""),
                   val_losses=tuple(data.get("val_losses", ())))


def best_of(trials: tuple[TrialRecord, ...] | list[TrialRecord]) -> TrialRecord | None:
    """The completed trial with the highest score (None: none completed with a metric); the
    first of equal ones."""
    done = [t for t in trials if t.state == "complete" and t.metrics]
    return max(done, key=lambda t: t.score) if done else None


@dataclass(frozen=True)
class SearchResult:
    """Every trial of one search and the number of the best."""

    trials: tuple[TrialRecord, ...]
    best: int
    algorithm: str
    epochs: int
    budget_gpu_h: float = 0.0
    cost: TrialCost | None = None
    budget_reached: bool = False
    where: str = "local"
    """local (Optuna here) or the Katib Experiment's name."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_trial(self) -> TrialRecord:
        return next(t for t in self.trials if t.number == self.best)

    @property
    def measured_gpu_h(self) -> float:
        return sum(t.measured_gpu_h for t in self.trials)

    @property
    def estimated_gpu_h(self) -> float | None:
        known = [t.estimated_gpu_h for t in self.trials if t.estimated_gpu_h is not None]
        return sum(known) if known else None

    def summary(self) -> dict[str, Any]:
        """The numbers the run's summary, the registry metadata and the UI's metrics show."""
        counts = {s: sum(t.state == s for t in self.trials)
                  for s in ("complete", "pruned", "failed")}
        price = self.cost.price_per_gpu_hour if self.cost else None
        estimated = self.estimated_gpu_h
        return {"trials": len(self.trials), **{f"trials_{k}": v for k, v in counts.items()},
                "best_trial": self.best, "best_map50_95": self.best_trial.best_metric,
                "best_values": self.best_trial.values, "algorithm": self.algorithm,
                "epochs_per_trial": self.epochs, "budget_gpu_h": self.budget_gpu_h,
                "budget_reached": self.budget_reached,
                "measured_gpu_h": round(self.measured_gpu_h, 6),
                "estimated_gpu_h": round(estimated, 6) if estimated is not None else None,
                "estimated_dollars": round(estimated * price, 4)
                if estimated is not None and price is not None else None,
                "pool": self.cost.pool if self.cost else "", "where": self.where}

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "trials": [t.to_dict() for t in self.trials],
                "cost": self.cost.to_dict() if self.cost else None, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchResult:
        summary, cost = data["summary"], data.get("cost")
        return cls(trials=tuple(TrialRecord.from_dict(t) for t in data["trials"]),
                   best=int(summary["best_trial"]), algorithm=summary["algorithm"],
                   epochs=int(summary["epochs_per_trial"]),
                   budget_gpu_h=float(summary["budget_gpu_h"]),
                   cost=TrialCost(**{k: cost[k] for k in ("gpu_h", "pool", "price_per_gpu_hour",
                                                         "epochs")}) if cost else None,
                   budget_reached=bool(summary["budget_reached"]), where=summary["where"])


def _number(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_table(result: SearchResult) -> str:
    """The trials as a plain-text table (what `kfp-yolo tune` prints), best marked with *."""
    names = sorted({k for t in result.trials for k in t.values})
    header = ["trial", *names, "mAP50-95", "epochs", "state", "device-h"]
    rows = [header]
    for t in result.trials:
        metric = f"{t.best_metric:.4f}" if t.best_metric is not None else "-"
        rows.append([f"{t.number}{'*' if t.number == result.best else ''}",
                     *(_number(t.values[n]) if n in t.values else "-" for n in names),
                     metric, str(len(t.metrics)), t.state, f"{t.measured_gpu_h:.4f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    s = result.summary()
    est = (f", estimated {s['estimated_gpu_h']:.4g} GPU-h on {s['pool']}"
           + (f" (${s['estimated_dollars']:.4g})" if s["estimated_dollars"] is not None else "")
           if s["estimated_gpu_h"] is not None else "")
    budget = (f" of a {s['budget_gpu_h']:g} GPU-h budget"
              + (" (budget reached: search stopped)" if s["budget_reached"] else "")
              if s["budget_gpu_h"] else "")
    lines.append(f"best: trial {result.best}, mAP50-95 {s['best_map50_95']:.4f}; "
                 f"{s['trials_complete']} complete, {s['trials_pruned']} pruned, "
                 f"{s['trials_failed']} failed; spent {s['measured_gpu_h']:.4g} device-h "
                 f"measured{budget}{est}")
    return "\n".join(lines)
