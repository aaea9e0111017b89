"""Exports as users have them (COCO JSON in four tools' layouts, NDJSON, Pascal VOC), written
from one YOLO dataset: `dataset check --json`, `dataset convert`, the prepare step (local and
S3) and a `kfp-yolo run` see the same dataset."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from exports import WRITERS, read_yolo

from kfp_yolo.components import storage
from kfp_yolo.components.data.prepare import prepare_dataset
from kfp_yolo.components.data.synth import SynthSpec, synthesize
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.reports.dataset import render_report
from kfp_yolo.pipelines.cli import main

SPLIT = {"cvat", "coco-release", "roboflow", "ndjson", "voc"}
"""Exports that carry the YOLO dataset's own train/val split (the others are split by
val_fraction)."""


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def _check_json(path: Path, capsys) -> dict:
    assert main(["dataset", "check", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _same_dataset(got: dict, want: dict, *, same_split: bool) -> None:
    """Images, boxes, names and instances per class equal (and the split when carried)."""
    assert got["names"] == want["names"]
    g, w = got["stats"], want["stats"]
    assert (g["images"], g["classes"], g["instances"]) == (w["images"], w["classes"],
                                                          w["instances"])
    assert g["background_images"] == w["background_images"] or not same_split
    for key in ("count", "width", "height", "sizes"):
        assert g["boxes"][key] == w["boxes"][key], key
    if same_split:
        assert g["instances_per_split"] == w["instances_per_split"]
        assert (g["train_images"], g["val_images"]) == (w["train_images"], w["val_images"])


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, list[str], list]:
    root = tmp_path_factory.mktemp("yolo") / "shapes"
    synthesize(root, SynthSpec(images=10, imgsz=48, seed=3))
    names, images = read_yolo(root)
    return root, names, images


@pytest.mark.parametrize("tool", sorted(WRITERS))
def test_check_json_sees_the_yolo_dataset_in_every_export(shapes, tool, tmp_path, capsys):
    root, names, images = shapes
    want = _check_json(root, capsys)
    export = WRITERS[tool](tmp_path / tool, names, images)
    before = _digest(export)
    got = _check_json(export, capsys)
    _same_dataset(got, want, same_split=tool in SPLIT)
    assert got["conversion"]["format"] == ("ndjson" if tool == "ndjson" else
                                           "voc" if tool == "voc" else "coco")
    assert want["conversion"] is None
    assert _digest(export) == before


def test_convert_writes_what_check_reads_and_ultralytics_trains_on(shapes, tmp_path, capsys):
    root, names, images = shapes
    export = WRITERS["coco-release"](tmp_path / "coco", names, images)
    assert main(["dataset", "convert", str(export), str(tmp_path / "yolo")]) == 0
    out = capsys.readouterr().out
    assert "coco export (coco) converted to" in out and "train and val from the export" in out
    data = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(names))
    assert data["source"]["source_class_ids"] == {0: 2, 1: 5, 2: 9}
    want = _check_json(root, capsys)
    _same_dataset(_check_json(tmp_path / "yolo", capsys), want, same_split=True)
    # the summary says how much was converted
    assert f"{want['stats']['images']} images, {want['stats']['boxes']['count']} boxes, 3 classes" \
        in out
    # the labels are byte-for-byte what a YOLO dataset holds, up to the 6th decimal
    ours = (tmp_path / "yolo" / "labels" / "train").iterdir()
    for label in ours:
        original = root / "labels" / "train" / label.name
        for a, b in zip(label.read_text().split(), original.read_text().split(), strict=True):
            assert float(a) == pytest.approx(float(b), abs=2e-6)
    # the destination is taken: refused, nothing written
    assert main(["dataset", "convert", str(export), str(tmp_path / "yolo")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_prepare_keeps_the_mapping_in_data_yaml_and_report(shapes, tmp_path):
    root, names, images = shapes
    export = WRITERS["roboflow"](tmp_path / "rf", names, images)
    before = _digest(export)
    prepared = prepare_dataset(str(export), tmp_path / "prepared")
    # a local export is converted where it lies: the prepared images are its own files, linked
    inodes = {p.stat().st_ino for p in export.rglob("*") if p.suffix in (".jpg", ".png")}
    linked = {p.stat().st_ino for p in (tmp_path / "prepared" / "images").rglob("*.*")}
    assert linked and linked <= inodes and _digest(export) == before
    data = yaml.safe_load(prepared.data_yaml.read_text())
    assert data["names"] == dict(enumerate(names)) and data["nc"] == 3
    assert data["source"]["layout"] == "roboflow"
    assert data["source"]["source_class_ids"] == {0: 1, 1: 2, 2: 3}
    report = render_report(prepared)
    assert "## Source" in report and "| 0 | circle | 1 |" in report
    assert "`valid/_annotations.coco.json`" in report
    assert any("Roboflow's project category" in w for w in prepared.warnings)
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == [
        "data.yaml", "images", "labels"]  # scratch folders removed
    reference = prepare_dataset(str(root), tmp_path / "reference")
    assert prepared.stats == reference.stats


def test_the_dataset_artifact_carries_the_conversion(shapes, tmp_path):
    from types import SimpleNamespace

    from kfp_yolo.components.steps import prepare_dataset_component

    root, names, images = shapes
    export = WRITERS["roboflow"](tmp_path / "rf", names, images)
    dataset = SimpleNamespace(path=str(tmp_path / "dataset"), metadata={})
    report = SimpleNamespace(path=str(tmp_path / "report.md"))
    prepare_dataset_component(str(export), 0, 0.2, dataset, report)
    meta = dataset.metadata
    assert (meta["source_format"], meta["source_layout"], meta["source_splits"]) == (
        "coco", "roboflow", "export")
    assert meta["source_class_ids"] == {"0": 1, "1": 2, "2": 3}  # JSON keys, as the UI shows
    assert isinstance(meta["source_counts"], dict) and meta["images"] == 10
    json.dumps(meta)  # KFP stores it as JSON
    yolo = SimpleNamespace(path=str(tmp_path / "yolo"), metadata={})
    prepare_dataset_component(str(root), 0, 0.2, yolo, report)
    assert yolo.metadata["source_format"] == "yolo" and "source_layout" not in yolo.metadata


def test_export_in_s3_prepares_and_converts_like_the_local_one(shapes, s3_env, s3_bucket,
                                                               tmp_path, capsys):
    _, names, images = shapes
    export = WRITERS["cvat"](tmp_path / "cvat", names, images)
    uri = f"minio://{s3_bucket}/exports/cvat"
    storage.upload(export, f"s3://{s3_bucket}/exports/cvat")
    local = prepare_dataset(str(export), tmp_path / "local")
    remote = prepare_dataset(uri, tmp_path / "remote")
    assert remote.stats == local.stats and remote.content_hash == local.content_hash
    assert remote.conversion == local.conversion and remote.conversion["layout"] == "cvat"
    assert main(["dataset", "convert", uri, str(tmp_path / "converted")]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted", "cvat", "local", "remote"]
    _same_dataset(_check_json(tmp_path / "converted", capsys),
                  _check_json(export, capsys), same_split=True)


def test_coco8_as_a_cvat_export(coco8, tmp_path, capsys):
    names, images = read_yolo(coco8)
    export = WRITERS["cvat"](tmp_path / "cvat", names, images)
    _same_dataset(_check_json(export, capsys), _check_json(coco8, capsys), same_split=True)


def test_the_dag_trains_on_a_coco_export(tmp_path):
    source = tmp_path / "shapes"
    synthesize(source, SynthSpec(images=24, imgsz=64, seed=0))
    names, images = read_yolo(source)
    export = WRITERS["label-studio"](tmp_path / "label-studio", names, images)
    workdir = tmp_path / "run"
    args = [sys.executable, "-m", "kfp_yolo.pipelines.cli", "run", "--workdir", str(workdir)]
    for item in (f"dataset_uri={export}", "epochs=1", "imgsz=64", "batch=8", "workers=0",
                 "min_map50_95=0", f"registry_uri={tmp_path / 'registry'}"):
        args += ["--set", item]
    result = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["steps"]["train"] == "succeeded"
    prepared = yaml.safe_load((Path(summary["artifacts"]["dataset"]) / "data.yaml").read_text())
    assert prepared["source"]["layout"] == "label-studio"
    assert prepared["names"] == dict(enumerate(names))


def test_what_ultralytics_convert_coco_would_have_done(shapes, tmp_path):
    """The README's reasons, pinned: ids taken as category_id - 1 (Label Studio's 0 becomes
    -1), the 91-to-80 table by default (id 0 crashes it); labels only, no images."""
    from ultralytics.data.converter import convert_coco

    _, names, images = shapes
    export = WRITERS["label-studio"](tmp_path / "ls", names, images)
    (export / "annotations").mkdir()
    (export / "result.json").rename(export / "annotations" / "instances_default.json")
    convert_coco(str(export / "annotations"), str(tmp_path / "plain"), cls91to80=False)
    classes = {line.split()[0] for p in (tmp_path / "plain").rglob("*.txt")
               for line in p.read_text().splitlines()}
    assert "-1" in classes  # category 0: a class id no dataset has
    assert not [p for p in (tmp_path / "plain").rglob("*") if p.suffix == ".png"]
    with pytest.raises(TypeError):  # the default 91-to-80 table has no class for id 0
        convert_coco(str(export / "annotations"), str(tmp_path / "mapped"))


def test_a_broken_image_in_an_export_is_named_as_the_export_has_it(shapes, tmp_path, capsys):
    """The checks run on the converted copy; their sentence names the export's own file."""
    root, names, images = shapes
    export = WRITERS["roboflow"](tmp_path / "rf", names, images)
    broken = next((export / "valid").glob("*.png"))
    broken.write_bytes(b"not an image")
    assert main(["dataset", "check", str(export)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"valid/{broken.name}: not an image Pillow can read" in err, err
    assert "images/val" not in err and err.endswith(f"(files of the export {export}).")
    with pytest.raises(UserError, match=f"valid/{broken.name}: not an image"):
        prepare_dataset(str(export), tmp_path / "prepared")
