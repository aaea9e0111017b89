"""prepare_dataset: fetch a YOLO dataset, validate it, split it, describe it.

Accepted layouts (from a path, file://, s3://, minio:// or synthetic://shapes):
- data.yaml with names and train/val folders, relative to the folder holding data.yaml (the
  dataset has moved, so `path:` only serves to make absolute train/val paths relative), or no
  data.yaml and a classes.txt (one name a line) beside images/ and labels/.
- images/{train,val} or a flat images/; labels mirror images (ultralytics' rule: the last
  `images` folder of the image's path becomes `labels`, the suffix becomes .txt).
- no val split: a seeded split of train, stratified by each image's rarest class.
- an annotation tool's export (COCO JSON, ultralytics NDJSON, Pascal VOC), detected from its
  files and converted first by data.formats, the code of `kfp-yolo dataset convert`.

Validation fails fast with one sentence naming the file (and line). Images are checked by
decoding them and by ultralytics' own `verify_image_label`; that function re-saves some JPEGs in
place, so it only ever sees our copy. The source is never written.

Fetching and finding the layout live in kfp_yolo.components.data.layout, checking every image and
label in data.checks; splitting, statistics, the content hash and the report here.
Pure logic first; the KFP component wrapper is at the bottom. (No `from __future__ import
annotations` in component modules: KFP reads the annotations of component functions.)
"""

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import yaml

from kfp_yolo.components import storage
from kfp_yolo.components.data import formats
from kfp_yolo.components.data.checks import Checked, check_boxes, check_leaks, validate
from kfp_yolo.components.data.layout import Layout, discover, label_path
from kfp_yolo.components.data.source import fetch, local_folder, refuse_inside
from kfp_yolo.components.errors import UserError

