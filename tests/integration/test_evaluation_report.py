"""The evaluation report fits the Kubeflow UI's Markdown viewer (400,000 characters) with 80
classes: ultralytics' real plots of coco8 (80 class names), downscaled to JPEG."""

from __future__ import annotations

import re

import pytest

from kfp_yolo.components.evaluate import EvalResult, evaluate
from kfp_yolo.components.reports.evaluation import render_report
from kfp_yolo.components.reports.media import MARKDOWN_LIMIT

pytestmark = pytest.mark.timeout(600)


def test_80_class_report_fits_the_ui_with_its_plots(coco8, tmp_path):
    import yaml

    names = yaml.safe_load((coco8 / "data.yaml").read_text())["names"]
    assert len(names) == 80
    # An untrained yolov5n: ultralytics still draws the 80 x 80 confusion matrix and PR curve.
    result = evaluate("yolov5n.yaml", coco8 / "data.yaml", imgsz=64, out_dir=tmp_path / "plots")
    assert len(result.plots) >= 2
    row = {"precision": 0.5, "recall": 0.5, "mAP50": 0.5, "mAP50-95": 0.25}
    result.per_class = {name: dict(row) for name in names.values()}  # every class has a row
    report = render_report(result, min_map50_95=0.5, passed=False)
    print(f"80-class evaluation report: {len(report)} characters")
    assert len(report) < MARKDOWN_LIMIT
    assert len(re.findall(r"!\[[^\]]*\]\(data:image/jpeg;base64,", report)) == len(result.plots)
    assert report.count("\n| ") >= 80 + 6
    # each plot says what it shows (an untrained model's prediction batch has no box at all)
    assert "**Precision-recall curve** per class" in report
    assert report.count("\n**") >= len(result.plots)


def test_plots_too_large_for_any_size_are_left_out_with_a_note(tmp_path):
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(noise).save(path)
    plots = [str(path)] * 60  # incompressible: no JPEG size fits sixty of them
    result = EvalResult(map50_95=0.6, map50=0.8, precision=0.7, recall=0.6, plots=plots[:2])
    report = render_report(result, min_map50_95=0.5, passed=True)
    assert len(report) < MARKDOWN_LIMIT and report.count("data:image/jpeg") == 2
    assert report.count("**noise**\n\n![noise](data:image/jpeg") == 2  # unknown plots: their name
    result.plots = plots
    report = render_report(result, min_map50_95=0.5, passed=True)
    assert len(report) < MARKDOWN_LIMIT and "data:image" not in report
    assert "do not fit the Kubeflow UI's 400,000 characters" in report
