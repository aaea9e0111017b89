"""data.prepare: validation that fails fast, splits, statistics, hash, S3 and coco8."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image

from kfp_yolo.components import storage
from kfp_yolo.components.data.layout import IMAGE_SUFFIXES, label_path
from kfp_yolo.components.data.prepare import check_dataset, prepare_dataset
from kfp_yolo.components.data.synth import SynthSpec, synthesize
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.reports.dataset import render_report
from kfp_yolo.components.steps import prepare_dataset_component
from kfp_yolo.pipelines.cli import main

NAMES = ["circle", "square", "triangle"]


def _digest(root: Path) -> str:
    """Names and bytes of every file under root: proves the source was not touched."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _synth(root: Path, images: int = 8) -> Path:
    """The synthetic shapes: 2 val and 6 train images of 48 px, 3 classes, PNG."""
    synthesize(root, SynthSpec(images=images, imgsz=48, seed=1))
    return root


def _image(path: Path, size: int = 24, colour: int = 90, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (colour, colour // 2, 30)).save(path, fmt)


def _flat(root: Path, labels: dict[str, list[str]], names: list[str] = NAMES) -> Path:
    """images/ and labels/ without splits; labels maps image stem to rows ([] = background)."""
    for index, (stem, rows) in enumerate(labels.items()):
        _image(root / "images" / f"{stem}.png", colour=index * 7 % 256)
        if rows:
            (root / "labels").mkdir(parents=True, exist_ok=True)
            (root / "labels" / f"{stem}.txt").write_text("\n".join(rows) + "\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"names": names}))
    return root


def _label(root: Path, stem: str = "shape_00003") -> Path:
    return root / "labels" / "train" / f"{stem}.txt"


# --------------------------------------------------------------------------------- bad inputs


def _corrupt_png(root: Path) -> None:
    path = root / "images" / "train" / "shape_00003.png"
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # damages the compressed pixels
    path.write_bytes(bytes(data))


def _truncated_jpeg(root: Path) -> None:
    path = root / "images" / "train" / "photo.jpg"
    _image(path, size=64)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _not_an_image(root: Path) -> None:
    (root / "images" / "train" / "fake.jpg").write_text("this is not a JPEG\n")


def _rows(*rows: str):
    def mutate(root: Path) -> None:
        _label(root).write_text("\n".join(rows) + "\n")
    return mutate


def _orphan_label(root: Path) -> None:
    _label(root, "ghost").write_text("0 0.5 0.5 0.1 0.1\n")


def _empty(root: Path) -> None:
    for folder in ("images", "labels"):
        for path in (root / folder).rglob("*.*"):
            path.unlink()


def _yaml(**changes):
    def mutate(root: Path) -> None:
        data = yaml.safe_load((root / "data.yaml").read_text())
        data.update(changes)
        (root / "data.yaml").write_text(yaml.safe_dump({k: v for k, v in data.items()
                                                        if v is not None}))
    return mutate


def _no_names_anywhere(root: Path) -> None:
    (root / "data.yaml").unlink()


def _link_loop(root: Path) -> None:
    (root / "images" / "train" / "loop").symlink_to("..")


def _broken_link(root: Path) -> None:
    (root / "images" / "train" / "gone.png").symlink_to(root / "nowhere.png")


def _labels_under_images(root: Path) -> None:
    """Every label file beside its image under images/, where ultralytics never looks."""
    for label in sorted((root / "labels").rglob("*.txt")):
        label.rename(root / "images" / label.parent.name / label.name)
    shutil.rmtree(root / "labels")


def _copy_of_train_in_val(root: Path) -> None:
    source = root / "images" / "train" / "shape_00004.png"
    (root / "images" / "val" / "copy.png").write_bytes(source.read_bytes())


def _train_folder_as_val(root: Path) -> None:
    _yaml(train="images/train", val="images/train")(root)


BAD_INPUTS = {
    "symlink loop": (_link_loop, "images/train/loop: symbolic link loop"),
    "broken symlink": (_broken_link, "images/train/gone.png: broken symbolic link"),
    "labels under images": (
        _labels_under_images,
        "the dataset has no boxes: its 8 .txt files sit among the images (e.g. "
        "images/train/shape_00002.txt), where ultralytics does not read labels; labels go in "
        "labels/ mirroring images/"),
    "same bytes in train and val": (
        _copy_of_train_in_val,
        "images/train/shape_00004.png (train) and images/val/copy.png (val) are the same image"),
    "same folder for train and val": (
        _train_folder_as_val, "images/train/shape_00002.png is in both train and val"),
    "duplicate names": (_yaml(names=["circle", "square", "circle"]),
                        "data.yaml: classes 0 and 2 are both named 'circle'"),
    "empty name": (_yaml(names=["circle", " ", "triangle"]),
                   "data.yaml: names: class 1 is ' '; every class needs a name"),
    "name that is a list": (_yaml(names=["circle", ["a"], "triangle"]),
                            "data.yaml: names: class 1 is ['a']"),
    "NUL in a folder name": (_yaml(train="images/\0train"),
                             "data.yaml: train: 'images/\\x00train' is not a folder"),
    "overlapping train folders": (_yaml(train=["images/train", "images/train"]),
                                  "data.yaml: train: lists folders that overlap"),
    "corrupt image": (_corrupt_png, "images/train/shape_00003.png: corrupt or truncated image"),
    "truncated jpeg": (_truncated_jpeg, "images/train/photo.jpg: corrupt or truncated image"),
    "not an image": (_not_an_image, "images/train/fake.jpg: not an image Pillow can read"),
    "class id outside names": (
        _rows("0 0.5 0.5 0.2 0.2", "7 0.5 0.5 0.2 0.2"),
        "labels/train/shape_00003.txt line 2: class id 7 is outside the 3 names in data.yaml; "
        "fix the label or add the class."),
    "coordinate above 1": (_rows("1 1.5 0.5 0.2 0.2"),
                           "labels/train/shape_00003.txt line 1: coordinate 1.5 is outside [0, 1]"),
    "coordinate below 0": (_rows("1 0.5 -0.3 0.2 0.2"),
                           "labels/train/shape_00003.txt line 1: coordinate -0.3 is outside"),
    "four columns": (_rows("1 0.5 0.5 0.2"), "labels/train/shape_00003.txt line 1: 4 values"),
    "six columns": (_rows("1 0.5 0.5 0.2 0.2 0.3"),
                    "labels/train/shape_00003.txt line 1: 6 values"),
    "polygon with half a point": (_rows("1 0.1 0.1 0.4 0.1 0.4 0.5 0.1"),
                                  "labels/train/shape_00003.txt line 1: 8 values"),
    "non-numeric": (_rows("0 0.5 0.5 0.2 0.2", "", "2 0.5 abc 0.2 0.2"),
                    "labels/train/shape_00003.txt line 3: 'abc' is not a number"),
    "fractional class": (_rows("1.5 0.5 0.5 0.2 0.2"),
                         "labels/train/shape_00003.txt line 1: class id '1.5' is not a whole"),
    "zero width": (_rows("1 0.5 0.5 0 0.2"),
                   "labels/train/shape_00003.txt line 1: box width 0 is not positive"),
    "negative height": (_rows("1 0.5 0.5 0.2 -0.005"),
                        "labels/train/shape_00003.txt line 1: box height -0.005 is not positive"),
    "label without image": (_orphan_label,
                            "labels/train/ghost.txt: label file without its image (no "
                            "images/train/ghost.*)"),
    "empty dataset": (_empty, "the dataset is empty: no images found under images/train"),
    "names missing": (_yaml(names=None), "data.yaml: 'names' is missing or empty"),
    "no names file": (_no_names_anywhere, "no data.yaml and no classes.txt"),
    "missing folder": (_yaml(train="images/train", val="images/nope"),
                       "data.yaml: val: 'images/nope' is not a folder of the dataset"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_the_file_and_leaves_the_source_alone(tmp_path, case):
    mutate, expected = BAD_INPUTS[case]
    root = _synth(tmp_path / "source")
    mutate(root)
    before = _digest(root)
    with pytest.raises(UserError) as info:
        check_dataset(str(root))
    assert expected in str(info.value)
    with pytest.raises(UserError, match=re.escape(expected.split(":")[0])):
        prepare_dataset(str(root), tmp_path / "out")
    assert not (tmp_path / "out" / "data.yaml").exists()
    assert not (tmp_path / "out" / ".source").exists()
    assert _digest(root) == before


def test_bad_input_exits_2_with_one_sentence(tmp_path, capsys):
    root = _synth(tmp_path / "source")
    _rows("9 0.5 0.5 0.2 0.2")(root)
    assert main(["dataset", "check", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kfp-yolo: error: labels/train/shape_00003.txt line 1: class id 9")
    assert "Traceback" not in err and err.count("\n") == 1


def test_unknown_scheme(tmp_path):
    with pytest.raises(UserError, match="unknown URI scheme 'gs'"):
        check_dataset("gs://bucket/data")
    with pytest.raises(UserError, match="val_fraction 1.5 must be between 0 and 1"):
        prepare_dataset(str(tmp_path), tmp_path / "out", val_fraction=1.5)


def test_work_folder_inside_the_dataset_is_refused(tmp_path):
    root = _synth(tmp_path / "source")
    before = _digest(root)
    with pytest.raises(UserError, match="is inside the dataset folder .* put the work folder"):
        prepare_dataset(str(root), root / "runs" / "dataset")
    assert not (root / "runs").exists()  # refused before anything was written
    assert _digest(root) == before


def test_check_reads_in_place_without_copying(tmp_path, monkeypatch):
    """The check reads the source through symbolic links and copies nothing; hard links fail
    here as on another filesystem (EXDEV), so a mirror that used them would be caught."""
    import errno
    import os

    root = _synth(tmp_path / "source")
    with open(root / "video.mp4", "wb") as video:  # an unrelated big file beside the dataset
        video.truncate(1 << 30)  # sparse: costs no disk here, 1 GiB to any copy
    copies = []

    def no_link(src, dst, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    real_copyfile = shutil.copyfile
    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(shutil, "copyfile", lambda src, dst, **kw: (
        copies.append(src), real_copyfile(src, dst, **kw))[1])

    result = check_dataset(str(root))

    assert copies == []
    assert result["stats"]["images"] == 8
    assert "video.mp4: not an image or label file; ignored." not in result["warnings"]


# ----------------------------------------------------------------------------- not errors


def test_duplicates_backgrounds_and_stray_files_are_warnings(tmp_path):
    root = _synth(tmp_path / "source")
    rows = _label(root).read_text().splitlines()
    _label(root).write_text("\n".join([rows[0], rows[0], *rows[1:], rows[0]]) + "\n")
    _label(root, "shape_00004").unlink()  # background: image without a label
    _label(root, "shape_00005").write_text("")  # background: empty label
    (root / "images" / "train" / "README.md").write_text("notes")
    (root / "images" / "train" / ".DS_Store").write_bytes(b"\0\1")
    (root / "labels" / "train" / "labels.cache").write_bytes(b"old cache")
    before = _digest(root)
    prepared = prepare_dataset(str(root), tmp_path / "out")
    warnings = "\n".join(prepared.warnings)
    dropped = "2, " + str(len(rows) + 2)
    assert f"labels/train/shape_00003.txt: duplicate rows dropped (lines {dropped})." in warnings
    assert "images/train/README.md: not an image or label file; ignored." in warnings
    assert "images/train/.DS_Store: not an image or label file; ignored." in warnings
    assert "labels/train/labels.cache: not an image or label file; ignored." in warnings
    assert prepared.stats["train_images"] == 6 and prepared.stats["val_images"] == 2
    assert prepared.stats["background_images"] == {"train": 2, "val": 0}
    written = (tmp_path / "out" / "labels" / "train" / "shape_00003.txt").read_text()
    assert written.splitlines() == rows
    assert not (tmp_path / "out" / "images" / "train" / "README.md").exists()
    assert _digest(root) == before


def test_polygon_rows_are_accepted_as_ultralytics_does(tmp_path):
    root = _synth(tmp_path / "source")
    _label(root).write_text("1 0.1 0.1 0.4 0.1 0.4 0.5 0.1 0.5\n2 0.5 0.5 0.9 0.5 0.7 0.9\n")
    result = check_dataset(str(root))
    assert result["stats"]["boxes"]["width"]["max"] >= 0.4


def test_repairable_jpeg_is_repaired_in_the_copy_only(tmp_path):
    """ultralytics re-saves a JPEG with bytes after its end marker; the source keeps them."""
    root = _synth(tmp_path / "source")
    photo = root / "images" / "train" / "photo.jpg"
    _image(photo, size=64)
    photo.write_bytes(photo.read_bytes() + b"\0\0garbage")
    _label(root, "photo").write_text("0 0.5 0.5 0.5 0.5\n")
    before = photo.read_bytes()
    check_dataset(str(root))  # links in a scratch folder: a repair must not write through
    assert photo.read_bytes() == before
    prepare_dataset(str(root), tmp_path / "out")
    assert photo.read_bytes() == before
    assert (tmp_path / "out" / "images" / "train" / "photo.jpg").read_bytes().endswith(b"\xff\xd9")


# ---------------------------------------------------------------------- split, stats, hash


def _stratified_source(root: Path) -> Path:
    labels = {f"common{i:02d}": ["0 0.5 0.5 0.2 0.2"] for i in range(12)}
    labels |= {f"rare{i}": ["0 0.3 0.3 0.2 0.2", "1 0.6 0.6 0.1 0.1"] for i in range(4)}
    labels |= {f"empty{i}": [] for i in range(4)}
    return _flat(root, labels)


def _val_stems(out: Path) -> set[str]:
    return {p.stem for p in (out / "images" / "val").iterdir()}


def test_split_is_seeded_stratified_and_exact(tmp_path):
    root = _stratified_source(tmp_path / "source")
    first = prepare_dataset(str(root), tmp_path / "a", seed=3, val_fraction=0.25)
    again = prepare_dataset(str(root), tmp_path / "b", seed=3, val_fraction=0.25)
    other = [prepare_dataset(str(root), tmp_path / f"s{seed}", seed=seed, val_fraction=0.25)
             for seed in (4, 5)]
    val = _val_stems(tmp_path / "a")
    assert val == _val_stems(tmp_path / "b") and first.content_hash == again.content_hash
    assert any(_val_stems(tmp_path / f"s{seed}") != val for seed in (4, 5))
    assert all(o.content_hash != first.content_hash for o in other)
    assert len(val) == 5 and first.stats["train_images"] == 15
    # Each stratum keeps its share: 1 of 4 rare, 1 of 4 background, 3 of 12 common.
    assert sum(s.startswith("rare") for s in val) == 1
    assert sum(s.startswith("empty") for s in val) == 1
    assert any("no val split" in w for w in first.warnings)


def test_classes_txt_and_roboflow_layout(tmp_path):
    root = tmp_path / "robo"
    for split in ("train", "valid"):
        for index in range(2):
            _image(root / split / "images" / f"{split}{index}.jpg", fmt="JPEG",
                   colour=40 * index + (120 if split == "train" else 0))
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
            (root / split / "labels" / f"{split}{index}.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"train": "../train/images", "val": "../valid/images", "nc": 1, "names": ["thing"]}))
    result = check_dataset(str(root))
    assert (result["stats"]["train_images"], result["stats"]["val_images"]) == (2, 2)
    flat = _flat(tmp_path / "flat", {f"i{n}": ["1 0.5 0.5 0.2 0.2"] for n in range(5)})
    (flat / "data.yaml").unlink()
    (flat / "classes.txt").write_text("a\nb\n")
    assert check_dataset(str(flat))["names"] == ["a", "b"]


def test_labels_beside_images_and_val_without_train(tmp_path):
    root = tmp_path / "beside"
    for split in ("train", "val"):
        for index in range(2):
            _image(root / "pics" / split / f"{split}{index}.png",
                   colour=40 * index + (120 if split == "train" else 0))
            (root / "pics" / split / f"{split}{index}.txt").write_text("2 0.5 0.5 0.4 0.4\n")
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"train": "pics/train", "val": "pics/val", "names": NAMES}))
    result = check_dataset(str(root))
    assert result["stats"]["instances"]["triangle"] == 4 and result["warnings"] == []
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"train": "pics/empty", "val": "pics/val", "names": NAMES}))
    (root / "pics" / "empty").mkdir()
    with pytest.raises(UserError, match="val images but no train images"):
        check_dataset(str(root))


def test_stats_hash_and_data_yaml(tmp_path):
    root = _synth(tmp_path / "source")
    moved = shutil.copytree(root, tmp_path / "elsewhere")
    prepared = prepare_dataset(str(root), tmp_path / "out")
    checked = check_dataset(f"file://{moved}")
    assert checked["content_hash"] == prepared.content_hash  # place and mtimes do not count
    rows = sum(len(p.read_text().split("\n")) - 1 for p in (root / "labels").rglob("*.txt"))
    assert sum(prepared.stats["instances"].values()) == rows == prepared.stats["boxes"]["count"]
    _label(root).write_text("0 0.5 0.5 0.3 0.3\n")
    assert check_dataset(str(root))["content_hash"] != prepared.content_hash
    data = yaml.safe_load(prepared.data_yaml.read_text())
    assert data["path"] == str((tmp_path / "out").resolve()) and Path(data["path"]).is_absolute()
    assert data["names"] == dict(enumerate(NAMES)) and data["nc"] == 3
    report = render_report(prepared)
    assert "| images | 6 | 2 |" in report and prepared.content_hash in report
    assert "| circle |" in report and "## Boxes" in report
    with pytest.raises(UserError, match="already holds a dataset"):
        prepare_dataset(str(root), tmp_path / "out")


def test_ultralytics_reads_the_prepared_dataset(tmp_path):
    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics.data.utils import check_det_dataset

    prepared = prepare_dataset(str(_synth(tmp_path / "source")), tmp_path / "out")
    data = check_det_dataset(str(prepared.data_yaml), autodownload=False)
    assert data["nc"] == 3 and Path(data["train"]).is_dir() and Path(data["val"]).is_dir()


def test_same_rules_as_ultralytics():
    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics.data.utils import IMG_FORMATS, img2label_paths

    assert {f".{s}" for s in IMG_FORMATS} == IMAGE_SUFFIXES
    for image in ("/d/images/train/a.jpg", "/d/images/sub/images/b.png", "/d/pics/c.jpeg"):
        assert str(label_path(Path(image))) == img2label_paths([image])[0]


def test_component_writes_artifact_metadata_and_report(tmp_path):
    dataset = SimpleNamespace(path=str(tmp_path / "dataset"), metadata={})
    report = SimpleNamespace(path=str(tmp_path / "report.md"))
    outputs = prepare_dataset_component("synthetic://shapes?images=10&imgsz=32&seed=2", 0, 0.2,
                                        dataset, report)
    assert dataset.metadata["content_hash"] == outputs.content_hash
    assert outputs.nc == 3 and outputs.train_images == dataset.metadata["train_images"] == 8
    assert dataset.metadata["images"] == 10
    assert (tmp_path / "report.md").read_text().startswith("# Dataset")


def test_cli_check_json_and_synth(tmp_path, capsys):
    assert main(["dataset", "synth", str(tmp_path / "syn"), "--images", "6", "--imgsz", "32"]) == 0
    assert str(tmp_path / "syn") in capsys.readouterr().out
    assert main(["dataset", "check", str(tmp_path / "syn"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["stats"]["images"] == 6 and result["names"] == NAMES
    assert main(["dataset", "check", str(tmp_path / "syn")]) == 0
    assert "ok, 6 images, 3 classes" in capsys.readouterr().out


# -------------------------------------------------------------------------------- S3 and coco8


def test_dataset_from_s3_matches_the_local_one(s3_env, s3_bucket, tmp_path):
    root = _synth(tmp_path / "source")
    storage.upload(root, f"s3://{s3_bucket}/datasets/shapes")
    local = prepare_dataset(str(root), tmp_path / "local")
    remote = prepare_dataset(f"minio://{s3_bucket}/datasets/shapes", tmp_path / "remote")
    assert remote.content_hash == local.content_hash and remote.stats == local.stats


def test_s3_failures_name_the_problem(s3_env, monkeypatch, tmp_path):
    with pytest.raises(UserError, match="bucket 'no-such-data' does not exist"):
        check_dataset("s3://no-such-data/shapes")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-123")
    with pytest.raises(UserError, match=r"refused the credentials \(SignatureDoesNotMatch\)") as e:
        check_dataset("s3://no-such-data/shapes")
    assert "not-the-secret-123" not in str(e.value)
    from s3server import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UserError, match="cannot reach the S3 endpoint"):
        check_dataset("s3://no-such-data/shapes")


def test_coco8_round_trips_through_s3(coco8, s3_env, s3_bucket, tmp_path):
    before = _digest(coco8)
    uri = f"s3://{s3_bucket}/coco8"
    storage.upload(coco8, uri)
    assert _digest(storage.download(uri, tmp_path / "back")) == before
    local = prepare_dataset(str(coco8), tmp_path / "local")
    remote = prepare_dataset(uri, tmp_path / "remote")
    assert remote.content_hash == local.content_hash
    stats = local.stats
    assert (stats["train_images"], stats["val_images"], stats["classes"]) == (4, 4, 80)
    rows = sum(len(p.read_text().split()) // 5 for p in (coco8 / "labels").rglob("*.txt"))
    assert sum(stats["instances"].values()) == rows and stats["instances"]["person"] > 0
    assert stats["image_size"]["max_hw"][1] == 640
    assert _digest(coco8) == before
