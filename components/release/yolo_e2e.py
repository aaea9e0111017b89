"""yolo_e2e: image in, boxes out, in numpy (and OpenCV for decoding and resizing).

The end-to-end Triton model (`triton_e2e_model.py`) imports this file as a sibling module, so it
depends on nothing of kfp-yolo: only numpy, cv2 and, for the header-only size check, Pillow.
Each step is ultralytics' own (8.4.190), rewritten without torch so the served boxes are the
ones `YOLO(...).predict` gives: LetterBox(auto=False) (data/augment.py), class-aware greedy NMS
with the max_wh offset (utils/nms.py), scale_boxes then clip (utils/ops.py).
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np

__all__ = ["BadImage", "Detections", "decode_image", "detect_batch_heads", "letterbox",
           "nms", "postprocess"]

PAD_VALUE = 114
MAX_WH = 7680  # ultralytics' per-class offset that keeps NMS from crossing classes
MAX_NMS = 30000


class BadImage(ValueError):
    """A request the model refuses (not an image, too many pixels): answered as a Triton error."""


class Detections(tuple):
    """(boxes float32 (n,4) xyxy in original pixels, scores float32 (n,), class ids int32 (n,))."""


def _pixels_of(data: bytes, max_pixels: int) -> None:
    """Refuses an image larger than max_pixels from its header, before decoding it."""
    try:
        from PIL import Image
    except ImportError:  # no Pillow in this Triton: decoding checks the size afterwards
        return
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 - OpenCV may still read what Pillow cannot
        return
    if width * height > max_pixels:
        raise BadImage(f"image of {width}x{height} pixels exceeds the limit of {max_pixels} "
                       "pixels (parameter max_pixels); send a smaller image")


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """An encoded image (JPEG, PNG, ... or the base64 text of one) as a BGR uint8 HxWx3 array.

    Raises:
        BadImage: not an image OpenCV decodes, or more than max_pixels pixels.
    """
    import cv2

    if not data:
        raise BadImage("empty image bytes; send a JPEG or PNG file's bytes")
    candidates = [bytes(data)]
    try:  # JSON clients (curl) send the file's base64 text: a BYTES element must be UTF-8
        candidates.append(base64.b64decode(candidates[0], validate=True))
    except (binascii.Error, ValueError):
        pass
    for raw in candidates:
        _pixels_of(raw, max_pixels)
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        if image is not None:
            check_pixels(image, max_pixels)
            return image
    raise BadImage("the bytes are neither an image OpenCV decodes nor the base64 text of one; "
                   "send a JPEG or PNG file's bytes")


def check_pixels(image: np.ndarray, max_pixels: int) -> None:
    """Refuses an array that is not HxWx3 or holds more than max_pixels pixels."""
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise BadImage(f"an image array must be HxWx3, got shape {tuple(image.shape)}")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise BadImage(f"image of {image.shape[1]}x{image.shape[0]} pixels exceeds the limit of "
                       f"{max_pixels} pixels (parameter max_pixels); send a smaller image")


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float, int, int]]:
    """BGR HxWx3 -> (RGB float32 3xSxS in [0,1], (gain_x, gain_y, pad_x, pad_y)).

    The gains and pads are those scale_boxes recomputes from the two shapes.
    """
    import cv2

    height, width = image.shape[:2]
    r = min(size / height, size / width)
    new_w, new_h = max(round(width * r), 1), max(round(height * r), 1)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    if (width, height) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT,
                               value=(PAD_VALUE,) * 3)
    tensor = np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1), dtype=np.float32) / 255
    return tensor, (new_w / width, new_h / height, left, top)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS (torchvision.ops.nms): indices kept, highest score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        w = (np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])).clip(0)
        h = (np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])).clip(0)
        inter = w * h
        overlap = inter / (areas[best] + areas[rest] - inter + 1e-12)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def _raw_head(output: np.ndarray, conf: float, iou: float, max_det: int) -> np.ndarray:
    """(4+nc, N) one-to-many head -> (n, 6) xyxy, score, class after NMS (letterbox pixels)."""
    rows = output.T
    scores_all = rows[:, 4:]
    cls = scores_all.argmax(1)
    score = scores_all[np.arange(len(rows)), cls]
    keep = score > conf
    rows, cls, score = rows[keep], cls[keep], score[keep]
    if not len(rows):
        return np.zeros((0, 6), np.float32)
    if len(rows) > MAX_NMS:
        top = np.argsort(-score, kind="stable")[:MAX_NMS]
        rows, cls, score = rows[top], cls[top], score[top]
    xy, wh = rows[:, :2], rows[:, 2:4] / 2
    boxes = np.concatenate([xy - wh, xy + wh], 1)
    kept = nms(boxes + cls[:, None] * MAX_WH, score, iou)[:max_det]
    return np.concatenate([boxes[kept], score[kept, None], cls[kept, None]], 1)


def _end2end_head(output: np.ndarray, conf: float, max_det: int) -> np.ndarray:
    """(K, 6) NMS-free head (xyxy, score, class) -> the rows above conf."""
    return output[output[:, 4] > conf][:max_det]


def postprocess(output: np.ndarray, head: str, transform: tuple[float, float, int, int],
                shape: tuple[int, int], *, conf: float, iou: float,
                max_det: int = 300) -> Detections:
    """One image's detector output -> Detections in the original image's pixels.

    Args:
        output: the detector's output for this image, without the batch axis.
        head: 'end2end' ((K,6), no NMS) or 'nms' ((4+nc,N), NMS here).
        transform: letterbox's (gain_x, gain_y, pad_x, pad_y).
        shape: the original (height, width).
    """
    output = np.asarray(output, dtype=np.float32)
    rows = (_end2end_head(output, conf, max_det) if head == "end2end"
            else _raw_head(output, conf, iou, max_det))
    gain_x, gain_y, pad_x, pad_y = transform
    boxes = rows[:, :4].copy()
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - pad_x) / gain_x).clip(0, shape[1])
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - pad_y) / gain_y).clip(0, shape[0])
    return Detections((boxes.astype(np.float32), rows[:, 4].astype(np.float32),
                       rows[:, 5].astype(np.int32)))


def detect_batch_heads(outputs: np.ndarray, head: str, transforms, shapes, confs, ious,
                       max_det: int = 300) -> list[Detections]:
    """postprocess for each image of a batch (each with its own conf and iou)."""
    return [postprocess(o, head, t, s, conf=c, iou=i, max_det=max_det)
            for o, t, s, c, i in zip(outputs, transforms, shapes, confs, ious, strict=True)]
