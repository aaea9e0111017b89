"""data.formats: every broken export is one sentence naming the file and the culprit (exit 2);
what is skipped, clipped or derived is counted; the source is only read."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from kfp_yolo.components.data import formats
from kfp_yolo.components.data.formats import jsonstream
from kfp_yolo.components.errors import UserError
from kfp_yolo.pipelines.cli import main

JSON = "annotations/instances_default.json"


def _png(path: Path, size: tuple[int, int] = (100, 80)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 40, 30)).save(path)


def _coco(root: Path, *, images=None, annotations=None, categories=None, files=True) -> Path:
    """A CVAT export: two 100x80 images, one box each, categories 1 and 2."""
    images = images if images is not None else [
        {"id": 1, "file_name": "a.png", "width": 100, "height": 80},
        {"id": 2, "file_name": "b.png", "width": 100, "height": 80}]
    annotations = annotations if annotations is not None else [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 30], "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [0, 0, 100, 80], "iscrowd": 0}]
    categories = categories if categories is not None else [
        {"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    doc = {"licenses": [], "info": {}, "categories": categories, "images": images,
           "annotations": annotations}
    path = root / JSON
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc, indent=1))
    if files:
        for image in images:
            _png(root / "images" / image["file_name"])
    return root


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def _labels(dest: Path) -> dict[str, list[str]]:
    return {p.stem: p.read_text().split("\n")[:-1] for p in sorted(dest.rglob("labels/**/*.txt"))}


@pytest.fixture
def refused(tmp_path, capsys):
    """`kfp-yolo dataset convert SRC DST` on a broken export: exit 2, one sentence on stderr,
    nothing written, the source untouched; returns the sentence."""

    def run(root: Path) -> str:
        before = _digest(root)
        capsys.readouterr()
        assert main(["dataset", "convert", str(root), str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("kfp-yolo: error: "), err
        assert _digest(root) == before, "the source was modified"
        assert not (tmp_path / "out").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no partial
        message = err[0].removeprefix("kfp-yolo: error: ")
        assert message.endswith("."), message
        return message

    return run


# ----------------------------------------------------------------------------- broken exports


def test_invalid_json_names_the_file_and_line(tmp_path, refused):
    root = _coco(tmp_path / "src")
    path = root / JSON
    lines = path.read_text().splitlines()
    target = next(i for i, line in enumerate(lines) if '"bbox"' in line)
    lines[target] = lines[target].replace("[", "[,", 1)
    path.write_text("\n".join(lines))
    message = refused(root)
    column = lines[target].index("[,") + 2
    assert message.startswith(f"{JSON} line {target + 1} column {column}: not valid JSON"), message


def test_invalid_json_on_one_line_names_the_column(tmp_path, refused, monkeypatch):
    monkeypatch.setattr(jsonstream, "_CHUNK", 16)  # the window has moved past the line's start
    root = _coco(tmp_path / "src")
    text = json.dumps(json.loads((root / JSON).read_text()))
    broken = text.replace('"category_id": 2', '"category_id": 2,,')
    (root / JSON).write_text(broken)
    message = refused(root)
    assert message.startswith(f"{JSON} line 1: not valid JSON (Expecting property name"), message
    monkeypatch.setattr(jsonstream, "_CHUNK", 1 << 20)
    assert refused(root).startswith(f"{JSON} line 1 column {broken.index(',,') + 2}: ")


def test_truncated_json_names_the_last_line(tmp_path, refused):
    root = _coco(tmp_path / "src")
    text = (root / JSON).read_text()
    (root / JSON).write_text(text[: len(text) // 2])
    message = refused(root)
    assert f"{JSON} line " in message and "not valid JSON" in message


def test_image_listed_but_missing(tmp_path, refused):
    root = _coco(tmp_path / "src")
    (root / "images" / "b.png").unlink()
    message = refused(root)
    assert "image id 2 'b.png' is listed but missing" in message and JSON in message


def test_the_annotations_folder_given_for_the_export_says_go_up(tmp_path, refused):
    root = _coco(tmp_path / "src")
    message = refused(root / "annotations")  # a user pointing at the JSON's own folder
    assert message.startswith("instances_default.json line ")
    assert message.endswith("is listed but missing (looked in the top folder); give "
                            "the export's top folder, the one above annotations/.")


def test_annotation_of_an_unknown_image(tmp_path, refused):
    root = _coco(tmp_path / "src", annotations=[
        {"id": 7, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    message = refused(root)
    assert "(annotation id 7): image_id 99 is not in images" in message and JSON in message


def test_unknown_category_id(tmp_path, refused):
    root = _coco(tmp_path / "src", annotations=[
        {"id": 8, "image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5]}])
    message = refused(root)
    assert "(annotation id 8): category_id 5 is not in categories (ids 1, 2)" in message


@pytest.mark.parametrize("bbox, culprit", [
    ([1, 1, 0, 5], "width is 0"), ([1, 1, 5, -2], "height is -2"),
    ([1, 1, "NaN", 5], "width is nan"), ([1, 1, 5, "Infinity"], "height is inf")])
def test_box_without_a_positive_finite_size(tmp_path, bbox, culprit, refused):
    root = _coco(tmp_path / "src", annotations=[
        {"id": 9, "image_id": 2, "category_id": 1, "bbox": [1, 1, 1, 1]}])
    text = (root / JSON).read_text().replace("1,\n    1,\n    1,\n    1\n",
                                             ",".join(map(str, bbox)).replace("'", ""))
    text = text.replace('"NaN"', "NaN").replace('"Infinity"', "Infinity")
    (root / JSON).write_text(text)
    message = refused(root)
    assert "(annotation id 9), image 'b.png': the box " + culprit in message, message


def test_box_outside_its_image_by_more_than_a_pixel(tmp_path, refused):
    root = _coco(tmp_path / "src", annotations=[
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [90, 10, 11.5, 5]}])
    message = refused(root)
    assert "(annotation id 3), image 'a.png': the box [90, 10, 11.5, 5]" in message
    assert "leaves its 100x80 image by more than a pixel" in message


def test_box_within_a_pixel_is_clipped_and_counted(tmp_path):
    root = _coco(tmp_path / "src", annotations=[
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [-0.5, 10, 100.9, 5]}])
    conversion = formats.convert(root, tmp_path / "out")
    assert conversion.counts == {"clipped": 1, "background_images": 1}
    assert _labels(tmp_path / "out") == {"a": ["0 0.500000 0.156250 1.000000 0.062500"]}


def test_duplicate_image_ids(tmp_path, refused):
    root = _coco(tmp_path / "src", images=[
        {"id": 4, "file_name": "a.png", "width": 100, "height": 80},
        {"id": 4, "file_name": "b.png", "width": 100, "height": 80}], annotations=[])
    message = refused(root)
    assert "image id 4 ('b.png') is listed twice (first on line" in message and "'a.png'" in message


def test_category_named_twice(tmp_path, refused):
    root = _coco(tmp_path / "src", categories=[{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}])
    assert "categories 1 and 2 are both named 'cat'" in refused(root)


def test_invalid_xml_names_the_file_and_line(tmp_path, refused):
    root = tmp_path / "voc"
    _png(root / "JPEGImages" / "a.png")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_text(
        "<annotation>\n<filename>a.png</filename>\n<object><name>cat</name>\n</annotation>\n")
    message = refused(root)
    assert message.startswith("Annotations/a.xml line 4: not valid XML (mismatched tag"), message


def test_voc_box_outside_names_the_object(tmp_path, refused):
    root = tmp_path / "voc"
    _png(root / "JPEGImages" / "a.png")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>100</width><height>80</height>"
        "</size><object><name>cat</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>200</xmax>"
        "<ymax>20</ymax></bndbox></object></annotation>")
    message = refused(root)
    assert message.startswith("Annotations/a.xml: object 1 ('cat'): the box"), message


def test_invalid_ndjson_line(tmp_path, refused):
    root = tmp_path / "nd"
    _png(root / "images" / "train" / "a.png")
    root.joinpath("d.ndjson").write_text(
        '{"type": "dataset", "task": "detect", "class_names": {"0": "cat"}}\n'
        '{"type": "image", "file": "a.png", "split": "train", "annotations": {"boxes": [[0, 0.5, '
        '0.5, 0.2, 0.2]]}}\n{"type": "image", "file": \n')
    assert refused(root).startswith("d.ndjson line 3 column 27: not valid JSON")


def test_ndjson_remote_image_is_named_with_its_url(tmp_path, refused):
    root = tmp_path / "nd"
    root.mkdir()
    root.joinpath("d.ndjson").write_text(
        '{"type": "dataset", "class_names": {"0": "cat"}}\n'
        '{"file": "z.jpg", "split": "val", "url": "https://example.invalid/z.jpg"}\n')
    message = refused(root)
    assert message.startswith("d.ndjson line 2 ('z.jpg'): the image is missing (only at https:")


def test_an_image_listed_twice(tmp_path, refused):
    root = _coco(tmp_path / "src", images=[
        {"id": 1, "file_name": "a.png", "width": 100, "height": 80},
        {"id": 2, "file_name": "a.png", "width": 100, "height": 80}], annotations=[])
    message = refused(root)
    assert message.startswith(f"{JSON} line ") and f"and {JSON} line " in message
    assert "would share the label file labels/a.txt (one image listed twice" in message


def test_a_late_failure_leaves_no_partial_output(tmp_path, refused, monkeypatch):
    from kfp_yolo.components.data.formats import common

    def full_disk(*args):
        raise UserError("the disk is full; free some space.")

    root = _coco(tmp_path / "src")
    monkeypatch.setattr(common, "_place", full_disk)  # fails while dest is being filled
    assert refused(root) == "the disk is full; free some space."


# ------------------------------------------------------------------ what is derived and counted


def test_crowd_polygon_background_and_links(tmp_path):
    root = _coco(tmp_path / "src", images=[
        {"id": 1, "file_name": "a.png", "width": 100, "height": 80},
        {"id": 2, "file_name": "b.png", "width": 100, "height": 80},
        {"id": 3, "file_name": "sub/c.png"}], annotations=[
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [], "iscrowd": 0,
         "segmentation": [[10, 10, 30, 10, 30, 50], [40, 60, 45, 70, 42, 66]]},
        {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 5, 5],
         "segmentation": {"counts": [1, 2], "size": [80, 100]}},
        {"id": 3, "image_id": 3, "category_id": 1, "bbox": [0, 0, 50, 40]}])
    source = _digest(root)
    conversion = formats.convert(root, tmp_path / "out")
    assert conversion.counts == {"polygon_boxes": 1, "skipped_crowd": 1, "background_images": 1}
    assert conversion.names == ["cat", "dog"] and conversion.splits == "val_fraction"
    assert _labels(tmp_path / "out") == {"a": ["1 0.275000 0.500000 0.350000 0.750000"],
                                         "c": ["0 0.250000 0.250000 0.500000 0.500000"]}
    image = tmp_path / "out" / "images" / "a.png"
    assert image.stat().st_ino == (root / "images" / "a.png").stat().st_ino  # a hard link
    assert (tmp_path / "out" / "images" / "sub" / "c.png").is_file()
    data = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert data["names"] == {0: "cat", 1: "dog"} and data["train"] == "images" and "val" not in data
    assert data["source"]["source_class_ids"] == {0: 1, 1: 2}
    assert _digest(root) == source


def test_symbolic_mode_links_and_test_subset_left_out(tmp_path):
    root = tmp_path / "rf"
    for subset in ("train", "valid", "test"):
        _png(root / subset / f"{subset}.png")
        doc = {"categories": [{"id": 0, "name": "cat"}],
               "images": [{"id": 0, "file_name": f"{subset}.png", "width": 100, "height": 80}],
               "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "bbox": [1, 1, 9, 9]}]}
        (root / subset / "_annotations.coco.json").write_text(json.dumps(doc))
    conversion = formats.convert(root, tmp_path / "out", "symbolic")
    assert conversion.layout == "roboflow" and conversion.splits == "export"
    assert conversion.left_out == {"test": 1} and "test subset left out" in conversion.warnings[0]
    val = tmp_path / "out" / "images" / "val" / "valid.png"
    assert val.is_symlink() and os.readlink(val) == str(root / "valid" / "valid.png")


def test_detection_order_and_yolo_is_left_alone(tmp_path):
    yolo = _coco(tmp_path / "y")
    (yolo / "data.yaml").write_text("names: [cat]\n")
    assert formats.detect(yolo) == "yolo"
    with pytest.raises(UserError, match="already in the YOLO layout"):
        formats.convert(yolo, tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no COCO JSON, NDJSON or Pascal VOC export found"):
        formats.convert(empty, tmp_path / "out")


# --------------------------------------------------------------------------------- jsonstream


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_stream_equals_json_load_at_any_window(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(jsonstream, "_CHUNK", chunk)
    doc = {"info": {"n": 12345}, "images": [{"id": i, "f": f"{i}.jpg"} for i in range(30)],
           "x": 1.5e-3, "annotations": [], "tail": [True, None, "é"]}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    got: dict = {"images": [], "annotations": []}
    lines = []
    for key, value, line in jsonstream.members(path, "d.json", {"images", "annotations"}):
        if key in ("images", "annotations"):
            got[key].append(value)
            lines.append(line)
        else:
            got[key] = value
    assert got == doc
    text = path.read_text().splitlines()
    assert [text[n - 1].strip() for n in lines[:2]] == ["{", "{"]
    assert text[lines[0]].strip() == '"id": 0,'


def test_dataset_check_refuses_a_broken_export_with_the_same_sentence(tmp_path, capsys):
    root = _coco(tmp_path / "src", annotations=[
        {"id": 8, "image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5]}])
    assert main(["dataset", "check", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"kfp-yolo: error: {JSON} line 29 (annotation id 8): category_id 5 is not in "
                   "categories (ids 1, 2); fix the annotation or add the category."]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(_JSON, max_size=6), _JSON, st.integers(1, 40), st.booleans())
def test_stream_equals_json_loads_for_any_document(elements, other, chunk, indent):
    doc = {"a": other, "images": elements, "z": other}
    text = json.dumps(doc, indent=1 if indent else None, ensure_ascii=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.json"
        path.write_text(text, encoding="utf-8")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(jsonstream, "_CHUNK", chunk)
            got = list(jsonstream.members(path, "d.json", {"images"}))
    assert [v for k, v, _ in got if k == "images"] == elements
    assert [(k, v) for k, v, _ in got if k != "images"] == [("a", other), ("z", other)]


@settings(max_examples=150, deadline=None)
@given(st.lists(_JSON, max_size=4), st.integers(0, 10_000), st.integers(1, 40))
def test_a_damaged_document_is_one_user_error(elements, cut, chunk):
    text = json.dumps({"images": elements, "categories": []}, indent=1)
    damaged = text[: cut % (len(text) - 1)] if cut % 2 else text.replace(",", ";", 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.json"
        path.write_text(damaged)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(jsonstream, "_CHUNK", chunk)
            try:
                list(jsonstream.members(path, "d.json", {"images"}))
            except UserError as error:
                assert str(error).startswith("d.json"), error
            else:
                assert json.loads(damaged) is not None  # only a document still valid passes


def test_images_are_copied_where_hard_links_fail(tmp_path, monkeypatch):
    import errno

    def other_filesystem(source, dest):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    root = _coco(tmp_path / "src")
    monkeypatch.setattr(os, "link", other_filesystem)
    formats.convert(root, tmp_path / "out")
    copied = tmp_path / "out" / "images" / "a.png"
    assert not copied.is_symlink() and copied.stat().st_ino != (root / "images" / "a.png").stat(
        ).st_ino
    assert copied.read_bytes() == (root / "images" / "a.png").read_bytes()


def test_subsets_without_val_are_one_pool_whatever_their_names(tmp_path):
    from kfp_yolo.components.data.layout import discover

    root = tmp_path / "cvat"
    for subset, names in (("train", ["a.png", "train/b.png"]), ("default", ["a.png"])):
        doc = {"categories": [{"id": 1, "name": "cat"}],
               "images": [{"id": i, "file_name": n, "width": 100, "height": 80}
                          for i, n in enumerate(names)],
               "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 9, 9]}
                               for i in range(len(names))]}
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{subset}.json").write_text(json.dumps(doc))
        for name in names:
            _png(root / "images" / subset / name)
    conversion = formats.convert(root, tmp_path / "out")
    assert conversion.splits == "val_fraction" and conversion.layout == "cvat"
    layout = discover(tmp_path / "out")
    assert sorted(s.rel for s in layout.train) == ["default/a.png", "train/a.png",
                                                   "train/train/b.png"]
    assert not layout.val


def test_voc_filename_without_extension_and_difficult_objects(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    _png(root / "JPEGImages" / "2008_000001.jpg")
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "2008_000001.xml").write_text(
        "<annotation><filename>2008_000001</filename><object><name>dog</name><difficult>1"
        "</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
        "</object><object><name>cat</name><bndbox><xmin>11</xmin><ymin>11</ymin><xmax>31</xmax>"
        "<ymax>41</ymax></bndbox></object></annotation>")
    conversion = formats.convert(tmp_path, tmp_path / "out")
    assert conversion.names == ["cat", "dog"] and conversion.counts == {"skipped_difficult": 1}
    assert conversion.files == ["VOCdevkit/VOC2012/Annotations"]
    # 1-based corners (11..31 of a 100 px wide image): x 10..30, read from the image's header
    assert _labels(tmp_path / "out") == {"2008_000001": ["0 0.200000 0.312500 0.200000 0.375000"]}


def test_voc_labelmap_orders_the_classes_and_refuses_others(tmp_path, refused):
    root = tmp_path / "voc"
    _png(root / "JPEGImages" / "a.png")
    (root / "Annotations").mkdir()
    (root / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
                                       "dog:1,2,3::\ncat:4,5,6::\n")
    box = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>11</xmax><ymax>11</ymax></bndbox>"
    (root / "Annotations" / "a.xml").write_text(
        f"<annotation><filename>a.png</filename><object><name>cat</name>{box}</object>"
        "</annotation>")
    conversion = formats.convert(root, tmp_path / "out")
    assert conversion.names == ["dog", "cat"]
    assert _labels(tmp_path / "out") == {"a": ["1 0.050000 0.062500 0.100000 0.125000"]}
    (root / "Annotations" / "a.xml").write_text(
        f"<annotation><filename>a.png</filename><object><name>cow</name>{box}</object>"
        "</annotation>")
    shutil.rmtree(tmp_path / "out")
    assert refused(root) == ("Annotations/a.xml: object 1 ('cow'): the class is not in "
                             "labelmap.txt; add it there.")


def test_ndjson_segments_gaps_sizes_and_test_split(tmp_path):
    root = tmp_path / "nd"
    _png(root / "images" / "train" / "a.png")
    _png(root / "images" / "val" / "b.png")
    _png(root / "pictures" / "c.png")
    lines = [{"type": "dataset", "task": "segment", "class_names": {"0": "cat", "2": "dog"}},
             {"file": "a.png", "split": "train", "annotations": {"segments": [
                 [2, 0.1, 0.1, 0.3, 0.1, 0.3, 0.5]]}},
             {"file": "b.png", "split": "val", "width": 100, "height": 80},
             {"file": "c.png", "split": "test", "url": "pictures/c.png"}]
    (root / "d.ndjson").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    conversion = formats.convert(root, tmp_path / "out")
    assert conversion.names == ["cat", "class1", "dog"]  # ultralytics' name for a gap
    assert conversion.counts == {"polygon_boxes": 1, "background_images": 1}
    assert conversion.left_out == {"test": 1} and conversion.splits == "export"
    assert _labels(tmp_path / "out") == {"a": ["2 0.200000 0.300000 0.200000 0.400000"]}


@pytest.mark.parametrize("name", ["anim.gif", "notes.txt"])
def test_an_image_type_ultralytics_cannot_read(tmp_path, refused, name):
    root = _coco(tmp_path / "src", images=[
        {"id": 1, "file_name": name, "width": 10, "height": 10}], annotations=[], files=False)
    message = refused(root)
    assert f"(image id 1): '{name}' is not an image type ultralytics reads" in message


def test_a_json_file_that_is_not_coco(tmp_path, refused):
    root = tmp_path / "ls"
    _png(root / "images" / "a.png")
    root.mkdir(exist_ok=True)
    (root / "result.json").write_text('[{"image": "a.png", "annotations": []}]')  # JSON-MIN
    assert refused(root) == ("result.json: not a COCO annotation file (its top level is a list, "
                             "not an object with images, annotations and categories); export "
                             "the dataset as COCO JSON.")


# ------------------------------------------------------- links, traversal, huge images (#26)


def test_a_file_name_leading_out_of_the_export_is_named_a_traversal(tmp_path, refused):
    root = _coco(tmp_path / "src", images=[
        {"id": 1, "file_name": "a.png", "width": 100, "height": 80},
        {"id": 2, "file_name": "../../x", "width": 100, "height": 80}], files=False)
    _png(root / "images" / "a.png")
    message = refused(root)
    assert "'../../x' is a path leading out of the export ('..')" in message
    assert "not an image type" not in message


def test_an_image_linked_to_a_file_outside_the_export_is_refused(tmp_path, refused):
    root = _coco(tmp_path / "src")
    outside = tmp_path / "elsewhere" / "secret.png"
    _png(outside)
    (root / "images" / "b.png").unlink()
    (root / "images" / "b.png").symlink_to(outside)
    message = refused(root)
    assert f"the image images/b.png is a symbolic link to {outside.resolve()}, outside the " \
           f"export {root}" in message
    # `dataset check` reads the export through a mirror of links: the same refusal
    assert main(["dataset", "check", str(root)]) == 2
    # a link that stays inside the export is fine
    (root / "images" / "b.png").unlink()
    _png(root / "images" / "real" / "b.png")
    (root / "images" / "b.png").symlink_to(root / "images" / "real" / "b.png")
    assert main(["dataset", "convert", str(root), str(tmp_path / "out")]) == 0


def test_an_image_above_pillows_bomb_limit_is_a_sentence_not_a_raw_warning(tmp_path, capfd,
                                                                          monkeypatch):
    from kfp_yolo.components.data.synth import SynthSpec, synthesize

    synthesize(tmp_path / "ds", SynthSpec(images=6, imgsz=48, seed=1))
    # 48x48 = 2304 pixels: above a limit of 2000, below twice it; the same path as 10,000 px
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    assert main(["dataset", "check", str(tmp_path / "ds"), "--json"]) == 0
    out, err = capfd.readouterr()
    assert "DecompressionBombWarning" not in out + err
    assert "48x48 pixels (0 megapixels) is above Pillow's decompression-bomb limit" in out
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # more than twice: refused
    assert main(["dataset", "check", str(tmp_path / "ds")]) == 2
    err = capfd.readouterr().err
    assert "megapixels, which Pillow refuses to decode (twice its decompression-bomb limit); " \
           "shrink the image." in err and "DecompressionBomb" not in err
