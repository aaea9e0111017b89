"""prepare_dataset: fetch a YOLO dataset, validate it, split it, describe it.

Accepted layouts (from a path, file://, s3://, minio:// or synthetic://shapes):
- data.yaml with names and train/val folders, relative to the folder holding data.yaml (the
  dataset has moved, so `path:` only serves to make absolute train/val paths relative), or no
  data.yaml and a classes.txt (one name a line) beside images/ and labels/.
- images/{train,val} or a flat images/; labels mirror images (ultralytics' rule: the last
  `images` folder of the image's path becomes `labels`, the suffix becomes .txt).
- no val split: a seeded split of train, stratified by each image's rarest class.

Validation fails fast with one sentence naming the file (and line). Images are checked by
decoding them and by ultralytics' own `verify_image_label`; that function re-saves some JPEGs in
place, so it only ever sees our copy. The source is never written.

Pure logic first; the KFP component wrapper is at the bottom. (No `from __future__ import
annotations` in component modules: KFP reads the annotations of component functions.)
"""

import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import yaml
from kfp.dsl import Dataset, Markdown, Output

from components import storage
from components.errors import UserError
from components.runtime import usable_cpus

__all__ = ["PreparedDataset", "check_dataset", "prepare_dataset", "prepare_dataset_component",
           "render_report"]

log = logging.getLogger(__name__)

# ultralytics.data.utils.IMG_FORMATS (a test keeps them equal); importing ultralytics costs
# seconds, too many for finding files or refusing a bad URI.
IMAGE_SUFFIXES = {f".{s}" for s in ("avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg",
                                    "mpo", "png", "tif", "tiff", "webp")}
COORD_TOLERANCE = 0.01
"""ultralytics accepts coordinates up to 1% outside [0, 1] and clips them; so do we."""
SPLITS = ("train", "val")


@dataclass
class PreparedDataset:
    """What prepare_dataset wrote: data.yaml with absolute paths, and statistics."""

    data_yaml: Path
    names: list[str]
    stats: dict = field(default_factory=dict)
    content_hash: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Sample:
    """One image of the source with its label, as found (before validation)."""

    image: Path
    label: Path
    rel: str
    """Path under its split in the output, e.g. 'sub/img1.jpg'."""


@dataclass
class _Checked:
    """One validated image: its label rows (duplicates dropped) and what the stats need."""

    sample: _Sample
    rows: list[str]
    classes: list[int]
    boxes: list[tuple[float, float]]
    """Normalised (width, height) of each box."""
    shape: tuple[int, int]
    """(height, width) in pixels."""
    digest: str
    warning: str = ""


@dataclass
class _Layout:
    root: Path
    names: list[str]
    names_file: str
    """Where the names came from (data.yaml, classes.txt), for messages."""
    train: list[_Sample]
    val: list[_Sample]
    warnings: list[str]


# ------------------------------------------------------------------------------------- fetching


