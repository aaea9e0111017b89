"""ultralytics' NDJSON datasets (one `*.ndjson` file: a dataset line, then one line per image).

The first line is `{"type": "dataset", "task": "detect", "class_names": {"0": "cat", ...}}`;
each further line is `{"type": "image", "file": "a.jpg", "split": "train", "width": W,
"height": H, "annotations": {"boxes": [[class, x_center, y_center, width, height], ...]}}` with
normalised coordinates (`segment` datasets: `"segments": [[class, x1, y1, x2, y2, ...]]`, read
as their polygons' boxes). Images are looked for where ultralytics puts them
(`<path>/images/<split>/<file>`, path from the dataset line) and beside the file
(`images/<split>/`, `images/`, `<split>/`, the top folder).

Why not ultralytics' `convert_ndjson_to_yolo`: it downloads each image from its `url` (kfp-yolo
downloads nothing at run time), needs aiohttp, renames every image to its line number, copies
local images, and stops on the first bad record with a ValueError that names no line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from kfp_yolo.components.data.formats.common import (
    Conversion,
    Item,
    box_row,
    check_suffix,
    find_image,
    image_size,
)
from kfp_yolo.components.data.formats.jsonstream import invalid_json
from kfp_yolo.components.errors import UserError

__all__ = ["find_ndjson", "read_ndjson"]

_SPLITS = ("train", "val", "test")


def find_ndjson(root: Path) -> Path | None:
    """The dataset's one .ndjson file, or None."""
    found = sorted(p for p in root.glob("*.ndjson") if p.is_file())
    if len(found) > 1:
        raise UserError(f"{', '.join(p.name for p in found)}: several NDJSON files; give a folder "
                        "with one.")
    return found[0] if found else None


def _names(record: object, shown: str, line: int) -> tuple[list[str], str]:
    if not isinstance(record, dict) or not isinstance(record.get("class_names"), dict):
        raise UserError(f"{shown} line {line}: the first line must be the dataset record with "
                        "class_names, e.g. {\"type\": \"dataset\", \"task\": \"detect\", "
                        "\"class_names\": {\"0\": \"cat\"}}.")
    task = record.get("task", "detect")
    if task not in ("detect", "segment"):
        raise UserError(f"{shown} line {line}: task {task!r}; kfp-yolo trains detectors, so it "
                        "reads detect (and segment, as boxes) datasets.")
    try:
        by_id = {int(k): str(v).strip() for k, v in record["class_names"].items()}
    except ValueError:
        raise UserError(f"{shown} line {line}: class_names keys must be class ids 0, 1, 2, "
                        "...") from None
    if not by_id or min(by_id) < 0:
        raise UserError(f"{shown} line {line}: class_names is empty or has a negative id; list "
                        "the classes from 0.")
    # ultralytics fills a gap in the ids with 'class<i>' so the ids keep their meaning.
    return [by_id.get(i) or f"class{i}" for i in range(max(by_id) + 1)], task


def _boxes(annotations: object, task: str, where: str) -> list[list]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        raise UserError(f"{where}: annotations is not an object; export again.")
    rows = annotations.get("boxes" if task == "detect" else "segments") or []
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise UserError(f"{where}: annotations are not lists of numbers; export again.")
    return rows


def read_ndjson(root: Path, path: Path) -> tuple[list[Item], Conversion]:
    """Reads the NDJSON file; raises UserError naming the line of the first broken record."""
    shown = path.relative_to(root).as_posix()
    conversion = Conversion("ndjson", "ultralytics", [shown], [])
    items: list[Item] = []
    seen: dict[tuple[str, str], int] = {}
    names: list[str] = []
    task, base = "detect", root
    with path.open(encoding="utf-8-sig") as handle:
        for number, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                column = min(exc.pos, len(text.rstrip("\r\n"))) + 1  # not past the line's end
                raise invalid_json(shown, number, exc.msg, column) from None
            except UnicodeDecodeError:
                raise UserError(f"{shown}: not UTF-8 text; export again as UTF-8.") from None
            if not names:
                names, task = _names(record, shown, number)
                if isinstance(record.get("path"), str):
                    base = root / record["path"]
                continue
            items.append(_item(record, shown, number, names, task, root, base, seen, conversion))
    if not names:
        raise UserError(f"{shown}: empty; export the dataset again.")
    conversion.names = names
    conversion.source_ids = list(range(len(names)))
    return items, conversion


def _item(record: object, shown: str, number: int, names: list[str], task: str, root: Path,
          base: Path, seen: dict[tuple[str, str], int], conversion: Conversion) -> Item:
    where = f"{shown} line {number}"
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        raise UserError(f"{where}: an image record needs its \"file\" name.")
    name, split = record["file"], record.get("split", "train")
    if split not in _SPLITS:
        raise UserError(f"{where}: split {split!r} is not one of train, val, test.")
    where = f"{where} ({name!r})"
    check_suffix(name, where)
    first = seen.setdefault((split, name), number)
    if first != number:
        raise UserError(f"{where}: {split} lists {name!r} again (first on line {first}); give "
                        "every image its own name.")
    bases = [base / "images" / split, root / "images" / split, root / "images", root / split,
             root]
    url = record.get("url")
    if isinstance(url, str) and "://" not in url:
        bases.append((root / url).parent)  # a url relative to the file
    found = find_image(name, bases)
    if found is None:
        hint = (f" (only at {url}: kfp-yolo downloads nothing at run time)"
                if isinstance(url, str) and "://" in url else "")
        raise UserError(f"{where}: the image is missing{hint}; put it at images/{split}/{name} "
                        "beside the NDJSON file.")
    width, height = record.get("width"), record.get("height")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < math.inf
               for v in (width, height)):
        width, height = image_size(found[0], where)
    rows = []
    for index, values in enumerate(_boxes(record.get("annotations"), task, where), 1):
        culprit = f"{where}, box {index}"
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values) or (
                len(values) != 5 if task == "detect" else len(values) < 7 or len(values) % 2 == 0):
            raise UserError(f"{culprit}: {values!r} is not [class, x_center, y_center, width, "
                            "height]" + (" (or class and polygon points)" if task != "detect"
                                         else "") + "; export again.")
        cls = values[0]
        if cls != int(cls) if math.isfinite(cls) else True:
            raise UserError(f"{culprit}: class {cls!r} is not a class id; export again.")
        if not 0 <= cls < len(names):
            raise UserError(f"{culprit}: class {int(cls)} is not in class_names "
                            f"(0..{len(names) - 1}); fix the record or add the class.")
        if task == "detect":
            xc, yc, w, h = values[1:]
            x, y = xc - w / 2, yc - h / 2
        else:
            xs, ys = values[1::2], values[2::2]
            x, y, w, h = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
            conversion.count("polygon_boxes")
        rows.append(box_row(int(cls), x * width, y * height, w * width, h * height, width,
                            height, culprit, conversion))
    return Item(found[0], found[1], split, rows, f"{shown} line {number}")
