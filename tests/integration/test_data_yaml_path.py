"""data.yaml's `path:` is read as ultralytics reads it (the dataset's root), never ignored; a
mostly-background dataset is named in the report's warnings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from kfp_yolo.components.data.prepare import check_dataset, prepare_dataset
from kfp_yolo.components.data.synth import SynthSpec, synthesize
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.reports.dataset import render_report


def _nested(root: Path, path: object) -> Path:
    """The synthetic shapes under root/shapes, with data.yaml at root saying `path: path`."""
    synthesize(root / "shapes", SynthSpec(images=8, imgsz=48, seed=1))
    data = yaml.safe_load((root / "shapes" / "data.yaml").read_text())
    (root / "shapes" / "data.yaml").unlink()
    data.update({"path": path, "train": "images/train", "val": "images/val"})
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root


def test_a_path_naming_a_folder_of_the_dataset_is_its_root(tmp_path):
    checked = check_dataset(str(_nested(tmp_path / "d", "shapes")))
    assert checked["stats"]["images"] == 8
    assert not [w for w in checked["warnings"] if "path:" in w]


def test_without_the_path_the_same_yaml_names_no_folder(tmp_path):
    root = _nested(tmp_path / "d", "shapes")
    data = yaml.safe_load((root / "data.yaml").read_text())
    del data["path"]
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=r"train: 'images/train' is not a folder of the dataset"):
        check_dataset(str(root))


@pytest.mark.parametrize("path", ["../datasets/coco8", "/data/old/place"])
def test_a_path_outside_the_copy_reads_the_yaml_folder(tmp_path, path):
    root = tmp_path / "d"
    synthesize(root, SynthSpec(images=8, imgsz=48, seed=1))
    data = yaml.safe_load((root / "data.yaml").read_text())
    data.update({"path": path, "train": "images/train", "val": "images/val"})
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    checked = check_dataset(str(root))
    assert checked["stats"]["images"] == 8
    warned = [w for w in checked["warnings"] if "path:" in w]
    # an absolute path is where the dataset was: the usual case, no warning
    assert bool(warned) == (not path.startswith("/")), checked["warnings"]


def test_a_path_that_is_not_a_name_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"path: \[1, 2\] is not a folder name"):
        check_dataset(str(_nested(tmp_path / "d", [1, 2])))


def test_a_mostly_background_dataset_is_warned_about(tmp_path):
    root = tmp_path / "d"
    synthesize(root, SynthSpec(images=12, imgsz=48, seed=1))
    labels = sorted((root / "labels" / "train").glob("*.txt"))
    for label in labels[: len(labels) - 2]:  # all but two training images lose their boxes
        label.write_text("")
    prepared = prepare_dataset(str(root), tmp_path / "out")
    report = render_report(prepared)
    assert "have no boxes: a detector trained mostly on background" in report
    shutil.rmtree(tmp_path / "out")
    healthy = tmp_path / "h"
    synthesize(healthy, SynthSpec(images=12, imgsz=48, seed=1))
    assert "mostly on background" not in render_report(prepare_dataset(str(healthy),
                                                                       tmp_path / "out"))