def _fetch(uri: str, dest: Path, *, link: bool = False) -> Path:
    """Brings the dataset at uri into dest; returns dest.

    link: hard-link local files instead of copying (for a read-only check); ultralytics replaces
    a file it repairs by renaming a new one over it, which never writes through a link.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "synthetic":
        from components.synth import SynthSpec, synthesize

        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        try:
            spec = SynthSpec(**{k: int(v) for k, v in query.items()})
        except (TypeError, ValueError):
            raise UserError(f"{uri!r}: synthetic:// takes images=, imgsz=, seed=, max_objects= "
                            "as integers, e.g. synthetic://shapes?images=64&imgsz=128.") from None
        synthesize(dest, spec)
        return dest
    if storage.is_remote(uri):
        storage.download(uri, dest)
        if not dest.is_dir():
            raise UserError(f"{uri} is one object; give the prefix that holds images/ and "
                            "labels/.")
        return dest
    try:
        source = storage.local_path(uri).expanduser()
    except UserError:
        raise UserError(f"{uri!r}: unknown URI scheme {parsed.scheme!r}; use s3://, minio://, "
                        "file://, a path, or synthetic://shapes.") from None
    if not source.is_dir():
        raise UserError(f"{uri!r}: dataset folder does not exist; give a folder with images/ "
                        "and labels/.")
    copy = shutil.copy2
    if link:
        def copy(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:  # another filesystem, or links not allowed
                shutil.copy2(src, dst)
    shutil.copytree(source, dest, copy_function=copy, dirs_exist_ok=True)
    return dest


# ------------------------------------------------------------------------------------ discovery


def _label_path(image: Path) -> Path:
    """ultralytics' img2label_paths: the last /images/ becomes /labels/, the suffix .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _read_names(root: Path) -> tuple[list[str], dict, str]:
    """(names, the data.yaml content or {}, the file the names came from)."""
    yamls = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    chosen = root / "data.yaml" if (root / "data.yaml").is_file() else None
    if chosen is None and len(yamls) == 1:
        chosen = yamls[0]
    if chosen is None and len(yamls) > 1:
        raise UserError(f"{', '.join(p.name for p in yamls)}: several YAML files and none is "
                        "data.yaml; name the dataset's one data.yaml.")
    if chosen is not None:
        try:
            data = yaml.safe_load(chosen.read_text(encoding="utf-8-sig")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise UserError(f"{chosen.name}: not valid YAML ({type(exc).__name__}); fix its "
                            "syntax.") from None
        if not isinstance(data, dict):
            raise UserError(f"{chosen.name}: expected a mapping with names:, train:, val:.")
        return _names_from_yaml(data, chosen.name), data, chosen.name
    classes = root / "classes.txt"
    if classes.is_file():
        names = [line.strip() for line in classes.read_text(encoding="utf-8-sig").splitlines()]
        names = [n for n in names if n]
        if not names:
            raise UserError("classes.txt is empty; list one class name a line.")
        return names, {}, "classes.txt"
    raise UserError("the dataset has no data.yaml and no classes.txt, so its class names are "
                    "unknown; add data.yaml with names: [...].")


def _names_from_yaml(data: dict, yaml_name: str) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise UserError(f"{yaml_name}: names keys must be class ids 0, 1, 2, ...") from None
        if keys != list(range(len(keys))):
            raise UserError(f"{yaml_name}: names keys must be 0..{len(keys) - 1} without gaps, "
                            f"got {keys}.")
        names = [names.get(k, names.get(str(k))) for k in keys]
    if not names or not isinstance(names, list):
        raise UserError(f"{yaml_name}: 'names' is missing or empty; list the class names, e.g. "
                        "names: [cat, dog].")
    if "nc" in data and data["nc"] != len(names):
        raise UserError(f"{yaml_name}: nc is {data['nc']} but names lists {len(names)} classes; "
                        "make them agree.")
    return [str(n) for n in names]


def _yaml_dirs(root: Path, data: dict, key: str, yaml_name: str) -> list[Path] | None:
    """The folders data.yaml names for a split, resolved inside the dataset; None when absent."""
    value = data.get(key)
    if not value:
        return None
    entries = value if isinstance(value, list) else [value]
    base = data.get("path")
    folders = []
    for entry in entries:
        entry = str(entry)
        candidate = Path(entry)
        if candidate.is_absolute() and base and Path(str(base)).is_absolute():
            try:  # an absolute path under the old `path:`: keep the part inside the dataset
                candidate = candidate.relative_to(str(base))
            except ValueError:
                pass
        if candidate.is_absolute():
            raise UserError(f"{yaml_name}: {key}: {entry!r} is an absolute path; make it relative "
                            "to the folder holding the YAML file.")
        if entry.endswith(".txt"):
            raise UserError(f"{yaml_name}: {key}: {entry!r} is an image list; give folders.")
        folder = (root / candidate).resolve()
        # Roboflow exports write '../train/images' next to data.yaml: read it as 'train/images'.
        if not folder.is_dir() and candidate.parts and candidate.parts[0] == "..":
            folder = (root / Path(*[p for p in candidate.parts if p != ".."])).resolve()
        if not folder.is_relative_to(root.resolve()) or not folder.is_dir():
            raise UserError(f"{yaml_name}: {key}: {entry!r} is not a folder of the dataset; fix "
                            "the path or add the folder.")
        folders.append(folder)
    return folders


def _scan(folders: list[Path], root: Path, warnings: list[str]) -> list[_Sample]:
    """Images under folders (recursively), in path order; other files are warned about."""
    samples = []
    for index, folder in enumerate(folders):
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                # A .txt beside images is their label when no 'images' folder is in the path.
                if path.suffix != ".txt" or _label_path(path.with_suffix(".jpg")) != path:
                    warnings.append(f"{_rel(path, root)}: not an image or label file; ignored.")
                continue
            rel = path.relative_to(folder).as_posix()
            samples.append(_Sample(path, _label_path(path),
                                   f"{index}/{rel}" if len(folders) > 1 else rel))
    return samples


def _discover(root: Path) -> _Layout:
    """Finds names, images and labels; raises UserError for a dataset of the wrong shape."""
    names, data, yaml_name = _read_names(root)
    warnings: list[str] = []
    train_dirs = _yaml_dirs(root, data, "train", yaml_name)
    val_dirs = _yaml_dirs(root, data, "val", yaml_name) if train_dirs else None
    if train_dirs is None:
        images = root / "images"
        if not images.is_dir():
            raise UserError("the dataset has no images/ folder; a YOLO dataset has images/ and "
                            "labels/ (or data.yaml naming its folders).")
        if (images / "train").is_dir():
            train_dirs = [images / "train"]
            val_dirs = [images / "val"] if (images / "val").is_dir() else None
        else:
            train_dirs = [images]
    resolved = [d.resolve() for d in train_dirs]
    train = _scan(resolved, root.resolve(), warnings)
    val = _scan([d.resolve() for d in val_dirs], root.resolve(), warnings) if val_dirs else []
    _check_pairs(root.resolve(), train + val, resolved + [d.resolve() for d in val_dirs or []],
                 warnings)
    if not train and not val:
        raise UserError("the dataset is empty: no images found under "
                        f"{', '.join(_rel(d, root.resolve()) or '.' for d in resolved)}; add "
                        "images.")
    shared = {s.image for s in train} & {s.image for s in val}
    if shared:
        warnings.append(f"train and val share {len(shared)} images; the val metrics will "
                        "flatter the model.")
    return _Layout(root.resolve(), names, yaml_name, train, val, warnings)


def _check_pairs(root: Path, samples: list[_Sample], image_dirs: list[Path],
                 warnings: list[str]) -> None:
    """Every label has its image (and only one); stray files in label folders are warned about."""
    owners: dict[Path, Path] = {}
    for sample in samples:
        other = owners.setdefault(sample.label, sample.image)
        if other != sample.image:
            raise UserError(f"{_rel(other, root)} and {_rel(sample.image, root)} share the label "
                            f"{_rel(sample.label, root)}; rename one of the images.")
    label_dirs = {_label_path(d / "x.jpg").parent for d in image_dirs}
    label_dirs = {d for d in label_dirs if d.is_dir() and d not in image_dirs}
    seen: set[Path] = set()
    for folder in sorted(label_dirs):
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path in seen:
                continue
            seen.add(path)
            if path.suffix != ".txt":
                warnings.append(f"{_rel(path, root)}: not an image or label file; ignored.")
            elif path not in owners:
                raise UserError(f"{_rel(path, root)}: label file without its image (no "
                                f"{_image_pattern(_rel(path, root))}); add the image or delete "
                                "the label.")


def _image_pattern(label_rel: str) -> str:
    """'labels/train/a.txt' -> 'images/train/a.*': where the label's image should be."""
    parts = label_rel.rsplit(".", 1)[0].split("/")
    if "labels" in parts:
        index = len(parts) - 1 - parts[::-1].index("labels")
        parts[index] = "images"
    return "/".join(parts) + ".*"


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


def _decode(path: Path, rel: str, open_image: Callable) -> None:
    """Decodes the image: Pillow's verify() alone misses a truncated JPEG."""
    try:
        with open_image(path) as image:
            if image.format in ("JPEG", "MPO"):
                # Decoding at 1/8 scale still reads every entropy-coded byte, 4x faster.
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except Exception as exc:  # noqa: BLE001 - Pillow raises a dozen kinds for bad files
        if type(exc).__name__ == "UnidentifiedImageError":
            raise UserError(f"{rel}: not an image Pillow can read, despite its extension; "
                            "replace or remove the file.") from None
        raise UserError(f"{rel}: corrupt or truncated image ({exc}); replace the file.") from None


def _check_sample(sample: _Sample, layout: _Layout, verify: Callable, open_image: Callable
                  ) -> _Checked:
    """Validates one image and its label; raises UserError naming the file (and line)."""
    image_rel = _rel(sample.image, layout.root)
    _decode(sample.image, image_rel, open_image)
    rows, classes, boxes, duplicates = [], [], [], []
    if sample.label.is_file():
        rows, classes, boxes, duplicates = _parse_label(
            sample.label, _rel(sample.label, layout.root), len(layout.names), layout.names_file)
    # ultralytics' own check is the last word: whatever it rejects, training would drop.
    result = verify((str(sample.image), str(sample.label), "", False, len(layout.names), 0, 0,
                     False))
    if result[8]:
        reason = str(result[9]).split("ignoring corrupt image/label: ", 1)[-1]
        raise UserError(f"{image_rel}: ultralytics rejects it ({reason}); fix or remove it.")
    warning = ""
    if duplicates:
        lines = ", ".join(map(str, duplicates))
        warning = (f"{_rel(sample.label, layout.root)}: duplicate rows dropped (line"
                   f"{'s' if len(duplicates) > 1 else ''} {lines}).")
    # Hashed after ultralytics' check, which may have rewritten a damaged JPEG (in the copy).
    digest = hashlib.sha256(sample.image.read_bytes()).hexdigest()
    return _Checked(sample, rows, classes, boxes, tuple(result[2]), digest, warning)


def _validate(layout: _Layout) -> dict[Path, _Checked]:
    """Checks every image and label in parallel; the first bad file (in path order) raises."""
    from components.runtime import offline_environment

    offline_environment()  # before ultralytics is imported: it must not download anything
    from ultralytics.data.utils import verify_image_label
    from ultralytics.utils import patches

    # ultralytics patches Image.open to pip-install a HEIF plugin on unknown files; the original
    # gives a plain UnidentifiedImageError instead.
    open_image = getattr(patches, "_image_open", None)
    if open_image is None:
        from PIL import Image

        open_image = Image.open
    samples = list({s.image: s for s in layout.train + layout.val}.values())
    workers = min(32, 2 * usable_cpus())  # Pillow and hashing release the GIL
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_check_sample, s, layout, verify_image_label, open_image)
                   for s in samples]
        try:
            checked = {s.image: f.result() for s, f in zip(samples, futures, strict=True)}
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    layout.warnings.extend(c.warning for c in checked.values() if c.warning)
    return checked


