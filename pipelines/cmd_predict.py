"""`kfp-yolo predict --url http://HOST:PORT/MODEL IMAGE... [--conf C] [--iou I] [--json]`.

Sends each image file as it is (JPEG, PNG) to a served end-to-end model and prints its boxes in
the image's pixels: a table per image, or with --json one JSON document on stdout
({"model", "images": [{"image", "boxes": [{"box", "score", "class_id", "class"}]}]}).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kfp_yolo.components.errors import UserError

__all__ = ["predict_files", "run"]


def predict_files(url: str, images: list[str], *, conf: float | None = None,
                  iou: float | None = None) -> dict:
    """{"model", "images": [...]} for the image files, as --json prints it."""
    from kfp_yolo.components.release.predict_client import class_names, infer_image, parse_url

    base, model = parse_url(url)
    for threshold, flag in ((conf, "--conf"), (iou, "--iou")):
        if threshold is not None and not 0 <= threshold <= 1:
            raise UserError(f"{flag} {threshold} is outside [0, 1].")
    files = [Path(image) for image in images]
    for path in files:
        if not path.is_file():
            raise UserError(f"{path}: no such image file.")
    names = class_names(base, model)
    results = []
    for path in files:
        try:
            boxes = infer_image(base, model, path.read_bytes(), conf=conf, iou=iou, names=names)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
        results.append({"image": str(path), "boxes": [b.as_dict() for b in boxes]})
    return {"model": model, "images": results}


def run(args: argparse.Namespace) -> int:
    result = predict_files(args.url, args.images, conf=args.conf, iou=args.iou)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        return 0
    for item in result["images"]:
        print(f"{item['image']}: {len(item['boxes'])} boxes")
        for box in item["boxes"]:
            x1, y1, x2, y2 = box["box"]
            print(f"  {box['class']:<16} {box['score']:.3f}  "
                  f"({x1:.1f}, {y1:.1f}) - ({x2:.1f}, {y2:.1f})")
    return 0
