"""Helpers of the planner tests (unit and integration lanes).

Not in conftest.py: tests/integration/conftest.py is also imported as `conftest`, so
`from conftest import ...` breaks when both lanes are collected in one session (`make test`).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def v5l_peak(cache: Path, batch: int, precision: str, imgsz: int = 640, **kw):
    """The planner's estimate for yolov5l.yaml, from the probe cache."""
    from kfp_yolo.components.planner import estimate_peak

    return estimate_peak("yolov5l.yaml", imgsz=imgsz, batch=batch, precision=precision,
                         cache_dir=cache, **kw)


def plan_json(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    """`kfp-yolo plan ... --json`, in process, parsed."""
    import json

    from kfp_yolo.pipelines.cli import main as cli_main

    assert cli_main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)
