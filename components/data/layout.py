"""Where a YOLO dataset's images, labels and class names are: discovery.

`discover` finds the layout of a fetched dataset (data/source.py brings it into a working
folder; see data.prepare for the layouts accepted) and refuses, in one sentence naming the
file, what cannot be a dataset.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.yaml_text import parse_yaml

__all__ = ["IMAGE_SUFFIXES", "Layout", "Sample", "discover", "label_path", "rel_path"]

# ultralytics.data.utils.IMG_FORMATS (a test keeps them equal); importing ultralytics costs
# seconds, too many for finding files or refusing a bad URI.
IMAGE_SUFFIXES = {f".{s}" for s in ("avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg",
                                    "mpo", "png", "tif", "tiff", "webp")}


@dataclass
class Sample:
    """One image of the source with its label, as found (before validation)."""

    image: Path
    label: Path
    rel: str
    """Path under its split in the output, e.g. 'sub/img1.jpg'."""


@dataclass
class Layout:
    root: Path
    names: list[str]
    names_file: str
    """Where the names came from (data.yaml, classes.txt), for messages."""
    train: list[Sample]
    val: list[Sample]
    warnings: list[str]
    misplaced_labels: list[str] = field(default_factory=list)
    """.txt files among the images that ultralytics would not read as labels."""


# ------------------------------------------------------------------------------------ discovery


def label_path(image: Path) -> Path:
    """ultralytics' img2label_paths: the last /images/ becomes /labels/, the suffix .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def rel_path(path: Path, root: Path) -> str:
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
            text = chosen.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise UserError(f"{chosen.name}: not UTF-8 text; save it as UTF-8.") from None
        data = parse_yaml(text, chosen.name) or {}
        if not isinstance(data, dict):
            raise UserError(f"{chosen.name}: expected a mapping with names:, train:, val:.")
        return _names_from_yaml(data, chosen.name), data, chosen.name
    classes = root / "classes.txt"
    if classes.is_file():
        try:
            lines = classes.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise UserError("classes.txt: not UTF-8 text; save it as UTF-8.") from None
        names = [n for n in (line.strip() for line in lines) if n]
        if not names:
            raise UserError("classes.txt is empty; list one class name a line.")
        return _checked_names(names, "classes.txt"), {}, "classes.txt"
    raise UserError("the dataset has no data.yaml and no classes.txt, so its class names are "
                    "unknown, and no COCO JSON, NDJSON or Pascal VOC export was found; add "
                    "data.yaml with names: [...].")


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
        raise UserError(f"{yaml_name}: nc is {data['nc']!r} but names lists {len(names)} "
                        "classes; make them agree.")
    for index, name in enumerate(names):
        scalar = isinstance(name, str | int | float) and not isinstance(name, bool)
        if not scalar or not str(name).strip():
            raise UserError(f"{yaml_name}: names: class {index} is {name!r}; every class needs a "
                            "name of its own (a non-empty string).")
    return _checked_names([str(n).strip() for n in names], yaml_name)


def _checked_names(names: list[str], names_file: str) -> list[str]:
    """names, refused when two classes share one (their boxes and statistics would merge)."""
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in first:
            raise UserError(f"{names_file}: classes {first[name]} and {index} are both named "
                            f"{name!r}; give every class a name of its own.")
        first[name] = index
    return names


def _yaml_root(root: Path, data: dict, yaml_name: str, warnings: list[str]) -> Path:
    """The folder the splits are relative to: `path:` as ultralytics reads it (the dataset's
    root), in our copy. A folder of the dataset is that folder; an absolute path (where the
    dataset was) or one leading outside (ultralytics' `../datasets/coco8`) is the YAML's own
    folder, the second with a warning."""
    base = data.get("path")
    if base is None or str(base).strip() in ("", "."):
        return root
    if not isinstance(base, str):
        raise UserError(f"{yaml_name}: path: {base!r} is not a folder name; give the dataset's "
                        "root folder, relative to data.yaml (or leave path out).")
    candidate = Path(base)
    if candidate.is_absolute():
        return root
    try:
        folder = (root / candidate).resolve()
        inside = folder.is_relative_to(root.resolve()) and folder.is_dir()
    except (ValueError, OSError):  # a NUL byte, a name too long
        inside = False
    if inside:
        return folder
    warnings.append(f"{yaml_name}: path: {base!r} is not a folder of the dataset; its splits "
                    "were read relative to the folder holding it (set path: . to say so).")
    return root


