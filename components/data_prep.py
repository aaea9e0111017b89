"""prepare_dataset: fetch a YOLO dataset, validate it, split it, describe it.

Pure logic first; the KFP component wrapper is at the bottom. (No `from __future__ import
annotations` in component modules: KFP reads the annotations of component functions.)
"""

import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import yaml
from kfp.dsl import Dataset, Markdown, Output

from components.errors import UserError

__all__ = ["PreparedDataset", "prepare_dataset", "prepare_dataset_component"]

IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp", ".dng", ".mpo",
                  ".pfm", ".heic"}


@dataclass
class PreparedDataset:
    """What prepare_dataset wrote: data.yaml with absolute paths, and statistics."""

    data_yaml: Path
    names: list[str]
    stats: dict = field(default_factory=dict)
    content_hash: str = ""

    def to_json(self) -> str:
        record = asdict(self)
        record["data_yaml"] = str(self.data_yaml)
        return json.dumps(record, indent=2)


def _fetch(uri: str, dest: Path) -> Path:
    """Brings the dataset at uri into dest; returns the folder holding images/ and labels/."""
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
    if parsed.scheme in ("", "file"):
        source = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
        if not source.is_dir():
            raise UserError(f"{uri!r}: dataset folder does not exist; give a folder with "
                            "images/ and labels/.")
        shutil.copytree(source, dest, dirs_exist_ok=True)
        return dest
    raise UserError(f"{uri!r}: unknown URI scheme {parsed.scheme!r}; use s3://, minio://, "
                    "file://, a path, or synthetic://shapes.")


def _read_names(root: Path) -> list[str]:
    data_yaml = root / "data.yaml"
    if not data_yaml.exists():
        raise UserError(f"{root}: no data.yaml with the class names; add one with names: [...].")
    data = yaml.safe_load(data_yaml.read_text()) or {}
    names = data.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not names:
        raise UserError(f"{data_yaml}: 'names' is missing or empty; list the class names.")
    return [str(n) for n in names]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _split(root: Path, seed: int, val_fraction: float) -> dict[str, list[Path]]:
    images_root = root / "images"
    if not images_root.is_dir():
        raise UserError(f"{root}: no images/ folder; a YOLO dataset has images/ and labels/.")
    if (images_root / "train").is_dir():
        splits = {"train": _images(images_root / "train"), "val": _images(images_root / "val")}
        if splits["val"]:
            return splits
        pool = splits["train"]
    else:
        pool = _images(images_root)
    if not pool:
        raise UserError(f"{images_root}: the dataset is empty; add images.")
    shuffled = sorted(pool)
    random.Random(seed).shuffle(shuffled)
    n_val = max(1, round(len(shuffled) * val_fraction))
    return {"train": sorted(shuffled[n_val:]), "val": sorted(shuffled[:n_val])}


def _label_for(image: Path, root: Path) -> Path:
    relative = image.relative_to(root / "images")
    return (root / "labels" / relative).with_suffix(".txt")


def prepare_dataset(uri: str, out_dir: str | Path, *, seed: int = 0,
                    val_fraction: float = 0.2) -> PreparedDataset:
    """Fetches uri into out_dir/source, writes out_dir/{images,labels}/{train,val} + data.yaml."""
    out_dir = Path(out_dir)
    source = _fetch(uri, out_dir / ".source")
    names = _read_names(source)
    splits = _split(source, seed, val_fraction)
    digest = hashlib.sha256()
    stats: dict = {"classes": len(names), "instances": dict.fromkeys(names, 0)}
    for split, images in splits.items():
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "labels" / split).mkdir(parents=True, exist_ok=True)
        stats[f"{split}_images"] = len(images)
        for image in images:
            shutil.copy2(image, out_dir / "images" / split / image.name)
            label = _label_for(image, source)
            text = label.read_text() if label.exists() else ""
            (out_dir / "labels" / split / f"{image.stem}.txt").write_text(text)
            for row in text.splitlines():
                if row.strip():
                    stats["instances"][names[int(row.split()[0])]] += 1
            digest.update(f"{split}/{image.name}".encode())
            digest.update(image.read_bytes())
            digest.update(text.encode())
    shutil.rmtree(source)
    data_yaml = out_dir / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": str(out_dir.resolve()), "train": "images/train", "val": "images/val",
        "names": dict(enumerate(names)),
    }, sort_keys=False))
    return PreparedDataset(data_yaml=data_yaml, names=names, stats=stats,
                           content_hash=digest.hexdigest())


def render_report(prepared: PreparedDataset) -> str:
    """A Markdown description of the prepared dataset."""
    s = prepared.stats
    lines = ["# Dataset", "", f"- train images: {s['train_images']}",
             f"- val images: {s['val_images']}", f"- content hash: `{prepared.content_hash[:16]}`",
             "", "| class | instances |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in s["instances"].items()]
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
