"""Annotation-tool exports written from one YOLO dataset, as each tool lays them out.

Tests convert them back and compare `dataset check` statistics with the YOLO original. Boxes
go out in each format's own units (COCO: pixel corner + size; VOC: 1-based pixel corners;
NDJSON: normalised centre + size), so a conversion that gets a unit wrong changes the stats.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import yaml
from PIL import Image


@dataclass
class Image_:
    path: Path
    split: str
    width: int
    height: int
    rows: list[tuple[int, float, float, float, float]]
    """(class, x_center, y_center, width, height), normalised."""

    def pixel_boxes(self) -> list[tuple[int, float, float, float, float]]:
        """(class, x, y, width, height) in pixels, top-left corner."""
        return [(c, (x - w / 2) * self.width, (y - h / 2) * self.height, w * self.width,
                 h * self.height) for c, x, y, w, h in self.rows]


def read_yolo(root: Path) -> tuple[list[str], list[Image_]]:
    """names and images of a YOLO dataset with images/{train,val} (the synthetic shapes)."""
    data = yaml.safe_load((root / "data.yaml").read_text())
    names = list(data["names"].values()) if isinstance(data["names"], dict) else data["names"]
    images = []
    for split in ("train", "val"):
        for path in sorted((root / "images" / split).iterdir()):
            label = root / "labels" / split / f"{path.stem}.txt"
            rows = [tuple(float(v) for v in line.split()) for line in
                    label.read_text().splitlines() if line.strip()] if label.exists() else []
            with Image.open(path) as image:
                width, height = image.size
            images.append(Image_(path, split, width, height,
                                 [(int(r[0]), *r[1:]) for r in rows]))
    return names, images


def coco_json(names: list[str], images: list[Image_], *, category_ids: list[int],
              file_name=lambda image: image.path.name, extra_categories=(),
              first_image_id: int = 1) -> dict:
    """A COCO detection document (bbox in pixels) for images."""
    doc = {"info": {"description": "test"}, "licenses": [],
           "categories": [*extra_categories,
                          *({"id": i, "name": n, "supercategory": ""}
                            for i, n in zip(category_ids, names, strict=True))],
           "images": [], "annotations": []}
    for number, image in enumerate(images, first_image_id):
        doc["images"].append({"id": number, "file_name": file_name(image), "width": image.width,
                              "height": image.height})
        for cls, x, y, w, h in image.pixel_boxes():
            doc["annotations"].append({
                "id": len(doc["annotations"]) + 1, "image_id": number,
                "category_id": category_ids[cls], "bbox": [x, y, w, h], "area": w * h,
                "iscrowd": 0, "segmentation": []})
    return doc


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))


def _copy(image: Image_, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image.path, dest)


def write_cvat(root: Path, names, images, *, subsets: bool = True) -> Path:
    """CVAT "COCO 1.0": annotations/instances_<subset>.json, images/<subset>/ (or 'default')."""
    groups = {s: [i for i in images if i.split == s] for s in ("train", "val")} if subsets else {
        "default": images}
    for subset, group in groups.items():
        _write_json(root / "annotations" / f"instances_{subset}.json",
                    coco_json(names, group, category_ids=list(range(1, len(names) + 1))))
        for image in group:
            _copy(image, root / "images" / subset / image.path.name)
    return root


def write_coco_release(root: Path, names, images, category_ids=(2, 5, 9)) -> Path:
    """The COCO release: annotations/instances_{train,val}2017.json + {train,val}2017/; sparse
    category ids (COCO's own skip numbers)."""
    for split in ("train", "val"):
        group = [i for i in images if i.split == split]
        _write_json(root / "annotations" / f"instances_{split}2017.json",
                    coco_json(names, group, category_ids=list(category_ids)))
        for image in group:
            _copy(image, root / f"{split}2017" / image.path.name)
    return root


def write_roboflow(root: Path, names, images) -> Path:
    """Roboflow COCO: {train,valid}/_annotations.coco.json beside the images; category 0 is the
    project (the supercategory of every class, used by no box)."""
    project = {"id": 0, "name": "shapes", "supercategory": "none"}
    for split, folder in (("train", "train"), ("val", "valid")):
        group = [i for i in images if i.split == split]
        doc = coco_json(names, group, category_ids=list(range(1, len(names) + 1)),
                        extra_categories=[project], first_image_id=0)
        for category in doc["categories"][1:]:
            category["supercategory"] = "shapes"
        _write_json(root / folder / "_annotations.coco.json", doc)
        for image in group:
            _copy(image, root / folder / image.path.name)
    return root


def write_label_studio(root: Path, names, images) -> Path:
    """Label Studio's COCO export: result.json (ids from 0, file names 'images/...')."""
    _write_json(root / "result.json", coco_json(
        names, images, category_ids=list(range(len(names))),
        file_name=lambda image: f"images/{image.path.name}", first_image_id=0))
    for image in images:
        _copy(image, root / "images" / image.path.name)
    return root


def write_ndjson(root: Path, names, images) -> Path:
    """ultralytics NDJSON: dataset line, one line per image; images in images/<split>/."""
    lines = [{"type": "dataset", "task": "detect", "name": "shapes",
              "class_names": {str(i): n for i, n in enumerate(names)}}]
    for image in images:
        lines.append({"type": "image", "file": image.path.name, "split": image.split,
                      "width": image.width, "height": image.height,
                      "annotations": {"boxes": [list(r) for r in image.rows]}})
        _copy(image, root / "images" / image.split / image.path.name)
    (root / "shapes.ndjson").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def voc_xml(image: Image_, names: list[str], name: str | None = None) -> str:
    objects = "".join(
        f"<object><name>{escape(names[c])}</name><difficult>0</difficult><bndbox>"
        f"<xmin>{x + 1}</xmin><ymin>{y + 1}</ymin><xmax>{x + w + 1}</xmax>"
        f"<ymax>{y + h + 1}</ymax></bndbox></object>"
        for c, x, y, w, h in image.pixel_boxes())
    return (f"<annotation><folder>VOC</folder><filename>{name or image.path.name}</filename>"
            f"<size><width>{image.width}</width><height>{image.height}</height><depth>3</depth>"
            f"</size>{objects}</annotation>\n")


def write_voc(root: Path, names, images) -> Path:
    """Pascal VOC: Annotations/*.xml (1-based corners), JPEGImages/, ImageSets/Main/*.txt."""
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (root / "Annotations").mkdir()
    for split in ("train", "val"):
        group = [i for i in images if i.split == split]
        (main / f"{split}.txt").write_text("".join(f"{i.path.stem}\n" for i in group))
    for image in images:
        (root / "Annotations" / f"{image.path.stem}.xml").write_text(voc_xml(image, names))
        _copy(image, root / "JPEGImages" / image.path.name)
    return root


WRITERS = {"cvat": write_cvat, "coco-release": write_coco_release, "roboflow": write_roboflow,
           "label-studio": write_label_studio, "ndjson": write_ndjson, "voc": write_voc}
