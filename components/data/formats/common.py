"""What every converter shares: boxes to YOLO rows, splits, and writing the YOLO layout.

A converter reads an export into `Item`s (an image file found in the source, its subset, its
label rows) and a `Conversion` (names, the source's class ids, counts for the report);
`write_yolo` then places the images (linked, not copied, where the filesystem allows) and
writes labels/ and data.yaml. The source is only read.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kfp_yolo.components.data.layout import IMAGE_SUFFIXES, label_path
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.progress import Progress

__all__ = ["Conversion", "Item", "LinkMode", "box_row", "check_suffix", "find_image", "image_size",
           "split_of", "write_yolo"]

LinkMode = str
"""'hard': a hard link, else a copy (the output outlives the source's scratch copy);
'symbolic': a symbolic link (a read-only check); 'copy'."""

PIXEL = 1.0
"""A box may leave its image by this much (pixels) and is then clipped: rounding in tools."""


@dataclass
class Item:
    """One image of an export, ready to be written."""

    image: Path
    rel: str
    """Its path in the output under images/[<split>/], e.g. 'sub/a.jpg'."""
    subset: str
    """The export's own subset ('train', 'valid', 'default', ...)."""
    rows: list[str]
    origin: str = ""
    """Where the export lists it ('annotations/x.json line 12'), for messages."""


@dataclass
class Conversion:
    """What a conversion read and did, for data.yaml and the report."""

    format: str
    """'coco', 'ndjson' or 'voc'."""
    layout: str
    """Which tool's layout it was found in ('cvat', 'roboflow', 'coco', 'label-studio', ...)."""
    files: list[str]
    names: list[str]
    source_ids: list[int | str] = field(default_factory=list)
    """The export's class id of each class index 0..n-1 (COCO category ids)."""
    counts: dict[str, int] = field(default_factory=dict)
    """skipped_crowd, clipped, polygon_boxes, skipped_difficult, ... (only those that happened)."""
    left_out: dict[str, int] = field(default_factory=dict)
    """Images of subsets not used for training, by subset (a Roboflow 'test')."""
    splits: str = ""
    """'export' when the export's own train/val subsets were kept, else 'val_fraction'."""
    warnings: list[str] = field(default_factory=list)
    boxes: int = 0
    """Boxes written (label rows), for `dataset convert`'s summary."""
    image_sources: dict[str, str] = field(default_factory=dict, repr=False)
    """Each written image's path under dest ('images/train/a.jpg') -> the export's file, so
    a check of the converted copy can name the file the user has."""

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def report(self) -> dict:
        """A JSON-able description (dataset check --json, the prepare step's report)."""
        ids = {i: source for i, source in enumerate(self.source_ids)}
        return {"format": self.format, "layout": self.layout, "files": self.files,
                "source_class_ids": ids, "counts": dict(sorted(self.counts.items())),
                "left_out": self.left_out, "splits": self.splits}


# ------------------------------------------------------------------------------------- boxes


def box_row(cls: int, x: float, y: float, w: float, h: float, width: float, height: float,
            where: str | Callable[[], str], conversion: Conversion) -> str:
    """A YOLO row for a pixel box (x, y = top-left corner) in an image of width x height.

    Args:
        where: the culprit for a message (file, line, annotation), or a function that makes it:
            only a broken box pays for the sentence.

    Raises:
        UserError: a box with a zero, negative or non-finite side, or outside its image by more
            than a pixel (within a pixel it is clipped and counted).
    """
    x1, y1 = x + w, y + h
    # One comparison chain for the common case; NaN fails every comparison, so lands below.
    if 0 <= x < x1 <= width and 0 <= y < y1 <= height and w > 0 and h > 0:
        return (f"{cls} {(x + x1) / 2 / width:.6f} {(y + y1) / 2 / height:.6f} "
                f"{w / width:.6f} {h / height:.6f}")
    culprit = where() if callable(where) else where
    for side, value in (("width", w), ("height", h)):
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"{culprit}: the box {side} is {value!r}; every box needs a "
                            "positive, finite width and height; fix or delete the annotation.")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise UserError(f"{culprit}: the box corner ({x!r}, {y!r}) is not a finite number; fix "
                        "or delete the annotation.")
    if x < -PIXEL or y < -PIXEL or x1 > width + PIXEL or y1 > height + PIXEL:
        raise UserError(f"{culprit}: the box [{x:g}, {y:g}, {w:g}, {h:g}] (x, y, width, height) "
                        f"leaves its {width:g}x{height:g} image by more than a pixel; fix the box "
                        "or the image size.")
    x, y, x1, y1 = max(x, 0.0), max(y, 0.0), min(x1, width), min(y1, height)
    if x1 <= x or y1 <= y:
        raise UserError(f"{culprit}: the box lies on its image's edge and has no area inside "
                        "it; fix or delete the annotation.")
    conversion.count("clipped")
    return (f"{cls} {(x + x1) / 2 / width:.6f} {(y + y1) / 2 / height:.6f} "
            f"{(x1 - x) / width:.6f} {(y1 - y) / height:.6f}")


