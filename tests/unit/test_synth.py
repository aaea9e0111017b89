"""The synthetic shapes dataset: deterministic, well-formed, more than one class."""

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from kfp_yolo.components.data.synth import CLASS_NAMES, SynthSpec, synthesize


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


def _run(capsys, *argv: str) -> tuple[int, str]:
    from kfp_yolo.pipelines.cli import main

    code = main(["dataset", "synth", *argv])
    return code, capsys.readouterr().err


def test_cli_synth_refuses_a_non_empty_folder_and_replaces_only_when_told(tmp_path, capsys):
    dest = tmp_path / "coco"
    (dest / "images").mkdir(parents=True)
    (dest / "images" / "mine.jpg").write_bytes(b"not ours")
    (dest / "data.yaml").write_text("names: [person, bicycle]\n")

    code, err = _run(capsys, str(dest), "--images", "4", "--imgsz", "32")
    assert code == 2
    assert err == (f"kfp-yolo: error: {dest} is not empty; give a new folder, or --replace to "
                   "replace the dataset there.\n")
    assert (dest / "data.yaml").read_text() == "names: [person, bicycle]\n"  # untouched

    code, err = _run(capsys, str(dest), "--images", "4", "--imgsz", "32", "--replace")
    assert code == 0, err
    assert not (dest / "images" / "mine.jpg").exists()  # replaced, not mixed in
    assert list(yaml.safe_load((dest / "data.yaml").read_text())["names"].values()) == list(
        CLASS_NAMES)
    assert len(list((dest / "images").rglob("*.png"))) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco"]  # no partial or old folders


def test_cli_synth_into_an_empty_folder_and_never_over_a_non_dataset(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(capsys, str(empty), "--images", "2", "--imgsz", "32")[0] == 0
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("precious")
    code, err = _run(capsys, str(home), "--images", "2", "--imgsz", "32", "--replace")
    assert code == 2 and "holds files but no dataset" in err
    assert (home / "notes.txt").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    code, err = _run(capsys, str(tmp_path / "file"), "--images", "2", "--imgsz", "32")
    assert code == 2 and "is a file; give a folder" in err


@pytest.mark.parametrize("argv, fragment", [
    (["--images", "0"], "images=0 is out of range; give an integer from 2 to 100000"),
    (["--images", "1"], "images=1 is out of range"),
    (["--imgsz", "5"], "imgsz=5 is out of range; give an integer from 32 to 4096"),
    (["--seed", "-1"], "seed=-1 is out of range"),
])
def test_cli_synth_refuses_what_its_own_check_would(tmp_path, capsys, argv, fragment):
    code, err = _run(capsys, str(tmp_path / "d"), *argv)
    assert code == 2 and fragment in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()


def test_synthetic_uri_settings_are_checked():
    from kfp_yolo.components.data.synth import synthetic_spec
    from kfp_yolo.components.errors import UserError

    assert synthetic_spec("synthetic://shapes?images=8&imgsz=64") == SynthSpec(images=8,
                                                                                 imgsz=64)
    for uri, fragment in [("synthetic://shapes?images=0", "images=0 is out of range"),
                          ("synthetic://shapes?colour=3", "unknown setting 'colour'"),
                          ("synthetic://shapes?images=x", "settings are integers"),
                          ("synthetic://circles", "the synthetic dataset is synthetic://shapes")]:
        with pytest.raises(UserError, match=re.escape(fragment)):
            synthetic_spec(uri)
