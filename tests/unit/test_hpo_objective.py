"""The value a search ranks trials by: mAP50-95 first, the validation loss only between equal
printed mAP50-95 values, and the median pruner stopping a trial on that tie-break (real
Optuna), from the lines the worker prints."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest

from kfp_yolo.components.hpo.local import PRUNER_STARTUP_TRIALS, _Trial
from kfp_yolo.components.hpo.objective import (
    MAP_DECIMALS,
    TIE_BREAK_SCALE,
    best_value,
    trial_value,
)
from kfp_yolo.components.hpo.result import TrialRecord, best_of


def test_equal_map50_95_is_ordered_by_the_validation_loss():
    assert trial_value(0.0, 3.1) > trial_value(0.0, 3.2) > trial_value(0.0, 50.0)
    assert trial_value(0.25, 1.0) < 0.25  # a tie-break, never a bonus
    assert trial_value(0.25, 1.0) == pytest.approx(0.25, abs=TIE_BREAK_SCALE)


@pytest.mark.parametrize("loss", [None, math.nan, math.inf])
def test_no_loss_or_a_diverged_one_is_last_among_equals(loss):
    assert trial_value(0.1, loss) < trial_value(0.1, 1e9)
    assert trial_value(0.1, loss) == trial_value(0.1, None)


def test_the_tie_break_never_reorders_a_printed_map50_95_difference():
    step = 10.0 ** -MAP_DECIMALS  # the line's resolution: the smallest real difference
    losses = [0.0, 1e-9, 0.5, 3.0, 1e6, 1e300, None, math.inf]
    for base in (0.0, 0.123456, 0.999998):
        lower, higher = round(base, MAP_DECIMALS), round(base + step, MAP_DECIMALS)
        for worse_loss, better_loss in itertools.product(losses, repeat=2):
            # the higher mAP50-95 wins whatever the losses, even its worst against a zero
            assert trial_value(higher, worse_loss) > trial_value(lower, better_loss), \
                (base, worse_loss, better_loss)


def test_map50_95_is_taken_as_printed():
    # a difference below the printed resolution is no difference: the loss decides
    assert trial_value(0.1000001, 5.0) < trial_value(0.1000000, 4.0)


def test_a_trials_best_value_is_its_best_epoch():
    assert best_value((), ()) is None
    assert best_value((0.0, 0.0, 0.0), (6.0, 4.5, 5.0)) == trial_value(0.0, 4.5)
    assert best_value((0.1, 0.3), (2.0, 9.0)) == trial_value(0.3, 9.0)  # mAP50-95 first
    assert best_value((0.2, 0.2), (3.0,)) == trial_value(0.2, 3.0)  # a missing loss: none


def test_the_best_trial_is_the_highest_score_among_the_completed():
    trials = [
        TrialRecord(0, {"lr0": 0.01}, "complete", (0.0, 0.0), val_losses=(7.0, 6.9)),
        TrialRecord(1, {"lr0": 0.02}, "complete", (0.0, 0.0), val_losses=(6.0, 5.5)),
        TrialRecord(2, {"lr0": 0.03}, "pruned", (0.0,), val_losses=(4.0,)),  # not a candidate
        TrialRecord(3, {"lr0": 0.04}, "failed"),
    ]
    assert best_of(trials).number == 1
    assert best_of([*trials, TrialRecord(4, {}, "complete", (0.000001,), val_losses=(99.0,))]
                   ).number == 4
    assert best_of(trials[2:]) is None
    assert TrialRecord.from_dict(trials[1].to_dict()) == trials[1]
    old = {k: v for k, v in trials[1].to_dict().items() if k != "val_losses"}  # before the loss
    assert TrialRecord.from_dict(old).val_losses == ()


# ---- the lines a trial's worker prints, and the pruner on a tie ----------------------------


def test_the_worker_prints_the_validation_loss_before_the_metric(capsys):
    from kfp_yolo.components.training.worker import print_metric_line

    print_metric_line(SimpleNamespace(metrics={
        "metrics/mAP50-95(B)": 0.0, "val/box_loss": 3.25, "val/cls_loss": 4.5,
        "val/dfl_loss": 1.125, "metrics/precision(B)": 0.0}))
    assert capsys.readouterr().out == "val_loss=8.875000\nmap50_95=0.000000\n"


def _epoch(trial: _Trial, map50_95: str, loss: str | None) -> None:
    if loss is not None:
        trial.on_line(f"val_loss={loss}\n")
    trial.on_line(f"map50_95={map50_95}\n")


def test_a_trial_pairs_each_epochs_loss_with_its_metric():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = _Trial(optuna.create_study(direction="maximize").ask())
    _epoch(trial, "0.000000", "8.5")
    trial.on_line("val_loss=7.5\n")  # the next epoch's loss, before its metric line
    assert not trial.should_stop()
    assert (trial.maps, trial.losses) == ([0.0], [8.5])
    trial.on_line("map50_95=0.000000\n")
    trial.should_stop()
    assert trial.values == [trial_value(0.0, 8.5), trial_value(0.0, 7.5)]
    assert trial.aligned_losses() == (8.5, 7.5)
    _epoch(trial, "0.000000", None)  # an epoch without a loss line: no positional pairing
    trial.should_stop()
    assert trial.aligned_losses() == () and trial.values[-1] == trial_value(0.0, None)


def test_the_median_pruner_stops_a_trial_whose_map50_95_ties_but_whose_loss_trails():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(
        n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=0))
    first = _Trial(study.ask())
    _epoch(first, "0.000000", "8.0")
    _epoch(first, "0.000000", "7.0")
    assert not first.should_stop()
    study.tell(first.trial, max(first.values))
    trailing, leading = _Trial(study.ask()), _Trial(study.ask())
    _epoch(trailing, "0.000000", "8.4")  # the same mAP50-95 as the first, a higher loss
    _epoch(leading, "0.000000", "7.9")
    assert trailing.should_stop() and trailing.pruned
    assert not leading.should_stop()
