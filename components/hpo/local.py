"""The search on this machine: Optuna (TPE or random sampling, median pruning), each trial a
real training run of the worker through the local launcher (torchrun), as `kfp-yolo run` trains.

A trial's worker prints `val_loss=VALUE` and `map50_95=VALUE` after each epoch
(TrainSpec.metric_lines, the lines Katib's StdOut collector reads on a cluster); the launcher
hands every line to the trial, which reports the epoch's value to Optuna and stops the training
when the median pruner says so. The value is mAP50-95 with the validation loss as a tie-break
below mAP50-95's printed resolution (objective.py: equal values, as every 0.0 of a tiny
dataset, would never be pruned); a trial's value is its best epoch's, and the best trial is the
one with the highest. No trial starts once the measured device-hours reach the budget.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from kfp_yolo.components.errors import JobFailed
from kfp_yolo.components.hpo.budget import TrialCost
from kfp_yolo.components.hpo.objective import trial_value
from kfp_yolo.components.hpo.result import SearchResult, TrialRecord, best_of
from kfp_yolo.components.hpo.space import SearchSpace, apply_values
from kfp_yolo.components.spec import TrainSpec

__all__ = ["SAMPLERS", "run_local_search"]

log = logging.getLogger("kfp_yolo.hpo")
SAMPLERS = ("tpe", "multivariate-tpe", "random")
_LINE = re.compile(r"^(map50_95|val_loss)=([0-9.eE+-]+)\s*$")
PRUNER_STARTUP_TRIALS = 1
"""Trials that run to their end before the median pruner judges others: with one, the second
trial can already be stopped when it trails (searches here are a handful of trials)."""


def _sampler(algorithm: str, seed: int) -> Any:
    import optuna

    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=algorithm == "multivariate-tpe",
                                      n_startup_trials=2)


def _suggest(trial: Any, space: SearchSpace) -> dict[str, float]:
    values: dict[str, float] = {}
    for p in space.params:
        if p.choices:
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
    return values


def trial_spec(base: TrainSpec, values: dict[str, float], *, number: int, epochs: int,
               workdir: Path) -> TrainSpec:
    """The TrainSpec of trial `number`: short, with the trial's values, no checkpoints."""
    args = apply_values(values)
    changes: dict[str, Any] = {k: args.pop(k) for k in ("imgsz", "lr0") if k in args}
    if "imgsz" in changes:
        changes["imgsz"] = int(changes["imgsz"])
    return replace(base, run_id=f"{base.run_id}-trial{number}", epochs=epochs,
                   hyp={**base.hyp, **args}, metric_lines=True, checkpoint_uri="",
                   output_uri=str(workdir / f"trial{number}" / "weights"), **changes)


class _Trial:
    """One running trial: collects the metric lines, asks the pruner after each epoch.

    An epoch ends with its `map50_95=` line; a `val_loss=` line before it is that epoch's loss.
    """

    def __init__(self, trial: Any):
        self.trial = trial
        self.maps: list[float] = []
        self.losses: list[float] = []
        self.values: list[float] = []
        """What was reported to Optuna, per epoch (objective.trial_value)."""
        self._pending: list[tuple[float, float | None]] = []
        self._loss: float | None = None
        self._lock = threading.Lock()
        self.pruned = False

    def on_line(self, line: str) -> None:  # the launcher's reader thread
        match = _LINE.match(line.strip())
        if not match:
            return
        name, value = match.group(1), float(match.group(2))
        with self._lock:
            if name == "val_loss":
                self._loss = value
            else:
                self._pending.append((value, self._loss))
                self._loss = None

    def should_stop(self) -> bool:  # the launching thread
        with self._lock:
            pending, self._pending = self._pending, []
        for map50_95, loss in pending:
            self.maps.append(map50_95)
            if loss is not None:
                self.losses.append(loss)
            self.values.append(trial_value(map50_95, loss))
            self.trial.report(self.values[-1], step=len(self.values))
            if self.trial.should_prune():
                self.pruned = True
        return self.pruned

    def aligned_losses(self) -> tuple[float, ...]:
        """The losses, one per epoch; none when an epoch printed none (a nan is not printed
        as a number): TrialRecord pairs them with the epochs by position."""
        return tuple(self.losses) if len(self.losses) == len(self.maps) else ()


