"""The synthetic shapes dataset: deterministic, well-formed, more than one class."""

import hashlib
from pathlib import Path

import yaml

from kfp_yolo.components.synth import CLASS_NAMES, SynthSpec, synthesize


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    spec = SynthSpec(images=12, imgsz=64, seed=3)
    synthesize(tmp_path / "a", spec)
    synthesize(tmp_path / "b", spec)
    synthesize(tmp_path / "c", SynthSpec(images=12, imgsz=64, seed=4))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_layout_labels_and_classes(tmp_path):
    data_yaml = synthesize(tmp_path, SynthSpec(images=40, imgsz=64, seed=0))
    data = yaml.safe_load(data_yaml.read_text())
    assert list(data["names"].values()) == list(CLASS_NAMES)
    train = sorted((tmp_path / "images" / "train").glob("*.png"))
    val = sorted((tmp_path / "images" / "val").glob("*.png"))
    assert len(train) + len(val) == 40 and len(val) == 8
    classes, counts = set(), []
    for image in train + val:
        split = image.parent.name
        rows = (tmp_path / "labels" / split / f"{image.stem}.txt").read_text().split("\n")
        rows = [r.split() for r in rows if r.strip()]
        counts.append(len(rows))
        for cls, *coords in rows:
            classes.add(int(cls))
            x, y, w, h = map(float, coords)
            assert 0 < w <= 1 and 0 < h <= 1
            assert 0 <= x - w / 2 + 1e-6 and x + w / 2 <= 1 + 1e-6
            assert 0 <= y - h / 2 + 1e-6 and y + h / 2 <= 1 + 1e-6
    assert classes == set(range(len(CLASS_NAMES)))
    assert len(set(counts)) > 1  # object counts vary per image


def test_cli_synth_writes_dataset(tmp_path):
    from kfp_yolo.pipelines.cli import main

    assert main(["dataset", "synth", str(tmp_path / "d"), "--images", "5", "--imgsz", "64"]) == 0
    assert len(list((tmp_path / "d" / "images").rglob("*.png"))) == 5