__all__ = ["PreparedDataset", "check_dataset", "prepare_dataset"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
BACKGROUND_SHARE = 0.5
"""Above this share of training images without boxes, the report warns (mostly background)."""


@dataclass
class PreparedDataset:
    """What prepare_dataset wrote: data.yaml with absolute paths, and statistics."""

    data_yaml: Path
    names: list[str]
    stats: dict = field(default_factory=dict)
    content_hash: str = ""
    warnings: list[str] = field(default_factory=list)
    conversion: dict | None = None
    """How an export was converted (formats.Conversion.report()); None for the YOLO layout."""


# ------------------------------------------------------------------------- splitting, statistics


def _check_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction {val_fraction!r} must be between 0 and 1, e.g. 0.2.")


def _split(layout: Layout, checked: dict[Path, Checked], seed: int,
           val_fraction: float) -> dict[str, list[Checked]]:
    """The dataset's own val split, or a seeded split of train stratified by rarest class."""
    train = [checked[s.image] for s in layout.train]
    if not train:
        raise UserError("the dataset has val images but no train images; add train images.")
    if layout.val:
        return {"train": train, "val": [checked[s.image] for s in layout.val]}
    if len(train) < 2:
        raise UserError(f"the dataset has {len(train)} image and no val split; add images or a "
                        "val split.")
    frequency = Counter(c for item in train for c in set(item.classes))
    strata: dict[int, list[Checked]] = {}
    for item in train:  # in path order, so the seed alone decides
        key = min(set(item.classes), key=lambda c: (frequency[c], c)) if item.classes else -1
        strata.setdefault(key, []).append(item)
    wanted = min(len(train) - 1, max(1, round(len(train) * val_fraction)))
    rng = random.Random(seed)
    chosen: set[int] = set()
    seen = 0
    for key in sorted(strata):
        members = list(strata[key])
        rng.shuffle(members)
        seen += len(members)
        # Cumulative rounding: every stratum gets its share and the total is exact.
        take = round(seen * wanted / len(train)) - len(chosen)
        chosen.update(id(m) for m in members[:take])
    return {"train": [i for i in train if id(i) not in chosen],
            "val": [i for i in train if id(i) in chosen]}


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    pick = {"min": 0.0, "p10": 0.1, "p50": 0.5, "p90": 0.9, "max": 1.0}
    return {k: round(ordered[round(q * (len(ordered) - 1))], 4) for k, q in pick.items()}


def _statistics(names: list[str], splits: dict[str, list[Checked]]) -> dict:
    per_split = {split: dict.fromkeys(names, 0) for split in SPLITS}
    widths, heights, sizes = [], [], Counter()
    for split, items in splits.items():
        for item in items:
            for cls, (w, h) in zip(item.classes, item.boxes, strict=True):
                per_split[split][names[cls]] += 1
                widths.append(w)
                heights.append(h)
                area = w * item.shape[1] * h * item.shape[0]
                # COCO's size classes, in pixels of the original image.
                sizes["small" if area < 32**2 else "medium" if area < 96**2 else "large"] += 1
    every = [item for items in splits.values() for item in items]
    return {
        "classes": len(names),
        "images": len(every),
        "train_images": len(splits["train"]),
        "val_images": len(splits["val"]),
        "background_images": {s: sum(not i.rows for i in splits[s]) for s in SPLITS},
        "instances": {n: per_split["train"][n] + per_split["val"][n] for n in names},
        "instances_per_split": per_split,
        "boxes": {"count": len(widths), "width": _quantiles(widths),
                  "height": _quantiles(heights),
                  "sizes": {k: sizes[k] for k in ("small", "medium", "large")}},
        "image_size": {"min_hw": [min(i.shape[0] for i in every), min(i.shape[1] for i in every)],
                       "max_hw": [max(i.shape[0] for i in every), max(i.shape[1] for i in every)]},
    }


def _content_hash(names: list[str], splits: dict[str, list[Checked]]) -> str:
    """sha256 over names, split membership, image bytes and label rows: not paths, not times."""
    digest = hashlib.sha256(json.dumps(names).encode())
    for split in SPLITS:
        for item in sorted(splits[split], key=lambda i: i.sample.rel):
            digest.update(f"{split}/{item.sample.rel}\0{item.digest}\0".encode())
            digest.update("\n".join(item.rows).encode() + b"\0")
    return digest.hexdigest()


def _inspect(root: Path, seed: int, val_fraction: float
             ) -> tuple[Layout, dict[str, list[Checked]], dict, str]:
    layout = discover(root)
    checked = validate(layout)
    check_boxes(layout, checked)
    if not layout.val:
        layout.warnings.append(f"no val split: {round(val_fraction * 100)}% of train taken as "
                               f"val (seed {seed}, stratified by class).")
    splits = _split(layout, checked, seed, val_fraction)
    if layout.val:  # a seeded split of train keeps byte-identical copies wherever they fall
        check_leaks(splits, layout.root)
    stats = _statistics(layout.names, splits)
    background, train_images = stats["background_images"]["train"], stats["train_images"]
    if train_images and background / train_images > BACKGROUND_SHARE:
        layout.warnings.append(
            f"{background} of {train_images} training images ({background / train_images:.0%}) "
            "have no boxes: a detector trained mostly on background learns to predict nothing; "
            "check that the labels/ folder matches images/, or keep background images to about "
            "10% (ultralytics' advice).")
    for warning in layout.warnings:
        log.warning("%s", warning)
    return layout, splits, stats, _content_hash(layout.names, splits)


def _converted(root: Path, dest: Path, mode: str, origin: Path | None = None
               ) -> tuple[Path, formats.Conversion | None]:
    """root itself when it is in the YOLO layout, else dest holding its conversion; origin:
    the local folder root mirrors with links, if it does."""
    if formats.detect(root) == "yolo":
        return root, None
    conversion = formats.convert(root, dest, mode, export=origin)
    for warning in conversion.warnings:
        log.warning("%s", warning)
    return dest, conversion


def _inspect_export(root: Path, export: Path, conversion: formats.Conversion | None, seed: int,
                    val_fraction: float, uri: str
                    ) -> tuple[Layout, dict[str, list[Checked]], dict, str]:
    """_inspect of root; a converted export's errors name the export's files (under uri), not
    those of the converted copy, which the user never sees."""
    try:
        return _inspect(root, seed, val_fraction)
    except UserError as err:
        if conversion is None:
            raise
        text = str(err)
        for rel, source in conversion.image_sources.items():
            if rel in text:  # only on a failure: the map has one entry per image
                text = text.replace(rel, os.path.relpath(source, export))
        if text == str(err):
            raise
        raise UserError(f"{text.rstrip('.')} (files of the export {uri}).") from None


def _local_export(uri: str, out_dir: Path) -> Path | None:
    """The folder of a local annotation export (COCO, NDJSON, VOC), else None (fetch it).

    Converting reads the export and only links its images, so it needs no copy of its own;
    the YOLO layout is still copied (its checks may repair files, and splits move them).
    """
    if not uri.strip() or storage.is_remote(uri) or urlparse(uri).scheme == "synthetic":
        return None
    try:
        source = local_folder(uri)
    except UserError:
        return None  # fetch names the problem
    if formats.detect(source) == "yolo":
        return None
    refuse_inside(out_dir, source, what="where the prepared dataset goes,")
    return source


def _with_conversion(layout: Layout, conversion: formats.Conversion | None) -> dict | None:
    if conversion is None:
        return None
    layout.warnings[:0] = conversion.warnings
    return conversion.report()


# ------------------------------------------------------------------------------------ public API


def check_dataset(uri: str, *, seed: int = 0, val_fraction: float = 0.2) -> dict:
    """Validates the dataset at uri and describes it, writing nothing outside a temporary folder.

    Returns:
        {"uri", "names", "stats", "content_hash", "warnings", "conversion"}; the hash equals
        what prepare_dataset would give with the same seed and val_fraction; conversion says
        how an export was read (None for the YOLO layout).
    """
    _check_fraction(val_fraction)
    with tempfile.TemporaryDirectory(prefix="kfp-yolo-check-") as scratch:
        export = fetch(uri, Path(scratch) / "source", link=True)
        # a local folder is mirrored with links: its images must resolve inside the folder
        origin = _local_export(uri, Path(scratch) / "out")
        root, conversion = _converted(export, Path(scratch) / "converted", "symbolic", origin)
        layout, _, stats, content_hash = _inspect_export(root, export, conversion, seed,
                                                         val_fraction, uri)
    return {"uri": uri, "names": layout.names, "stats": stats, "content_hash": content_hash,
            "warnings": layout.warnings, "conversion": _with_conversion(layout, conversion)}


def prepare_dataset(uri: str, out_dir: str | Path, *, seed: int = 0,
                    val_fraction: float = 0.2) -> PreparedDataset:
    """Fetches and validates uri; writes out_dir/{images,labels}/{train,val} and data.yaml.

    Raises:
        UserError: one sentence naming the bad file (and line), before anything is written
            under out_dir besides its scratch folder.
    """
    _check_fraction(val_fraction)
    out_dir = Path(out_dir).resolve()
    if any((out_dir / name).exists() for name in ("images", "labels", "data.yaml")):
        raise UserError(f"{out_dir} already holds a dataset; give an empty folder.")
    staging = out_dir / ".source"  # on out_dir's filesystem, so files move instead of copying
    converted = out_dir / ".converted"  # hard links into the export: no second copy
    for folder in (staging, converted):
        shutil.rmtree(folder, ignore_errors=True)
    try:
        # a local export is converted from where it lies (its images hard-linked, copied only
        # across filesystems); everything else is fetched into staging first
        export = _local_export(uri, out_dir) or fetch(uri, staging)
        root, conversion = _converted(export, converted, "hard")
        layout, splits, stats, content_hash = _inspect_export(root, export, conversion, seed,
                                                              val_fraction, uri)
        _publish(out_dir, splits)
    finally:
        for folder in (staging, converted):
            shutil.rmtree(folder, ignore_errors=True)
    source = _with_conversion(layout, conversion)
    data_yaml = out_dir / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": str(out_dir), "train": "images/train", "val": "images/val",
        "nc": len(layout.names), "names": dict(enumerate(layout.names)),
        **({"source": source} if source else {}),
    }, sort_keys=False))
    return PreparedDataset(data_yaml=data_yaml, names=layout.names, stats=stats,
                           content_hash=content_hash, warnings=layout.warnings, conversion=source)


def _publish(out_dir: Path, splits: dict[str, list[Checked]]) -> None:
    """Moves the checked images into the YOLO layout and writes their cleaned labels."""
    for split in SPLITS:  # an image listed in both splits was refused (check_leaks)
        for item in splits[split]:
            image = out_dir / "images" / split / item.sample.rel
            image.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item.sample.image, image)
            if item.rows:
                label = label_path(image)
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("\n".join(item.rows) + "\n")






