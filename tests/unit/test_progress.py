"""Long local work shows progress on stderr (issue 18): a line every few seconds, nothing for
work that ends sooner, a last line when it ends."""

from __future__ import annotations

import io
import time

from kfp_yolo.components import progress as progress_module
from kfp_yolo.components.data.synth import SynthSpec, synthesize
from kfp_yolo.components.progress import Progress
from kfp_yolo.components.storage.transfer import Transfer


def test_quick_work_says_nothing():
    out = io.StringIO()
    with Progress("work", 10, "items", every_s=60, stream=out) as progress:
        for _ in range(10):
            progress.advance()
    assert out.getvalue() == ""


def test_long_work_reports_lines_and_its_end():
    out = io.StringIO()
    with Progress("dataset check", 4, "images", every_s=0, stream=out) as progress:
        for _ in range(4):
            progress.advance()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("dataset check: 1/4 images (25%), ")
    assert "s left" in lines[0]
    assert lines[-1].startswith("dataset check: 4/4 images (100%) in ")


def test_synth_shows_progress_on_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "EVERY_S", 0.0)
    synthesize(tmp_path / "ds", SynthSpec(images=6, imgsz=32))
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("synthetic dataset: 1/6 images (16%)")
    assert err[-1].startswith("synthetic dataset: 6/6 images (100%) in ")


def test_a_transfer_without_a_terminal_writes_lines_once_listed(monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "EVERY_S", 0.01)
    with Transfer("upload s3://b/p", enabled=None) as transfer:
        time.sleep(0.1)  # listing: nothing yet
        assert capsys.readouterr().err == ""
        transfer.plan(2, 2_000_000)
        transfer.moved(1_000_000)
        time.sleep(0.1)
    err = capsys.readouterr().err.splitlines()
    assert err and err[0].startswith("upload s3://b/p: 0/2 files, 1.0/2.0 MB")
    assert "\r" not in "".join(err)
    with Transfer("upload s3://b/p", enabled=False) as transfer:  # asked for silence
        transfer.plan(1, 1)
        time.sleep(0.05)
    assert capsys.readouterr().err == ""


def test_dataset_convert_shows_progress_on_stderr(tmp_path, monkeypatch, capsys):
    import json

    from PIL import Image

    from kfp_yolo.components.data.formats import convert

    monkeypatch.setattr(progress_module, "EVERY_S", 0.0)
    images = [{"id": i, "file_name": f"{i}.png", "width": 40, "height": 30} for i in range(1, 4)]
    (tmp_path / "src" / "images").mkdir(parents=True)
    for image in images:
        Image.new("RGB", (40, 30)).save(tmp_path / "src" / "images" / image["file_name"])
    (tmp_path / "src" / "annotations").mkdir()
    (tmp_path / "src" / "annotations" / "instances_default.json").write_text(json.dumps({
        "categories": [{"id": 1, "name": "box"}], "images": images,
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 10, 10]}
                        for i in range(1, 4)]}))
    convert(tmp_path / "src", tmp_path / "out")
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("dataset convert: 1/3 images (33%)")
    assert err[-1].startswith("dataset convert: 3/3 images (100%) in ")