def run_local_search(base: TrainSpec, space: SearchSpace, *, trials: int, epochs: int,
                     workdir: Path, algorithm: str = "tpe", parallel: int = 1,
                     budget_gpu_h: float = 0.0,
                     cost: TrialCost | None = None, launcher_env: dict[str, str] | None = None,
                     on_trial: Any = None) -> SearchResult:
    """Runs up to `trials` trials of `base` over `space`; returns every trial and the best.

    Args:
        base: the training's spec (its dataset, model, batch, and hyp's fraction of the
            training split); trials take their values and `epochs`, and write under
            `workdir`/trial<N>.
        budget_gpu_h: no trial starts once the finished ones measured this much (0 = none).
        cost: the plan's estimate of one trial, recorded beside what was measured.
        on_trial: called with each finished TrialRecord (progress lines, MLflow).

    Raises:
        UserError: a trial refused its input (the same input would fail every trial).
        JobFailed: no trial finished.
    """
    import optuna

    from kfp_yolo.components.errors import UserError
    from kfp_yolo.components.launchers.local import JobStopped, LocalLauncher

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The search logs each trial as a nested MLflow run itself (hpo/tracking.py): a trial's
    # worker must not log into the step's own run as a training would.
    launcher_env = {"MLFLOW_TRACKING_URI": "", **(launcher_env or {})}
    if algorithm not in SAMPLERS:
        raise UserError(f"hpo_algorithm must be one of {list(SAMPLERS)}, got {algorithm!r}.")
    study = optuna.create_study(
        direction="maximize", sampler=_sampler(algorithm, base.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS,
                                           n_warmup_steps=0))
    records: list[TrialRecord] = []
    lock = threading.Lock()
    stopped_by_budget = threading.Event()

    def spent() -> float:
        return sum(r.measured_gpu_h for r in records)

    def objective(trial: Any) -> float:
        if budget_gpu_h and spent() >= budget_gpu_h:
            stopped_by_budget.set()
            trial.study.stop()
            raise optuna.TrialPruned("budget spent")  # recorded as not run, below
        values = _suggest(trial, space)
        spec = trial_spec(base, values, number=trial.number, epochs=epochs, workdir=workdir)
        state = _Trial(trial)
        started = time.monotonic()
        outcome, error = "complete", ""
        try:
            LocalLauncher(scratch=workdir / f"trial{trial.number}" / "scratch",
                          env=launcher_env, on_line=state.on_line,
                          stop_when=state.should_stop).launch(spec)
            state.should_stop()  # the last epoch's line
        except JobStopped:
            outcome = "pruned"
        except JobFailed as exc:
            outcome, error = "failed", str(exc)
        seconds = time.monotonic() - started
        record = TrialRecord(number=trial.number, values=values, state=outcome,
                             metrics=tuple(state.maps), val_losses=state.aligned_losses(),
                             seconds=round(seconds, 1),
                             measured_gpu_h=seconds * base.world_size / 3600,
                             estimated_gpu_h=cost.gpu_h * len(state.values) / epochs
                             if cost and cost.gpu_h is not None else None, error=error)
        with lock:
            records.append(record)
        if on_trial is not None:
            on_trial(record)
        if budget_gpu_h and spent() >= budget_gpu_h:
            stopped_by_budget.set()
            trial.study.stop()
        if outcome == "pruned":
            raise optuna.TrialPruned()
        if outcome == "failed":
            raise _TrialFailed(error)
        if not state.values:
            raise _TrialFailed("the trial printed no map50_95 line")
        return max(state.values)

    study.optimize(objective, n_trials=trials, n_jobs=parallel, catch=(_TrialFailed,),
                   gc_after_trial=True)
    records.sort(key=lambda r: r.number)
    best = best_of(records)
    if best is None:
        reasons = "; ".join(f"trial {r.number}: {r.error}" for r in records if r.error)
        raise JobFailed(f"no search trial finished ({reasons or 'every trial was pruned'}).")
    return SearchResult(trials=tuple(records), best=best.number, algorithm=algorithm,
                        epochs=epochs, budget_gpu_h=budget_gpu_h, cost=cost,
                        budget_reached=stopped_by_budget.is_set())


class _TrialFailed(Exception):
    """A trial's training failed (recorded; the search goes on)."""
