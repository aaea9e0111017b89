"""Validation of every image and label of a dataset, in parallel, failing on the first bad file.

Images are decoded and passed to ultralytics' own `verify_image_label`, which re-saves some
JPEGs in place: it only ever sees the working copy. Labels are parsed with a line number for
each error; ultralytics' rules are followed (polygons accepted, 1% coordinate tolerance).
"""

import hashlib
import math
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kfp_yolo.components.data.layout import Layout, Sample, rel_path
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.progress import Progress
from kfp_yolo.components.runtime import usable_cpus
from kfp_yolo.components.ultralytics_patches import original_image_open, verify_image_label

__all__ = ["COORD_TOLERANCE", "Checked", "check_boxes", "check_leaks", "validate"]

COORD_TOLERANCE = 0.01
"""ultralytics accepts coordinates up to 1% outside [0, 1] and clips them; so do we."""


@dataclass
class Checked:
    """One validated image: its label rows (duplicates dropped) and what the stats need."""

    sample: Sample
    rows: list[str]
    classes: list[int]
    boxes: list[tuple[float, float]]
    """Normalised (width, height) of each box."""
    shape: tuple[int, int]
    """(height, width) in pixels."""
    digest: str
    warning: str = ""


# ----------------------------------------------------------------------------------- validation


def _parse_label(path: Path, rel: str, names: int, names_file: str
                 ) -> tuple[list[str], list[int], list[tuple[float, float]], list[int]]:
    """(rows, class ids, box sizes, duplicate line numbers) of one label file.

    Stricter than ultralytics only where training would otherwise go wrong silently (a zero-size
    box); everything it accepts, polygons included, is accepted, with a line number on errors.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{rel}: not UTF-8 text; save the label file as UTF-8.") from None
    rows: list[str] = []
    classes: list[int] = []
    boxes: list[tuple[float, float]] = []
    duplicates: list[int] = []
    seen: set[tuple[float, ...]] = set()
    polygons: set[bool] = set()
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{rel} line {number}"
        values = []
        for token in tokens:
            try:
                value = float(token)
            except ValueError:
                raise UserError(f"{where}: {token!r} is not a number; a row is 'class x_center "
                                "y_center width height' in numbers.") from None
            if not math.isfinite(value):
                raise UserError(f"{where}: {token!r} is not a finite number; fix the value.")
            values.append(value)
        # ultralytics: more than 6 values on a row is a polygon (class, then x y pairs).
        polygon = len(values) > 6
        if len(values) != 5 and not (polygon and len(values) % 2 == 1):
            raise UserError(f"{where}: {len(values)} values; a box row has 5 (class x_center "
                            "y_center width height), a polygon row a class and 3 or more x y "
                            "pairs.")
        polygons.add(polygon)
        if len(polygons) > 1:
            raise UserError(f"{where}: box and polygon rows are mixed in one file, which "
                            "ultralytics rejects; use one kind of row per file.")
        cls = values[0]
        if cls != int(cls):
            raise UserError(f"{where}: class id {tokens[0]!r} is not a whole number; fix the "
                            "label.")
        if not 0 <= cls < names:
            raise UserError(f"{where}: class id {int(cls)} is outside the {names} names in "
                            f"{names_file}; fix the label or add the class.")
        coords = values[1:]
        for token, value in zip(tokens[1:], coords, strict=True):
            if not -COORD_TOLERANCE <= value <= 1 + COORD_TOLERANCE:
                raise UserError(f"{where}: coordinate {token} is outside [0, 1]; coordinates are "
                                "fractions of the image width and height.")
        if polygon:
            xs, ys = coords[0::2], coords[1::2]
            width, height = max(xs) - min(xs), max(ys) - min(ys)
        else:
            width, height = coords[2], coords[3]
        if width <= 0 or height <= 0:
            side = "width" if width <= 0 else "height"
            raise UserError(f"{where}: box {side} {min(width, height):g} is not positive; every "
                            "box needs a width and a height above 0.")
        key = tuple(values)
        if key in seen:
            duplicates.append(number)
            continue
        seen.add(key)
        rows.append(" ".join(tokens))
        classes.append(int(cls))
        boxes.append((width, height))
    return rows, classes, boxes, duplicates


def _decode(path: Path, rel: str, open_image: Callable) -> str:
    """Decodes the image: Pillow's verify() alone misses a truncated JPEG. Returns a warning
    sentence for an image above Pillow's decompression-bomb limit ('' otherwise); one more than
    twice that limit, which Pillow refuses to decode, is a UserError."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS or 0
    warning = ""
    try:
        with open_image(path) as image:
            pixels = image.width * image.height
            if limit and pixels > limit:
                warning = (f"{rel}: {image.width}x{image.height} pixels ({pixels / 1e6:.0f} "
                           f"megapixels) is above Pillow's decompression-bomb limit "
                           f"({limit / 1e6:.0f} megapixels); it is used, but every epoch "
                           "decodes it whole to resize it: shrink it to a few thousand pixels "
                           "a side.")
            if image.format in ("JPEG", "MPO"):
                # Decoding at 1/8 scale still reads every entropy-coded byte, 4x faster.
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except Image.DecompressionBombError:
        raise UserError(f"{rel}: more than {2 * limit / 1e6:.0f} megapixels, which Pillow "
                        "refuses to decode (twice its decompression-bomb limit); shrink the "
                        "image.") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises a dozen kinds for bad files
        if type(exc).__name__ == "UnidentifiedImageError":
            raise UserError(f"{rel}: not an image Pillow can read, despite its extension; "
                            "replace or remove the file.") from None
        raise UserError(f"{rel}: corrupt or truncated image ({exc}); replace the file.") from None
    return warning


