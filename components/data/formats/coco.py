"""COCO JSON exports (CVAT, the COCO release, Roboflow, Label Studio) read into YOLO rows.

Layouts, detected from the files:
- `annotations/instances_<subset>.json` with images in `images/<subset>/`, `images/`,
  `<subset>/` (CVAT "COCO 1.0"; the COCO release, `instances_train2017.json` + `train2017/`);
- `<subset>/_annotations.coco.json` beside its images (Roboflow; `valid` is val);
- `result.json` with `images/` (Label Studio's COCO export; file names start with images/);
- else JSON files in `annotations/`, or the one JSON file at the top.

Why not ultralytics' `convert_coco`: it maps the 91 COCO ids to 80 by default (id 0 then
stops it with a TypeError) and otherwise takes `category_id - 1` (ids must start at 1 with no
gaps: CVAT's do; Label Studio's start at 0, which becomes class -1), copies no images, loads
each file whole, skips a box of zero size silently and stops with a KeyError on an annotation
of an unknown image. Here classes are the categories sorted by id, remapped to 0..n-1 (the
mapping kept in data.yaml and the report), the files are read one annotation at a time
(`jsonstream`), and every broken case is one sentence naming the file, line and annotation.
What is read: the JSON files, each image's existence, and an image's header
only when the JSON leaves its size out; never pixels.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from kfp_yolo.components.data.formats.common import (
    Conversion,
    Item,
    box_row,
    check_suffix,
    find_image,
    image_size,
)
from kfp_yolo.components.data.formats.jsonstream import members
from kfp_yolo.components.errors import UserError

__all__ = ["find_coco", "read_coco"]

ROBOFLOW = "_annotations.coco.json"


def find_coco(root: Path) -> tuple[str, list[tuple[Path, str, list[Path]]]] | None:
    """(layout, [(JSON file, subset, folders its images may be in)]) or None."""
    roboflow = sorted(root.glob(f"*/{ROBOFLOW}")) + sorted(root.glob(ROBOFLOW))
    if roboflow:
        return "roboflow", [(p, p.parent.name if p.parent != root else "default",
                             [p.parent, p.parent / "images"]) for p in roboflow]
    annotations = root / "annotations"
    found = sorted(annotations.glob("instances_*.json")) or sorted(annotations.glob("*.json"))
    if found:
        files = []
        for path in found:
            subset = path.stem.removeprefix("instances_")
            files.append((path, subset, [root / "images" / subset, root / subset,
                                         root / "images", root]))
        # The release names subsets by year (train2017/ at the top or in images/); CVAT's are
        # named by the user (default, train, ...).
        release = any((root / s).is_dir() or s[-4:].isdigit() for _, s, _ in files)
        return ("coco" if release else "cvat"), files
    if (root / "result.json").is_file():
        return "label-studio", [(root / "result.json", "default", [root, root / "images"])]
    top = sorted(p for p in root.glob("*.json") if p.is_file())
    if len(top) == 1:
        return "coco", [(top[0], "default", [root, root / "images"])]
    return None


@dataclass
class _File:
    """One annotation file's images and boxes, compact: 64 bytes a box in arrays."""

    shown: str
    subset: str
    index: dict[int, int] = field(default_factory=dict)
    """image id -> position in the lists below."""
    names: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    rels: list[str] = field(default_factory=list)
    sizes: list[tuple[float, float]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    # one entry per annotation
    ann_ids: array = field(default_factory=lambda: array("q"))
    other_ids: dict[int, object] = field(default_factory=dict)
    """Annotation ids that are not integers (or missing), by position."""
    ann_lines: array = field(default_factory=lambda: array("q"))
    image_ids: array = field(default_factory=lambda: array("q"))
    category_ids: array = field(default_factory=lambda: array("q"))
    boxes: array = field(default_factory=lambda: array("d"))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_NUMERIC = (int, float)


def _number(value: object) -> bool:
    return type(value) in _NUMERIC  # not bool, which is an int


def _shown(folder: Path, root: Path) -> str:
    rel = folder.relative_to(root).as_posix()
    return "the top folder" if rel == "." else f"{rel}/"


def _image(record: object, line: int, data: _File, bases: list[Path], root: Path) -> None:
    where = f"{data.shown} line {line}"
    if not isinstance(record, dict):
        raise UserError(f"{where}: an entry of images is not an object; export again.")
    image_id, name = record.get("id"), record.get("file_name")
    if not _is_int(image_id):
        raise UserError(f"{where}: image id {image_id!r} is not an integer; every image needs "
                        "an integer id.")
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{where}: image id {image_id} has no file_name; give its file name.")
    if image_id in data.index:
        first = data.index[image_id]
        raise UserError(f"{where}: image id {image_id} ({name!r}) is listed twice (first on line "
                        f"{data.lines[first]}, {data.names[first]!r}); give every image its own "
                        "id.")
    check_suffix(name, f"{where} (image id {image_id})")
    found = find_image(name, bases)
    if found is None:
        looked = ", ".join(_shown(b, root) for b in bases) or "the export's folders"
        # instances_*.json at the top: the annotations/ folder of a CVAT or COCO export was
        # given, and the images are one level up
        fix = ("give the export's top folder, the one above annotations/" if
               where.startswith("instances_") else "add the image or remove its entry")
        raise UserError(f"{where}: image id {image_id} {name!r} is listed but missing (looked in "
                        f"{looked}); {fix}.")
    width, height = record.get("width"), record.get("height")
    if not (_number(width) and _number(height) and 0 < width < math.inf
            and 0 < height < math.inf):
        width, height = image_size(found[0], f"{where} (image id {image_id} {name!r})")
    data.index[image_id] = len(data.names)
    data.names.append(name)
    data.paths.append(found[0])
    data.rels.append(found[1])
    data.sizes.append((float(width), float(height)))
    data.lines.append(line)


def _annotation(record: object, line: int, data: _File, conversion: Conversion) -> None:
    where = f"{data.shown} line {line}"
    if not isinstance(record, dict):
        raise UserError(f"{where}: an entry of annotations is not an object; export again.")
    ann_id = record.get("id", f"#{len(data.ann_ids) + 1}")
    if record.get("iscrowd"):
        conversion.count("skipped_crowd")  # a crowd region is not one object's box
        return
    bbox = record.get("bbox")
    if not bbox:  # polygon-only: the polygon's box
        bbox = _polygon_box(record.get("segmentation"), f"{where} (annotation id {ann_id})")
        conversion.count("polygon_boxes")
    try:
        x, y, w, h = bbox
        if not (type(x) in _NUMERIC and type(y) in _NUMERIC and type(w) in _NUMERIC
                and type(h) in _NUMERIC):
            raise TypeError
    except (TypeError, ValueError):
        raise UserError(f"{where}: annotation id {ann_id} has bbox {bbox!r}; a COCO bbox is "
                        "[x, y, width, height] in pixels.") from None
    image_id, category_id = record.get("image_id"), record.get("category_id")
    for name, value, where_not in (("image_id", image_id, "images"),
                                   ("category_id", category_id, "categories")):
        if type(value) is not int:  # ids are integers: a string or null matches nothing
            raise UserError(f"{where} (annotation id {ann_id}): {name} {value!r} is not in "
                            f"{where_not}; give the integer id of one of its entries.")
    try:
        data.image_ids.append(image_id)
        data.category_ids.append(category_id)
    except OverflowError:  # more than 64 bits: no such entry either
        raise UserError(f"{where} (annotation id {ann_id}): image_id {image_id} or category_id "
                        f"{category_id} is out of range; export again.") from None
    if type(ann_id) is int and -(2**63) <= ann_id < 2**63:
        data.ann_ids.append(ann_id)
    else:
        data.other_ids[len(data.ann_ids)] = ann_id
        data.ann_ids.append(0)
    data.ann_lines.append(line)
    data.boxes.extend((x, y, w, h))


def _polygon_box(segmentation: object, where: str) -> list[float]:
    if isinstance(segmentation, list) and segmentation and all(
            isinstance(p, list) and len(p) >= 6 and all(map(_number, p)) for p in segmentation):
        xs = [v for p in segmentation for v in p[0::2]]
        ys = [v for p in segmentation for v in p[1::2]]
        return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    kind = "an RLE mask" if isinstance(segmentation, dict) else "no polygon"
    raise UserError(f"{where}: no bbox and {kind}; export the annotation with its box.")


def _categories(value: object, line: int, shown: str, known: dict[int, tuple[str, str, str]]
                ) -> None:
    if not isinstance(value, list):
        raise UserError(f"{shown} line {line}: categories is not a list; export again.")
    for category in value:
        if not isinstance(category, dict) or not _is_int(category.get("id")) or not isinstance(
                category.get("name"), str) or not category["name"].strip():
            raise UserError(f"{shown} line {line}: category {category!r} needs an integer id and "
                            "a name.")
        name = category["name"].strip()
        entry = (name, str(category.get("supercategory", "")), shown)
        previous = known.setdefault(category["id"], entry)
        if previous[0] != name:
            raise UserError(f"{shown}: category id {category['id']} is {name!r} here but "
                            f"{previous[0]!r} in {previous[2]}; export every subset with the same "
                            "categories.")


def read_coco(root: Path, layout: str, files: list[tuple[Path, str, list[Path]]]
              ) -> tuple[list[Item], Conversion]:
    """Reads every annotation file of the export; raises UserError on the first broken case."""
    shown = [path.relative_to(root).as_posix() for path, _, _ in files]
    conversion = Conversion("coco", layout, shown, [])
    categories: dict[int, tuple[str, str, str]] = {}
    read: list[_File] = []
    for (path, subset, bases), name in zip(files, shown, strict=True):
        data = _File(name, subset)
        bases = [base for base in bases if base.is_dir()]
        seen = set()
        for key, value, line in members(path, name, {"images", "annotations"}):
            seen.add(key)
            if key == "images":
                _image(value, line, data, bases, root)
            elif key == "annotations":
                _annotation(value, line, data, conversion)
            elif key == "categories":
                _categories(value, line, name, categories)
        if "images" not in seen or "categories" not in seen:
            missing = "images" if "images" not in seen else "categories"
            raise UserError(f"{name}: no {missing!r} list, so it is not a COCO annotation file; "
                            "export the dataset as COCO JSON.")
        read.append(data)
    ids = _class_ids(categories, read, layout, conversion)
    conversion.names = [categories[i][0] for i in ids]
    conversion.source_ids = ids
    _unique_names(conversion.names, ids, shown[0])
    return [item for data in read for item in _items(data, {c: k for k, c in enumerate(ids)},
                                                     conversion)], conversion


def _class_ids(categories: dict[int, tuple[str, str, str]], read: list[_File], layout: str,
               conversion: Conversion) -> list[int]:
    """Category ids sorted; Roboflow's placeholder category 0 (the project, the supercategory of
    every class, never used by a box) left out."""
    ids = sorted(categories)
    if not ids:
        raise UserError(f"{read[0].shown}: categories is empty; export with the label classes.")
    used = {c for data in read for c in data.category_ids}
    first = categories[ids[0]]
    if layout == "roboflow" and len(ids) > 1 and ids[0] not in used and all(
            categories[i][1] == first[0] for i in ids[1:]):
        conversion.warnings.append(f"category {ids[0]} {first[0]!r} (Roboflow's project "
                                   "category, the supercategory of every class, no boxes) left "
                                   "out.")
        ids = ids[1:]
    return ids


def _unique_names(names: list[str], ids: list[int], shown: str) -> None:
    first: dict[str, int] = {}
    for name, cid in zip(names, ids, strict=True):
        if name in first:
            raise UserError(f"{shown}: categories {first[name]} and {cid} are both named {name!r}; "
                            "give every category a name of its own.")
        first[name] = cid


def _where(data: _File, k: int) -> str:
    ann_id = data.other_ids.get(k, data.ann_ids[k])
    return f"{data.shown} line {data.ann_lines[k]} (annotation id {ann_id})"


def _items(data: _File, classes: dict[int, int], conversion: Conversion) -> list[Item]:
    rows: list[list[str]] = [[] for _ in data.names]
    known = ", ".join(map(str, list(classes)[:20])) + (", ..." if len(classes) > 20 else "")
    boxes, index, sizes = data.boxes, data.index, data.sizes
    for k, (image_id, category_id) in enumerate(zip(data.image_ids, data.category_ids,
                                                    strict=True)):
        position = index.get(image_id)
        if position is None:
            raise UserError(f"{_where(data, k)}: image_id {image_id!r} is not in images; fix the "
                            "annotation or export again with its image.")
        cls = classes.get(category_id)
        if cls is None:
            raise UserError(f"{_where(data, k)}: category_id {category_id!r} is not in "
                            f"categories (ids {known}); fix the annotation or add the category.")
        width, height = sizes[position]
        j = 4 * k
        rows[position].append(box_row(
            cls, boxes[j], boxes[j + 1], boxes[j + 2], boxes[j + 3], width, height,
            lambda k=k, p=position: f"{_where(data, k)}, image {data.names[p]!r}", conversion))
    return [Item(path, rel, data.subset, r, f"{data.shown} line {line}")
            for path, rel, r, line in zip(data.paths, data.rels, rows, data.lines, strict=True)]