# ------------------------------------------------------------------------- splitting, statistics


def _check_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction {val_fraction!r} must be between 0 and 1, e.g. 0.2.")


def _split(layout: _Layout, checked: dict[Path, _Checked], seed: int,
           val_fraction: float) -> dict[str, list[_Checked]]:
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
    strata: dict[int, list[_Checked]] = {}
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


def _statistics(names: list[str], splits: dict[str, list[_Checked]]) -> dict:
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


def _content_hash(names: list[str], splits: dict[str, list[_Checked]]) -> str:
    """sha256 over names, split membership, image bytes and label rows: not paths, not times."""
    digest = hashlib.sha256(json.dumps(names).encode())
    for split in SPLITS:
        for item in sorted(splits[split], key=lambda i: i.sample.rel):
            digest.update(f"{split}/{item.sample.rel}\0{item.digest}\0".encode())
            digest.update("\n".join(item.rows).encode() + b"\0")
    return digest.hexdigest()


def _inspect(root: Path, seed: int, val_fraction: float
             ) -> tuple[_Layout, dict[str, list[_Checked]], dict, str]:
    layout = _discover(root)
    checked = _validate(layout)
    if not layout.val:
        layout.warnings.append(f"no val split: {round(val_fraction * 100)}% of train taken as "
                               f"val (seed {seed}, stratified by class).")
    splits = _split(layout, checked, seed, val_fraction)
    for warning in layout.warnings:
        log.warning("%s", warning)
    return layout, splits, _statistics(layout.names, splits), _content_hash(layout.names, splits)


