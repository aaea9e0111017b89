"""The search's pure parts: the space from the config (and its refusals), a trial's GPU-hours
from the planner and the budget's refusal, the median pruner stopping a trailing trial (real
Optuna), the metric line the worker prints, and the search report (self-contained HTML)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.hpo.budget import TrialCost, check_budget, trials_that_fit
from kfp_yolo.components.hpo.local import _Trial, trial_spec
from kfp_yolo.components.hpo.result import SearchResult, TrialRecord, format_table
from kfp_yolo.components.hpo.space import SearchSpace, apply_values, parse_hyp_args
from kfp_yolo.components.reports.search import render_report
from kfp_yolo.components.spec import TrainSpec


def spec(**changes) -> TrainSpec:
    values = dict(run_id="run", dataset_uri="/data", model="yolov5n.yaml", imgsz=128, epochs=20,
                  batch=16, precision="amp", optimizer="AdamW", lr0=0.004, seed=0, workers=0,
                  nodes=1, procs_per_node=1, checkpoint_uri="/ckpt", output_uri="/out")
    return TrainSpec(**{**values, **changes})


# ---- the space and its refusals -----------------------------------------------------------


@pytest.mark.parametrize("setting, sentence", [
    ("hpo_lr0=0..0.01", "hpo_lr0='0..0.01' is invalid: needs 1e-06 <= LOW < HIGH <= 1 "
                        "(searched on a log scale, so LOW > 0)."),
    ("hpo_mosaic=0.5..x", "hpo_mosaic='0.5..x' is invalid: give a range LOW..HIGH such as 0..1, "
                          "or empty to leave it unsearched."),
    ("hpo_mosaic=0:1", "hpo_mosaic='0:1' is invalid: give a range LOW..HIGH such as 0..1"),
    ("hpo_imgsz=64,100", "hpo_imgsz='64,100' is invalid: 100 is not a multiple of 32 from 32 "
                         "to imgsz=128"),
    ("hpo_algorithm=grid", "hpo_algorithm='grid' is invalid: Input should be 'tpe', "
                           "'multivariate-tpe' or 'random'."),
])
def test_a_bad_search_key_is_one_sentence(setting, sentence):
    with pytest.raises(UserError) as refused:
        load_config(None, [setting])
    assert sentence in str(refused.value)


def test_a_colon_range_in_a_config_file_is_refused_with_its_line(tmp_path):
    # YAML 1.1 reads `0:1` as the base-60 number 1: ranges are written LOW..HIGH instead
    config = tmp_path / "c.yaml"
    config.write_text("hpo_trials: 2\nhpo_mosaic: 0:1\n")
    with pytest.raises(UserError, match=r"c.yaml:2: hpo_mosaic='0:1' is invalid: give a range "
                                        r"LOW\.\.HIGH such as 0\.\.1"):
        load_config(config)


def test_a_search_of_nothing_or_too_parallel_is_refused():
    with pytest.raises(UserError, match="hpo_trials=4 searches nothing: set a range such as "
                                        "hpo_lr0=0.0005..0.02, or set hpo_trials=0"):
        load_config(None, ["hpo_trials=4", "hpo_lr0=", "hpo_mosaic="])
    with pytest.raises(UserError, match="hpo_parallel=5 is more than hpo_trials=4; lower it"):
        load_config(None, ["hpo_trials=4", "hpo_parallel=5"])


def test_the_space_comes_from_the_keys_in_order():
    cfg = load_config(None, ["hpo_trials=4", "hpo_hsv=0.5..1.5", "hpo_imgsz=64,128,96",
                             "hpo_weight_decay=0.0001..0.001"])
    space = SearchSpace.from_config(cfg.model_dump())
    assert space.names == ["lr0", "weight_decay", "mosaic", "hsv", "imgsz"]
    assert [p.log for p in space.params] == [True, True, False, False, False]
    assert space.params[-1].choices == (64, 96, 128)


def test_hsv_gain_scales_ultralytics_defaults_and_trials_get_their_values():
    assert apply_values({"hsv": 2.0, "mosaic": 0.5}) == {"mosaic": 0.5, "hsv_h": 0.03,
                                                         "hsv_s": 1.0, "hsv_v": 0.8}
    trial = trial_spec(spec(hyp={"fraction": 0.5}), {"lr0": 0.002, "imgsz": 96, "scale": 0.3},
                       number=3, epochs=2, workdir=__import__("pathlib").Path("/w"))
    assert (trial.run_id, trial.epochs, trial.imgsz, trial.lr0) == ("run-trial3", 2, 96, 0.002)
    assert trial.hyp == {"fraction": 0.5, "scale": 0.3} and trial.metric_lines
    assert trial.checkpoint_uri == "" and trial.output_uri == "/w/trial3/weights"
    with pytest.raises(UserError, match="--hyp 'epochs=3': give KEY=VALUE with KEY one of"):
        parse_hyp_args(["epochs=3"])


def test_a_spec_without_search_values_serialises_as_before():
    assert "hyp" not in spec().to_json() and "metric_lines" not in spec().to_json()
    searched = spec(hyp={"mosaic": 0.2}, metric_lines=True)
    assert TrainSpec.from_json(searched.to_json()) == searched


# ---- what a trial costs and the budget -----------------------------------------------------


def test_a_search_that_cannot_fit_says_how_many_trials_do():
    cost = TrialCost(gpu_h=0.3, pool="a100-40g", price_per_gpu_hour=2.74, epochs=5)
    assert trials_that_fit(1.0, cost) == 3
    check_budget(3, 1.0, cost)  # fits
    with pytest.raises(UserError) as refused:
        check_budget(8, 1.0, cost)
    assert str(refused.value) == (
        "hpo_budget_gpu_h=1 fits 3 of hpo_trials=8 trials: each takes about 0.3 GPU-hours (5 "
        "epochs on pool a100-40g, about $0.822 each at $2.74 per GPU-hour); set hpo_trials=3 "
        "or fewer, or raise hpo_budget_gpu_h to 2.4.")
    with pytest.raises(UserError, match="fits 0 of hpo_trials=2 .* raise hpo_budget_gpu_h to "
                                        r"0.6 \(or set hpo_trials=0: no search\)"):
        check_budget(2, 0.1, cost)
    with pytest.raises(UserError, match="pool t4 has no images/s figure"):
        check_budget(2, 1.0, TrialCost(None, "t4", 0.53, 5))
    check_budget(50, 0.0, cost)  # no budget


# ---- pruning: real Optuna, the lines a trial's worker prints --------------------------------


def test_the_median_pruner_stops_a_trailing_trial_after_its_first_epoch():
    import optuna

    from kfp_yolo.components.hpo.local import PRUNER_STARTUP_TRIALS

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(
        n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=0))
    first = _Trial(study.ask())
    for line in ("epoch 1 ...\n", "map50_95=0.300000\n", "map50_95=0.400000\n"):
        first.on_line(line)
    assert not first.should_stop() and first.maps == [0.3, 0.4]
    study.tell(first.trial, max(first.values))
    trailing, leading = _Trial(study.ask()), _Trial(study.ask())
    trailing.on_line("map50_95=0.050000\n")
    leading.on_line("map50_95=0.350000\n")
    assert trailing.should_stop() and trailing.pruned
    assert not leading.should_stop()


def test_the_worker_prints_the_metric_line_katibs_collector_reads(capsys):
    from kfp_yolo.components.hpo.experiment import METRIC
    from kfp_yolo.components.training.worker import METRIC_NAME, print_metric_line

    print_metric_line(SimpleNamespace(metrics={"metrics/mAP50-95(B)": 0.51234567}))
    print_metric_line(SimpleNamespace(metrics={}))  # no validation this epoch: no line
    out = capsys.readouterr().out
    assert out == "map50_95=0.512346\n" and METRIC == METRIC_NAME
    # Katib's StdOut collector pattern (DESIGN.md): the name and value it takes
    pattern = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
    assert re.findall(pattern, out)[0][:2] == ("map50_95", "0.512346")


# ---- the result, the table and the report ---------------------------------------------------


def result() -> SearchResult:
    trials = (
        TrialRecord(0, {"lr0": 0.003, "mosaic": 0.7}, "complete", (0.2, 0.41), 60.0, 60 / 3600,
                    0.01),
        TrialRecord(1, {"lr0": 0.02, "mosaic": 0.1}, "pruned", (0.05,), 25.0, 25 / 3600,
                    0.005),
        TrialRecord(2, {"lr0": 0.0007, "mosaic": 0.4}, "failed", (), 5.0, 5 / 3600, 0.0,
                    error="training failed <oom>"),
    )
    return SearchResult(trials=trials, best=0, algorithm="tpe", epochs=2, budget_gpu_h=0.5,
                        cost=TrialCost(0.01, "a100-40g", 2.74, 2))


def test_the_summary_and_table_say_what_was_found_and_spent():
    s = result().summary()
    assert (s["trials"], s["trials_complete"], s["trials_pruned"], s["trials_failed"]) == \
        (3, 1, 1, 1)
    assert s["best_values"] == {"lr0": 0.003, "mosaic": 0.7} and s["best_map50_95"] == 0.41
    assert s["measured_gpu_h"] == round(90 / 3600, 6) and s["estimated_gpu_h"] == 0.015
    assert s["estimated_dollars"] == round(0.015 * 2.74, 4)
    table = format_table(result()).splitlines()
    assert table[0].split() == ["trial", "lr0", "mosaic", "mAP50-95", "epochs", "state",
                                "device-h"]
    assert table[1].split()[:1] == ["0*"] and table[2].split()[-2] == "pruned"
    assert table[-1].startswith("best: trial 0, mAP50-95 0.4100; 1 complete, 1 pruned, 1 failed")
    assert SearchResult.from_dict(result().to_dict()).summary() == s


def test_the_report_is_self_contained_html_with_a_chart_per_value():
    page = render_report(result(), title="Search <run>")

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.refs = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.refs += [v for k, v in attrs if k in ("src", "href") and v]

    parser = Collect()
    parser.feed(page)
    assert "script" not in parser.tags and parser.refs == []  # nothing fetched, nothing run
    assert parser.tags.count("svg") == 4  # lr0, mosaic, trial order, per-epoch curves
    assert "Search &lt;run&gt;" in page and "training failed &lt;oom&gt;" in page
    assert 'class="best"' in page and "Budget: 0.5 GPU-hours" in page
    assert "mAP50-95 vs lr0" in page and "(log scale)" in page
