"""The throughput history is untrusted data (issue #26): hostile records are counted and named,
never used, and a shape's figure is the median of its newest records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from planner_helpers import plan_json

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.planner.history import (
    MAX_IMAGES_PER_S_PER_GPU,
    load_history,
    nearest,
    record,
    write_record,
)
from kfp_yolo.pipelines.cli import main as cli_main

SHAPE = dict(model="yolov5n.yaml", imgsz=320, batch_per_gpu=32, precision="amp",
             world_size=1, workers=3)
ARGV = ("--model", "yolov5n.yaml", "--imgsz", "320", "--batch", "32", "--precision", "amp",
        "--objective", "time", "--train-images", "20000", "--epochs", "10")


def _good(images_per_s: float, gpu: str = "Tesla-T4") -> dict:
    return record(gpu_product=gpu, **SHAPE, images_per_s=images_per_s, source="t")


def _hostile(folder: Path) -> dict[str, str]:
    """Writes one object per way a record can be wrong; {name: what it is}."""
    base = {**_good(40.0), "gpu_product": "Tesla-T4"}
    bad = {
        "z1-huge.json": json.dumps({**base, "images_per_s": 1e300}),
        "z2-negative.json": json.dumps({**base, "images_per_s": -5}),
        "z3-string.json": json.dumps({**base, "images_per_s": "9999"}),
        "z4-bool.json": json.dumps({**base, "images_per_s": True}),
        "z5-zero-gpus.json": json.dumps({**base, "world_size": 0}),
        "z6-missing.json": json.dumps({k: v for k, v in base.items() if k != "imgsz"}),
        "z7-precision.json": json.dumps({**base, "precision": "int4"}),
        "z8-not-json.json": "{images_per_s: 1e300",
        "z9-foreign.json": json.dumps(["a", "list"]),
    }
    for name, text in bad.items():
        (folder / name).write_text(text)
    return bad


def test_records_above_the_physical_bound_are_refused():
    assert _good(MAX_IMAGES_PER_S_PER_GPU)["images_per_s"] == MAX_IMAGES_PER_S_PER_GPU
    with pytest.raises(UserError, match="above the physical bound of 20,000 for 1 GPU"):
        _good(MAX_IMAGES_PER_S_PER_GPU + 1)
    # the bound is per GPU: eight GPUs may do eight times as much
    assert record(gpu_product="Tesla-T4", **{**SHAPE, "world_size": 8},
                  images_per_s=8 * 15_000, source="t")["images_per_s"] == 120_000


def test_a_shape_is_planned_from_the_median_of_its_newest_records():
    records = [_good(500.0), _good(100.0), _good(110.0), _good(5_000.0), _good(105.0)]
    point = nearest(records, gpu_product="Tesla T4", **SHAPE)
    assert point["images_per_s"] == 110.0 and point["records"] == 5
    # the newest MEDIAN_OF (5) only: an old outlier ages out
    point = nearest([_good(9_000.0), *records[1:], _good(120.0)], gpu_product="Tesla T4",
                    **SHAPE)
    assert point["images_per_s"] == 110.0


def test_a_history_with_hostile_records_plans_as_without_them(tmp_path, capsys, probe_cache):
    history = tmp_path / "_throughput"
    write_record(str(history), _good(50.0))
    write_record(str(history), _good(400.0, gpu="NVIDIA-A10G"))
    clean = plan_json(capsys, *ARGV, "--history", str(history))
    assert clean["history_records"] == 2 and clean["history_ignored"] == []

    bad = _hostile(history)
    loaded = load_history(str(history))
    assert len(loaded.records) == 2 and sorted(loaded.ignored) == sorted(bad)
    assert "above the physical bound" in loaded.ignored["z1-huge.json"]
    assert loaded.ignored["z8-not-json.json"] == "not JSON"

    poisoned = plan_json(capsys, *ARGV, "--history", str(history))
    assert poisoned["pool"] == clean["pool"] and poisoned["pools"] == clean["pools"]
    assert poisoned["history_records"] == 2
    assert {i["name"] for i in poisoned["history_ignored"]} == set(bad)
    assert max(len(f"{row['images_per_s']}") for row in poisoned["pools"]
               if row["images_per_s"]) < 12  # no 300-digit figure anywhere

    assert cli_main(["plan", *ARGV, "--history", str(history)]) == 0
    table = capsys.readouterr().out
    assert f"2 record(s); {len(bad)} ignored: z1-huge.json (images_per_s 1e+300 is above" in table