# ------------------------------------------------------------------------------------ public API


def check_dataset(uri: str, *, seed: int = 0, val_fraction: float = 0.2) -> dict:
    """Validates the dataset at uri and describes it, writing nothing outside a temporary folder.

    Returns:
        {"uri", "names", "stats", "content_hash", "warnings"}; the hash equals what
        prepare_dataset would give with the same seed and val_fraction.
    """
    _check_fraction(val_fraction)
    with tempfile.TemporaryDirectory(prefix="kfp-yolo-check-") as scratch:
        root = _fetch(uri, Path(scratch) / "source", link=True)
        layout, _, stats, content_hash = _inspect(root, seed, val_fraction)
    return {"uri": uri, "names": layout.names, "stats": stats, "content_hash": content_hash,
            "warnings": layout.warnings}


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
    shutil.rmtree(staging, ignore_errors=True)
    try:
        root = _fetch(uri, staging)
        layout, splits, stats, content_hash = _inspect(root, seed, val_fraction)
        _publish(out_dir, splits)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    data_yaml = out_dir / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": str(out_dir), "train": "images/train", "val": "images/val",
        "nc": len(layout.names), "names": dict(enumerate(layout.names)),
    }, sort_keys=False))
    return PreparedDataset(data_yaml=data_yaml, names=layout.names, stats=stats,
                           content_hash=content_hash, warnings=layout.warnings)


