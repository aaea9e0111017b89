"""Pascal VOC: `Annotations/*.xml` + `JPEGImages/`, splits in `ImageSets/Main/{train,val}.txt`.

The VOC folder is the top folder or one or two levels down (`VOCdevkit/VOC2012/`). Class names
are CVAT's `labelmap.txt` order when there is one (background left out), else the object names
sorted. Coordinates follow ultralytics' VOC.yaml: 1-based pixels (x - 1), `difficult` objects
skipped and counted. Splits: train.txt and val.txt when both exist (test.txt left out), else
trainval.txt (split by val_fraction); with ImageSets/Main, images no list names are left out.
What is read: the XML files, each image's existence, and an image's header only when the XML
has no size.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from kfp_yolo.components.data.formats.common import (
    Conversion,
    Item,
    box_row,
    check_suffix,
    find_image,
    image_size,
)
from kfp_yolo.components.data.layout import IMAGE_SUFFIXES
from kfp_yolo.components.errors import UserError

__all__ = ["find_voc", "read_voc"]


def find_voc(root: Path) -> Path | None:
    """The folder holding Annotations/ (with XML files), or None."""
    found = [p.parent for pattern in ("Annotations", "*/Annotations", "*/*/Annotations")
             for p in sorted(root.glob(pattern)) if p.is_dir() and any(p.glob("*.xml"))]
    if len(found) > 1:
        shown = ", ".join(p.relative_to(root).as_posix() for p in found)
        raise UserError(f"{shown}: several VOC folders with Annotations/; give one of them.")
    return found[0] if found else None


def _text(element: ET.Element, tag: str) -> str | None:
    child = element.find(tag)
    return child.text.strip() if child is not None and child.text else None


def _number(element: ET.Element, tag: str, where: str) -> float:
    text = _text(element, tag)
    try:
        return float(text) if text is not None else float("nan")
    except ValueError:
        raise UserError(f"{where}: <{tag}> {text!r} is not a number; fix the file.") from None


def _parse(path: Path, shown: str) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, column = exc.position
        raise UserError(f"{shown} line {line}: not valid XML ({exc.msg.split(':')[0]}, column "
                        f"{column}); fix the file or export it again.") from None


def _subsets(voc: Path, root: Path) -> dict[str, str] | None:
    """{image stem: subset} from ImageSets/Main, or None without it."""
    main = voc / "ImageSets" / "Main"
    lists = {name: main / f"{name}.txt" for name in ("train", "val", "test", "trainval")}
    present = {name: path for name, path in lists.items() if path.is_file()}
    if not present:
        return None
    if "train" in present and "val" in present:
        present.pop("trainval", None)
    else:
        present.pop("train", None)
        present.pop("val", None)
    subsets: dict[str, str] = {}
    for name, path in present.items():
        shown = path.relative_to(root).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
            stem = line.split()[0] if line.split() else ""
            if not stem:
                continue
            if not (voc / "Annotations" / f"{stem}.xml").is_file():
                raise UserError(f"{shown} line {number}: {stem!r} has no Annotations/{stem}.xml; "
                                "add the file or remove the line.")
            subsets.setdefault(stem, name)
    return subsets


def _labelmap(voc: Path) -> list[str] | None:
    path = voc / "labelmap.txt"
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    names = [line.split(":")[0].strip() for line in lines if not line.startswith("#")]
    return [n for n in names if n and n != "background"] or None


def read_voc(root: Path, voc: Path) -> tuple[list[Item], Conversion]:
    """Reads every XML file; raises UserError naming the file (and line) of the first bad one."""
    conversion = Conversion("voc", "pascal-voc",
                            [(voc / "Annotations").relative_to(root).as_posix()], [])
    subsets = _subsets(voc, root)
    images = voc / "JPEGImages"
    labelmap = _labelmap(voc)
    # Without labelmap.txt, classes are numbered as met, then renumbered in name order: one
    # pass, and no XML tree kept.
    classes = {name: index for index, name in enumerate(labelmap or [])}
    items = []
    for path in sorted((voc / "Annotations").glob("*.xml")):
        stem = path.stem
        if subsets is not None and stem not in subsets:
            conversion.left_out["unlisted"] = conversion.left_out.get("unlisted", 0) + 1
            continue
        shown = path.relative_to(root).as_posix()
        items.append(_item(shown, stem, _parse(path, shown), images, classes,
                           labelmap is None, subsets, conversion))
    if not classes:
        raise UserError(f"{conversion.files[0]}: no object has a <name>; label the images.")
    conversion.names = labelmap or sorted(classes)
    if labelmap is None:
        order = {classes[name]: str(index) for index, name in enumerate(conversion.names)}
        for item in items:
            item.rows = [order[int(cls)] + " " + rest
                         for cls, rest in (row.split(" ", 1) for row in item.rows)]
    return items, conversion


def _item(shown: str, stem: str, element: ET.Element, images: Path, classes: dict[str, int],
          grow: bool, subsets: dict[str, str] | None, conversion: Conversion) -> Item:
    name = _text(element, "filename")
    found = None
    if name and Path(name).suffix:
        check_suffix(name, shown)
        found = find_image(name, [images])
    else:  # no <filename>, or one without its extension: the image of that name
        for suffix in sorted(IMAGE_SUFFIXES):
            found = found or find_image(Path(name or stem).name + suffix, [images])
    if found is None:
        raise UserError(f"{shown}: its image {name or stem + '.*'!r} is missing from "
                        "JPEGImages/; add the image or remove the XML file.")
    size = element.find("size")
    width = _number(size, "width", shown) if size is not None else 0.0
    height = _number(size, "height", shown) if size is not None else 0.0
    if not (0 < width < math.inf and 0 < height < math.inf):
        width, height = image_size(found[0], f"{shown} ({found[1]!r})")
    rows = []
    for index, obj in enumerate(element.findall("object"), 1):
        label = _text(obj, "name") or ""
        where = f"{shown}: object {index} ({label!r})"
        if not label:
            raise UserError(f"{where}: the object has no <name>; give it its class.")
        if label not in classes:
            if not grow:
                raise UserError(f"{where}: the class is not in labelmap.txt; add it there.")
            classes[label] = len(classes)
        if _text(obj, "difficult") == "1":
            conversion.count("skipped_difficult")  # as ultralytics' VOC.yaml does
            continue
        box = obj.find("bndbox")
        if box is None:
            raise UserError(f"{where}: no <bndbox>; give the object its box.")
        xmin, ymin, xmax, ymax = (_number(box, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        rows.append(box_row(classes[label], xmin - 1, ymin - 1, xmax - xmin, ymax - ymin, width,
                            height, where, conversion))
    return Item(found[0], found[1], subsets.get(stem, "default") if subsets else "default", rows,
                shown)
