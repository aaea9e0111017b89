"""serving_check: after deploy, the served boxes of one validation image must be ultralytics'.

publish stores a validation image and ultralytics' own predict boxes for it (on the exported
model.onnx, the file Triton serves) beside the version: `serving_check.<ext>` and
`serving_check.json`. The deploy step, once the InferenceService is Ready, sends that image to
the end-to-end model with the same conf and fails the deploy when the boxes disagree: a wrong
head, letterbox or scaling in the serving path shows up before any client sees it.

(No `from __future__ import annotations` in component modules: KFP reads the annotations.)
"""

import json
from pathlib import Path

from kfp_yolo.components.errors import JobFailed

__all__ = ["CHECK_CONF", "CHECK_JSON", "check_served", "disagreements", "expected_boxes"]

CHECK_JSON = "serving_check.json"
CHECK_CONF = 0.25
IOU_MIN, SCORE_TOLERANCE = 0.9, 0.02


def expected_boxes(onnx_path: str | Path, image: str | Path, *, imgsz: int,
                   conf: float = CHECK_CONF) -> dict:
    """{"image", "conf", "imgsz", "boxes": [[x1, y1, x2, y2, score, class], ...]} from
    ultralytics' predict on the ONNX file."""
    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics import YOLO

    (result,) = YOLO(str(onnx_path), task="detect").predict(
        str(image), imgsz=imgsz, conf=conf, verbose=False)
    boxes = [[*map(float, b.xyxy[0].tolist()), float(b.conf), int(b.cls)] for b in result.boxes]
    return {"image": Path(image).name, "conf": conf, "imgsz": imgsz, "boxes": boxes}


def _iou(a: list, b: list) -> float:
    if max(abs(x - y) for x, y in zip(a[:4], b[:4], strict=True)) < 0.5:
        return 1.0
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def disagreements(expected: list, served: list, conf: float) -> list[str]:
    """Boxes of either side (clear of conf by the tolerance) with no match on the other: same
    class, IoU >= 0.9, |score difference| <= 0.02."""
    problems = []
    for side, ours, theirs in (("expected", expected, served), ("served", served, expected)):
        for box in ours:
            if box[4] >= conf + SCORE_TOLERANCE and not any(
                    box[5] == other[5] and _iou(box, other) >= IOU_MIN
                    and abs(box[4] - other[4]) <= SCORE_TOLERANCE for other in theirs):
                problems.append(f"{side} box {[round(v, 1) for v in box[:4]]} class "
                                f"{int(box[5])} score {box[4]:.3f} has no match")
    return problems


def check_served(url: str, model: str, image: bytes, expected: dict) -> int:
    """Sends the image to the served end-to-end model; the number of boxes compared.

    Raises:
        JobFailed: the served boxes are not ultralytics' boxes.
    """
    from kfp_yolo.components.release.predict_client import infer_image

    served = [[b.x1, b.y1, b.x2, b.y2, b.score, b.class_id]
              for b in infer_image(url, model, image, conf=expected["conf"])]
    problems = disagreements(expected["boxes"], served, expected["conf"])
    if problems:
        raise JobFailed(f"the served model's boxes for {expected['image']} disagree with "
                        f"ultralytics' predict ({len(problems)} unmatched, first: {problems[0]}; "
                        f"{len(served)} served, {len(expected['boxes'])} expected); the "
                        "serving path (head, letterbox, scaling) is wrong for this version.")
    return len(expected["boxes"])


def load(path: str | Path) -> dict:
    """A stored serving_check.json."""
    return json.loads(Path(path).read_text())