def _publish(out_dir: Path, splits: dict[str, list[_Checked]]) -> None:
    """Moves the checked images into the YOLO layout and writes their cleaned labels."""
    placed: dict[Path, Path] = {}
    for split in SPLITS:
        for item in splits[split]:
            image = out_dir / "images" / split / item.sample.rel
            image.parent.mkdir(parents=True, exist_ok=True)
            if item.sample.image in placed:  # listed in both splits
                shutil.copy2(placed[item.sample.image], image)
            else:
                os.replace(item.sample.image, image)
                placed[item.sample.image] = image
            if item.rows:
                label = _label_path(image)
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("\n".join(item.rows) + "\n")


def render_report(prepared: PreparedDataset) -> str:
    """A Markdown description of the prepared dataset."""
    s = prepared.stats
    background = s.get("background_images", {})
    lines = ["# Dataset", "",
             "| | train | val |", "|---|---|---|",
             f"| images | {s['train_images']} | {s['val_images']} |",
             f"| background images | {background.get('train', 0)} | {background.get('val', 0)} |",
             "", f"Content hash: `{prepared.content_hash}`", "",
             "## Instances per class", "", "| class | train | val | total |", "|---|---|---|---|"]
    per_split = s.get("instances_per_split", {})
    for name, total in s["instances"].items():
        train = per_split.get("train", {}).get(name, "")
        val = per_split.get("val", {}).get(name, "")
        lines.append(f"| {name} | {train} | {val} | {total} |")
    boxes = s.get("boxes")
    if boxes and boxes.get("count"):
        lines += ["", "## Boxes", "",
                  f"{boxes['count']} boxes; small (< 32² px) {boxes['sizes']['small']}, medium "
                  f"{boxes['sizes']['medium']}, large (>= 96² px) {boxes['sizes']['large']}.", "",
                  "| fraction of image | min | p10 | p50 | p90 | max |",
                  "|---|---|---|---|---|---|"]
        for side in ("width", "height"):
            q = boxes[side]
            lines.append(f"| {side} | {q['min']} | {q['p10']} | {q['p50']} | {q['p90']} | "
                         f"{q['max']} |")
    if "image_size" in s:
        lines += ["", f"Image sizes (h x w): {s['image_size']['min_hw']} to "
                      f"{s['image_size']['max_hw']}."]
    if prepared.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in prepared.warnings]
    return "\n".join(lines) + "\n"


def prepare_dataset_component(
    dataset_uri: str,
    seed: int,
    val_fraction: float,
    dataset: Output[Dataset],
    report: Output[Markdown],
) -> str:
    """KFP step: prepares the dataset into the Dataset artifact; returns its content hash."""
    from components.data_prep import prepare_dataset, render_report

    prepared = prepare_dataset(dataset_uri, dataset.path, seed=seed, val_fraction=val_fraction)
    dataset.metadata.update({"content_hash": prepared.content_hash, **prepared.stats})
    with open(report.path, "w") as handle:
        handle.write(render_report(prepared))
    return prepared.content_hash
