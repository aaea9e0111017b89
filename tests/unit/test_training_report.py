"""The training report and the train step's Metrics, from a results.csv in ultralytics' format."""

from __future__ import annotations

import re

import pytest

from kfp_yolo.components.reports.svg import line_chart, nice_ticks
from kfp_yolo.components.reports.training import (
    best_epoch,
    read_results,
    render_training_report,
    training_metrics,
    wall_time,
)

HEADER = ("epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),"
          "metrics/recall(B),metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,"
          "val/dfl_loss,lr/pg0,lr/pg1,lr/pg2")
ROWS = ["1,1200,3.1,2.9,1.8,0.31,0.22,0.20,0.10,2.9,2.7,1.7,0.0033,0.0033,0.0033",
        "2,2400,2.4,2.1,1.5,0.55,0.48,0.51,0.30,2.3,2.0,1.4,0.0030,0.0030,0.0030",
        "3,3600,2.0,1.6,1.3,0.60,0.52,0.55,0.29,2.2,1.9,1.3,0.0020,0.0020,0.0020"]
TRAINING = {"nodes": 2, "procs_per_node": 4, "world_size": 8, "device": "cuda", "batch": 64,
            "batch_per_gpu": 8, "images_per_s": 812.5,
            "epochs": [{"epoch": e, "seconds": 1200, "images_per_s": 800.0 + e,
                        "gpu_memory_mib": 10144.0 + e} for e in (1, 2, 3)]}
NETWORK = re.compile(r"https?://|(?:src|href)\s*=\s*[\"']?//", re.IGNORECASE)


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    return read_results(path)


def test_results_are_read_with_plain_metric_names(results):
    assert results["epoch"] == [1, 2, 3]
    assert results["mAP50-95"] == [0.10, 0.30, 0.29] and results["precision"][1] == 0.55


def test_best_epoch_follows_ultralytics_fitness():
    assert best_epoch({"epoch": [1, 2, 3], "mAP50-95": [0.1, 0.3, 0.29]}) == 2
    assert best_epoch({"epoch": [1, 2, 3], "mAP50-95": [0.3, 0.3, 0.1]}) == 2 - 1  # first tie
    assert best_epoch({"epoch": [1, 2, 3], "mAP50-95": [0.0, 0.0, 0.0]}) == 3  # 0 never sticks
    assert best_epoch({}) is None


def test_metrics_gpu_hours_and_cost(results):
    values = training_metrics(results, TRAINING, hourly_price=3.67)
    assert values["best_epoch"] == 2 and values["best_mAP50-95"] == 0.30
    assert values["epochs_run"] == 3 and values["wall_time_s"] == 3600
    assert values["gpus"] == 8 and values["gpu_hours"] == 8.0
    # hourly_price is per GPU-hour: 8 GPU-hours cost 8 times it
    assert values["estimated_cost_usd"] == pytest.approx(8 * 3.67)
    cpu = training_metrics(results, {**TRAINING, "device": "cpu"}, hourly_price=3.67)
    assert cpu["gpu_hours"] == 0 and cpu["estimated_cost_usd"] == 0
    assert "estimated_cost_usd" not in training_metrics(results, TRAINING)  # no price


def test_report_is_self_contained_with_every_chart(results):
    metrics = training_metrics(results, TRAINING, hourly_price=3.67)
    shape = {"launcher": "TrainJob", "nodes x processes": "2 x 4 (cuda)", "batch per GPU": 8,
             "pool": "a100-40g", "precision": "amp"}
    html = render_training_report(results, TRAINING, shape, metrics,
                                  [("val <1>.jpg", b"\xff\xd8jpeg")], title="run <x>")
    assert not NETWORK.search(html) and "<script" not in html and "<link" not in html
    assert html.count("<svg") == 8 and html.count("<polyline") >= 13
    assert "not recorded" not in html  # GPU memory and images/s are there
    assert "best epoch 2" in html and '<tr class="best"><td>2</td>' in html
    assert 'src="data:image/jpeg;base64,/9hqcGVn"' in html
    assert "run &lt;x&gt;" in html and "val &lt;1&gt;.jpg" in html  # escaped
    for label in ("TrainJob", "2 x 4 (cuda)", "a100-40g", "amp", "8"):
        assert f"<td>{label}</td>" in html