def image_size(path: Path, shown: str) -> tuple[int, int]:
    """(width, height) from the image's header, for exports that leave the size out."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the size is all we read; prepare says the rest
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                return image.size
    except Image.DecompressionBombError:
        raise UserError(f"{shown}: more than {2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} "
                        "megapixels, which Pillow refuses to decode (twice its "
                        "decompression-bomb limit); shrink the image.") from None
    except (OSError, UnidentifiedImageError):
        raise UserError(f"{shown}: not an image Pillow can read, and the annotations do not give "
                        "its size; replace the file.") from None


# ---------------------------------------------------------------------------------- finding


def find_image(name: str, bases: list[Path]) -> tuple[Path, str] | None:
    """(the file, its rel path) for an image an export names, looked for under each base.

    Tools write the name relative to different folders (images/, the JSON's folder, the export
    root) and sometimes as an absolute path of the annotation server: the name as given is
    tried under each base, then its last part alone. Give only bases that exist.
    """
    clean = name.replace("\\", "/")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    tries = [parts] if ".." not in parts and not clean.startswith("/") else []
    tries.append(parts[-1:])
    for candidate in tries:  # no '..' part: every try stays inside its base
        if not candidate:
            continue
        joined = "/".join(candidate)
        for base in bases:
            path = os.path.join(base, joined)
            if os.path.isfile(path):
                inner = candidate[0] == "images" and len(candidate) > 1
                return Path(path), "/".join(candidate[1:]) if inner else joined
    return None


def check_suffix(name: str, where: str) -> None:
    """Refuses an image type ultralytics does not read (it would drop the image silently), and
    names a path that climbs out of the export ('../../x') as what it is."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else 1
        if depth < 0:
            raise UserError(f"{where}: {name!r} is a path leading out of the export ('..'); "
                            "an export names its images inside it; fix the file name.")
    if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{where}: {name!r} is not an image type ultralytics reads "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))}); convert the image.")


# ----------------------------------------------------------------------------------- splits


def split_of(subset: str) -> str | None:
    """'train', 'val' or 'test' for an export's subset name; None for another (CVAT 'default')."""
    name = subset.lower()
    for split, prefixes in (("train", ("train",)), ("val", ("val", "valid")), ("test", ("test",))):
        if name.startswith(prefixes) and not name.startswith("trainval"):
            return split
    return None


def _assign(items: list[Item], conversion: Conversion) -> dict[str, list[Item]]:
    """{'train': [...], 'val': [...]} from the export's subsets, or {'': everything}."""
    by_split: dict[str | None, list[Item]] = {}
    for item in items:
        by_split.setdefault(split_of(item.subset), []).append(item)
    test = by_split.pop("test", [])
    if test and not by_split:  # a test subset alone is all there is: use it
        by_split[None] = test
    elif test:
        for item in test:
            conversion.left_out[item.subset] = conversion.left_out.get(item.subset, 0) + 1
        conversion.warnings.append(
            f"{len(test)} images of the export's test subset left out: training uses train and "
            "val only.")
    if by_split.get("val") and (by_split.get("train") or by_split.get(None)):
        conversion.splits = "export"
        return {"train": by_split.get("train", []) + by_split.get(None, []),
                "val": by_split["val"]}
    conversion.splits = "val_fraction"
    return {"": [item for group in by_split.values() for item in group]}


# ----------------------------------------------------------------------------------- writing


def _place(source: str, dest: str, mode: LinkMode) -> None:
    if mode == "symbolic":
        os.symlink(os.path.abspath(source), dest)
        return
    if mode == "hard":
        try:
            os.link(source, dest)
            return
        except OSError as exc:  # another filesystem, or one without hard links
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP,
                                 errno.EACCES):
                raise
    shutil.copyfile(source, dest)


def write_yolo(items: Iterable[Item], conversion: Conversion, dest: Path, mode: LinkMode) -> Path:
    """Writes dest/images, dest/labels and dest/data.yaml (dest is new); returns data.yaml.

    Splits: the export's own train/val when it has both (valid = val), else one images/ folder
    that the prepare step splits by val_fraction.
    """
    items = list(items)
    splits = _assign(items, conversion)
    owners: dict[str, Item] = {}
    made: set[str] = set()
    prefix = len({item.subset for group in splits.values() for item in group}) > 1
    with Progress("dataset convert", len(items), "images") as progress:
        for split, group in splits.items():
            folder = os.path.join(dest, "images", split) if split else os.path.join(dest, "images")
            for item in group:
                rel = item.rel
                if prefix and (split == "" or split_of(item.subset) is None):
                    rel = f"{item.subset}/{rel}"  # two subsets may hold the same file name
                image = os.path.join(folder, rel)
                label = str(label_path(Path(image)))  # ultralytics' rule, whatever rel holds
                other = owners.setdefault(label, item)
                if other is not item:
                    raise UserError(f"{other.origin} ({other.image.name}) and {item.origin} "
                                    f"({item.image.name}) would share the label file "
                                    f"{os.path.relpath(label, dest)} (one image listed twice, or "
                                    "two that differ only in extension); list each image once.")
                for path in (image, label) if item.rows else (image,):
                    parent = os.path.dirname(path)
                    if parent not in made:
                        os.makedirs(parent, exist_ok=True)
                        made.add(parent)
                _place(str(item.image), image, mode)
                conversion.image_sources[os.path.relpath(image, dest)] = str(item.image)
                progress.advance()
                conversion.boxes += len(item.rows)
                if item.rows:
                    with open(label, "w") as handle:
                        handle.write("\n".join(item.rows) + "\n")
                else:
                    conversion.count("background_images")
    data: dict = {"names": dict(enumerate(conversion.names))}
    # Named explicitly: a subset or a file name called train/ must not pass for a split.
    if "train" in splits:
        data.update(train="images/train", val="images/val")
    else:
        data.update(train="images")
    data["source"] = conversion.report()
    data_yaml = dest / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml
