"""A deterministic synthetic detection dataset: filled shapes on noisy backgrounds, YOLO layout.

The demo's default data. The same seed gives the same bytes on every machine (PNG is lossless).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import yaml
from PIL import Image, ImageDraw

from kfp_yolo.components.atomic import staged_dir
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.progress import Progress

__all__ = ["CLASS_NAMES", "SynthSpec", "synthesize", "synthesize_into", "synthetic_spec"]

CLASS_NAMES = ("circle", "square", "triangle")
# (smallest, largest, what the bound is for) of each integer setting.
_LIMITS = {
    "images": (2, 100_000, "one val and one train image at least"),
    "imgsz": (32, 4096, "the image sizes training takes"),
    "seed": (0, 2**32 - 1, "a non-negative seed"),
    "max_objects": (1, 100, "shapes per image"),
}


@dataclass(frozen=True, kw_only=True)
class SynthSpec:
    """What to generate."""

    images: int = 256
    """Total images; a fifth goes to the val split."""
    imgsz: int = 128
    """Square image side in pixels."""
    seed: int = 0
    """Same seed, same dataset."""
    max_objects: int = 3
    """Most shapes per image (at least one)."""
    val_fraction: float = 0.2
    """Share of images in the val split."""

    def __post_init__(self) -> None:
        for name, (low, high, why) in _LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise UserError(f"synthetic dataset: {name}={value!r} is out of range; give an "
                                f"integer from {low} to {high} ({why}).")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"synthetic dataset: val_fraction={self.val_fraction!r} must be "
                            "between 0 and 1, e.g. 0.2.")


def synthetic_spec(uri: str) -> SynthSpec:
    """The SynthSpec of a synthetic://shapes?images=N&imgsz=N&seed=N&max_objects=N URI."""
    parsed = urlparse(uri)
    usage = "e.g. synthetic://shapes?images=64&imgsz=128 (images=, imgsz=, seed=, max_objects=)"
    if parsed.scheme != "synthetic" or parsed.netloc != "shapes" or parsed.path not in ("", "/"):
        raise UserError(f"{uri!r}: the synthetic dataset is synthetic://shapes; write {usage}.")
    try:
        query = {k: v[-1] for k, v in parse_qs(parsed.query, strict_parsing=bool(parsed.query),
                                                keep_blank_values=True).items()}
    except ValueError:
        raise UserError(f"{uri!r}: malformed query; write {usage}.") from None
    known = {f.name for f in fields(SynthSpec)} - {"val_fraction"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise UserError(f"{uri!r}: unknown setting {unknown[0]!r}; write {usage}.")
    try:
        values = {k: int(v) for k, v in query.items()}
    except ValueError:
        raise UserError(f"{uri!r}: settings are integers; write {usage}.") from None
    return SynthSpec(**values)


def _draw_shape(draw: ImageDraw.ImageDraw, cls: int, cx: float, cy: float, half: float,
                colour: tuple[int, int, int], angle: float) -> tuple[float, float, float, float]:
    """Draws one shape; returns its tight box (x0, y0, x1, y1) in pixels."""
    if cls == 0:
        box = (cx - half, cy - half, cx + half, cy + half)
        draw.ellipse(box, fill=colour)
        return box
    corners = 4 if cls == 1 else 3
    points = [(cx + half * math.cos(angle + 2 * math.pi * k / corners),
               cy + half * math.sin(angle + 2 * math.pi * k / corners)) for k in range(corners)]
    draw.polygon(points, fill=colour)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _render(rng: np.random.Generator, spec: SynthSpec) -> tuple[Image.Image, list[str]]:
    size = spec.imgsz
    background = rng.integers(0, 256, 3)
    noise = rng.normal(0, 8, (size, size, 3))
    pixels = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    rows = []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        half = float(rng.uniform(0.12, 0.25) * size)
        cx, cy = (float(v) for v in rng.uniform(half, size - half, 2))
        # A colour far from the background keeps every shape visible.
        colour = tuple(int(v) for v in (background + rng.integers(96, 160, 3)) % 256)
        # Upright shapes: squares axis-aligned, triangles pointing up; size and colour vary.
        angle = math.pi / 4 if cls == 1 else -math.pi / 2
        x0, y0, x1, y1 = _draw_shape(draw, cls, cx, cy, half, colour, angle)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
        rows.append(f"{cls} {(x0 + x1) / 2 / size:.6f} {(y0 + y1) / 2 / size:.6f} "
                    f"{(x1 - x0) / size:.6f} {(y1 - y0) / size:.6f}")
    return image, rows


def synthesize(root: str | Path, spec: SynthSpec = SynthSpec()) -> Path:
    """Writes images/{train,val}, labels/{train,val} and data.yaml under root; returns data.yaml.

    root is expected to be new or empty: see synthesize_into for a destination that may not be.
    """
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    n_val = max(1, round(spec.images * spec.val_fraction))
    with Progress("synthetic dataset", spec.images, "images") as progress:
        for index in range(spec.images):
            split = "val" if index < n_val else "train"
            image, rows = _render(rng, spec)
            stem = f"shape_{index:05d}"
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            image.save(root / "images" / split / f"{stem}.png", optimize=False)
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(rows) + "\n")
            progress.advance()
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": ".", "train": "images/train", "val": "images/val",
        "names": dict(enumerate(CLASS_NAMES)),
    }, sort_keys=False))
    return data_yaml


def _looks_like_dataset(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("data.yaml", "images", "labels"))


def synthesize_into(dest: str | Path, spec: SynthSpec = SynthSpec(), *,
                    replace: bool = False) -> Path:
    """Writes the dataset to dest, which must be absent or empty unless replace; returns data.yaml.

    The dataset is built in a temporary folder beside dest and moved into place, so dest never
    holds a mixture of old and new files. replace only swaps out a folder that holds a dataset
    (data.yaml, images/ or labels/), never an arbitrary one such as a home folder.
    """
    if not str(dest).strip():
        raise UserError("no folder given; give the folder to write the dataset to.")
    dest = Path(dest).absolute()
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest} is a file; give a folder for the dataset.")
    occupied = dest.is_dir() and any(dest.iterdir())
    if occupied and not replace:
        raise UserError(f"{dest} is not empty; give a new folder, or --replace to replace the "
                        "dataset there.")
    if occupied and not _looks_like_dataset(dest):
        raise UserError(f"{dest} holds files but no dataset (no data.yaml, images/ or labels/); "
                        "--replace only replaces a dataset, give another folder.")
    # built beside dest, then swapped in; the old dataset stays until the new one is in place
    with staged_dir(dest) as part:
        try:
            part.mkdir(parents=True)
        except OSError as exc:
            raise UserError(f"{dest}: cannot write there ({exc.strerror}); give a folder you "
                            "can write to.") from None
        synthesize(part, spec)
    return dest / "data.yaml"
