"""A deterministic synthetic detection dataset: filled shapes on noisy backgrounds, YOLO layout.

The demo's default data. The same seed gives the same bytes on every machine (PNG is lossless).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

__all__ = ["CLASS_NAMES", "SynthSpec", "synthesize"]

CLASS_NAMES = ("circle", "square", "triangle")


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
    """Writes images/{train,val}, labels/{train,val} and data.yaml under root; returns data.yaml."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    n_val = max(1, round(spec.images * spec.val_fraction))
    for index in range(spec.images):
        split = "val" if index < n_val else "train"
        image, rows = _render(rng, spec)
        stem = f"shape_{index:05d}"
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        image.save(root / "images" / split / f"{stem}.png", optimize=False)
        (root / "labels" / split / f"{stem}.txt").write_text("\n".join(rows) + "\n")
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": ".", "train": "images/train", "val": "images/val",
        "names": dict(enumerate(CLASS_NAMES)),
    }, sort_keys=False))
    return data_yaml