def test_charts_of_nothing_say_so():
    assert "not recorded" in line_chart({"a": []}, title="t")
    assert "not recorded" in line_chart({"a": [(1, float("nan"))]}, title="t")


def test_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(1, 3, 6, whole=True) == [1, 2, 3]
    ticks = nice_ticks(0.0031, 0.0748)
    assert ticks[0] <= 0.0031 and ticks[-1] >= 0.0748 and len(ticks) <= 7
    assert nice_ticks(5, 5) == [5.0, 6.0, 7.0, 8.0, 9.0, 10.0]


def test_legend_is_drawn_over_the_lines_and_labels_have_a_halo():
    svg = line_chart({"a": [(1, 0.0), (2, 1.0)], "b": [(1, 1.0), (2, 1.0)]}, title="t",
                     marker_x=2)
    # the legend's backing and text come after every line: a line cannot cross its text
    assert svg.rindex("<polyline") < svg.index('fill="#fff" fill-opacity') < svg.index(">a</text>")
    assert 'paint-order="stroke">best</text>' in svg


def test_cpu_run_says_why_there_is_no_gpu_memory_and_names_the_lr_groups(results):
    cpu = {**TRAINING, "device": "cpu",
           "epochs": [{k: v for k, v in e.items() if k != "gpu_memory_mib"}
                      for e in TRAINING["epochs"]]}
    html = render_training_report(results, cpu, {}, training_metrics(results, cpu,
                                                                     hourly_price=3.67))
    assert "no GPU: trained on CPU" in html and "not recorded" not in html
    assert "<b>0 (CPU)</b><span>est. cost (USD)</span>" in html
    for name in ("pg0 weights", "pg1 norm weights", "pg2 biases"):
        assert f">{name}</text>" in html


def test_samples_without_boxes_are_explained(results):
    metrics = training_metrics(results, TRAINING)
    empty = render_training_report(results, TRAINING, {}, metrics,
                                   [("a.jpg: no box", b"x"), ("b.jpg: no box", b"y")])
    assert "No box reaches confidence 0.25" in empty and "a.jpg: no box" in empty
    some = render_training_report(results, TRAINING, {}, metrics,
                                  [("a.jpg: 2 boxes", b"x"), ("b.jpg: no box", b"y")])
    assert "No box reaches" not in some


def test_wall_time_adds_up_the_processes_of_a_resumed_run():
    def training(*epochs):
        return {"epochs": [{"epoch": e, "seconds": 100.0} for e in epochs]}

    # one process: its last time
    assert wall_time({"epoch": [1, 2, 3], "time": [1200, 2400, 3600]}, training(1, 2, 3)) == 3600
    # resumed at epoch 3, whose process counted from 0 again: 2400 + 900 (max would say 2400)
    assert wall_time({"epoch": [1, 2, 3], "time": [1200, 2400, 900]}, training(3)) == 3300
    # ... even when the resumed process ran longer than the first (the time does not go down)
    assert wall_time({"epoch": [1, 2, 3], "time": [500, 1000, 1100]}, training(3)) == 2100
    # resumed twice: the earlier restart shows where the time goes down
    assert wall_time({"epoch": [1, 2, 3, 4], "time": [500, 1000, 600, 700]},
                     training(4)) == 2300
    # no time column: the worker's own seconds per epoch
    assert wall_time({"epoch": [1, 2]}, training(1, 2)) == 200
    assert wall_time({}, {}) == 0
    results = {"epoch": [1, 2, 3], "time": [1200, 2400, 900], "mAP50-95": [0.1, 0.2, 0.3],
               "mAP50": [0.2, 0.3, 0.4]}
    resumed = {**TRAINING, "epochs": [{"epoch": 3, "seconds": 800, "images_per_s": 10.0}]}
    values = training_metrics(results, resumed, hourly_price=1.0)
    assert values["wall_time_s"] == 3300 and values["gpu_hours"] == round(3300 / 3600 * 8, 4)