def _yaml_dirs(root: Path, data: dict, key: str, yaml_name: str,
               top: Path | None = None) -> list[Path] | None:
    """The folders data.yaml names for a split, under top (_yaml_root); None when absent."""
    value = data.get(key)
    if not value:
        return None
    entries = value if isinstance(value, list) else [value]
    base = data.get("path")
    top = top or root
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
        try:
            folder = (top / candidate).resolve()
            # Roboflow exports write '../train/images' beside data.yaml: read it as train/images.
            if not folder.is_dir() and candidate.parts and candidate.parts[0] == "..":
                folder = (top / Path(*[p for p in candidate.parts if p != ".."])).resolve()
            found = folder.is_relative_to(root.resolve()) and folder.is_dir()
        except (ValueError, OSError):  # a NUL byte, a name too long
            found = False
        if not found:
            raise UserError(f"{yaml_name}: {key}: {entry!r} is not a folder of the dataset; fix "
                            "the path or add the folder.")
        folders.append(folder)
    return folders


def _scan(folders: list[Path], root: Path, warnings: list[str],
          misplaced: list[str]) -> list[Sample]:
    """Images under folders (recursively), in path order; other files are warned about."""
    samples = []
    for index, folder in enumerate(folders):
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                # A .txt beside images is their label when no 'images' folder is in the path.
                if path.suffix != ".txt" or label_path(path.with_suffix(".jpg")) != path:
                    warnings.append(f"{rel_path(path, root)}: not an image or label file; ignored.")
                    if path.suffix == ".txt":
                        misplaced.append(rel_path(path, root))
                continue
            rel = path.relative_to(folder).as_posix()
            samples.append(Sample(path, label_path(path),
                                   f"{index}/{rel}" if len(folders) > 1 else rel))
    return samples


def discover(root: Path) -> Layout:
    """Finds names, images and labels; raises UserError for a dataset of the wrong shape."""
    names, data, yaml_name = _read_names(root)
    warnings: list[str] = []
    top = _yaml_root(root, data, yaml_name, warnings) if data else root
    train_dirs = _yaml_dirs(root, data, "train", yaml_name, top)
    val_dirs = _yaml_dirs(root, data, "val", yaml_name, top) if train_dirs else None
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
    misplaced: list[str] = []
    train = _scan(resolved, root.resolve(), warnings, misplaced)
    val = (_scan([d.resolve() for d in val_dirs], root.resolve(), warnings, misplaced)
           if val_dirs else [])
    _check_pairs(root.resolve(), train + val, resolved + [d.resolve() for d in val_dirs or []],
                 warnings)
    if not train and not val:
        raise UserError("the dataset is empty: no images found under "
                        f"{', '.join(rel_path(d, root.resolve()) or '.' for d in resolved)}; add "
                        "images.")
    for split, samples in (("train", train), ("val", val)):
        if len({s.image for s in samples}) != len(samples):
            raise UserError(f"{yaml_name}: {split}: lists folders that overlap, so images would "
                            "count twice; list each folder once.")
    return Layout(root.resolve(), names, yaml_name, train, val, warnings, misplaced)


def _check_pairs(root: Path, samples: list[Sample], image_dirs: list[Path],
                 warnings: list[str]) -> None:
    """Every label has its image (and only one); stray files in label folders are warned about."""
    owners: dict[Path, Path] = {}
    for sample in samples:
        other = owners.setdefault(sample.label, sample.image)
        if other != sample.image:
            raise UserError(f"{rel_path(other, root)} and {rel_path(sample.image, root)} share "
                            f"the label {rel_path(sample.label, root)}; rename one of the images.")
    label_dirs = {label_path(d / "x.jpg").parent for d in image_dirs}
    label_dirs = {d for d in label_dirs if d.is_dir() and d not in image_dirs}
    seen: set[Path] = set()
    for folder in sorted(label_dirs):
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path in seen:
                continue
            seen.add(path)
            if path.suffix != ".txt":
                warnings.append(f"{rel_path(path, root)}: not an image or label file; ignored.")
            elif path not in owners:
                raise UserError(f"{rel_path(path, root)}: label file without its image (no "
                                f"{_image_pattern(rel_path(path, root))}); add the image or delete "
                                "the label.")


def _image_pattern(label_rel: str) -> str:
    """'labels/train/a.txt' -> 'images/train/a.*': where the label's image should be."""
    parts = label_rel.rsplit(".", 1)[0].split("/")
    if "labels" in parts:
        index = len(parts) - 1 - parts[::-1].index("labels")
        parts[index] = "images"
    return "/".join(parts) + ".*"