def _check_sample(sample: Sample, layout: Layout, open_image: Callable) -> Checked:
    """Validates one image and its label; raises UserError naming the file (and line)."""
    image_rel = rel_path(sample.image, layout.root)
    size_warning = _decode(sample.image, image_rel, open_image)
    rows, classes, boxes, duplicates = [], [], [], []
    if sample.label.is_file():
        rows, classes, boxes, duplicates = _parse_label(
            sample.label, rel_path(sample.label, layout.root), len(layout.names), layout.names_file)
    # ultralytics' own check is the last word: whatever it rejects, training would drop.
    verdict = verify_image_label(sample.image, sample.label, len(layout.names))
    if verdict.corrupt:
        raise UserError(f"{image_rel}: ultralytics rejects it ({verdict.reason}); fix or remove "
                        "it.")
    warning = size_warning
    if duplicates:
        lines = ", ".join(map(str, duplicates))
        warning = " ".join(filter(None, (warning, (
            f"{rel_path(sample.label, layout.root)}: duplicate rows dropped (line"
            f"{'s' if len(duplicates) > 1 else ''} {lines})."))))
    # Hashed after ultralytics' check, which may have rewritten a damaged JPEG (in the copy).
    digest = hashlib.sha256(sample.image.read_bytes()).hexdigest()
    assert verdict.shape is not None  # a pair that is not corrupt has a shape
    return Checked(sample, rows, classes, boxes, verdict.shape, digest, warning)


def _bomb_warning() -> type[Warning]:
    from PIL import Image

    return Image.DecompressionBombWarning


def validate(layout: Layout) -> dict[Path, Checked]:
    """Checks every image and label in parallel; the first bad file (in path order) raises."""
    from kfp_yolo.components.runtime import offline_environment

    offline_environment()  # before ultralytics is imported: it must not download anything
    # Pillow's own Image.open: it raises UnidentifiedImageError where ultralytics' would install
    open_image = original_image_open()
    samples = list({s.image: s for s in layout.train + layout.val}.values())
    workers = min(32, 2 * usable_cpus())  # Pillow and hashing release the GIL
    # Pillow's raw DecompressionBombWarning is said as a sentence per image instead (_decode)
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
        warnings.simplefilter("ignore", _bomb_warning())
        futures = [pool.submit(_check_sample, s, layout, open_image) for s in samples]
        checked = {}
        try:
            with Progress("dataset check", len(samples), "images") as progress:
                for sample, future in zip(samples, futures, strict=True):
                    checked[sample.image] = future.result()
                    progress.advance()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    layout.warnings.extend(c.warning for c in checked.values() if c.warning)
    return checked


# ------------------------------------------------------------------------ dataset-wide checks


def check_boxes(layout: Layout, checked: dict[Path, Checked]) -> None:
    """Refuses a dataset without a single box: training on it learns nothing, silently."""
    if any(item.rows for item in checked.values()):
        return
    where = ("labels go in labels/ mirroring images/ (images/train/a.jpg -> "
             "labels/train/a.txt)")
    if layout.misplaced_labels:
        count = len(layout.misplaced_labels)
        raise UserError(f"the dataset has no boxes: its {count} .txt file"
                        f"{'s sit' if count > 1 else ' sits'} among the images (e.g. "
                        f"{layout.misplaced_labels[0]}), where ultralytics does not read labels; "
                        f"{where}.")
    raise UserError(f"the dataset has no boxes: none of its {len(checked)} images has a label "
                    f"row; {where}, one row 'class x_center y_center width height' per box.")


def check_leaks(splits: dict[str, list[Checked]], root: Path) -> None:
    """Refuses an image whose bytes are in train and in val: val metrics would flatter it."""
    train = {item.digest: item for item in splits["train"]}
    for item in splits["val"]:
        twin = train.get(item.digest)
        if twin is not None:
            first, second = rel_path(twin.sample.image, root), rel_path(item.sample.image, root)
            if first == second:
                raise UserError(f"{first} is in both train and val, which leaks it into the "
                                "validation; list it in one split only.")
            raise UserError(f"{first} (train) and {second} (val) are the same image, which leaks "
                            "it into the validation; remove one of them.")
