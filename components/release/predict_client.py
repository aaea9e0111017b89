"""predict_client: boxes from a served version's end-to-end model, with the standard library only.

KServe v2 HTTP with Triton's binary tensor extension: a JSON header, then the image file's bytes
as one BYTES element (4-byte little-endian length + the bytes), so a JPEG is sent as it is,
not as base64 text. The outputs come back as JSON. This is what any client can do with only an
HTTP library (README, Serving); `kfp-yolo predict` and the deploy step's check use it.
"""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

from kfp_yolo.components.errors import Fault, UserError

__all__ = ["Box", "class_names", "infer_image", "parse_url"]


@dataclass(frozen=True)
class Box:
    """One detection in the image's pixels."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_id: int
    name: str

    def as_dict(self) -> dict:
        return {"box": [round(v, 2) for v in (self.x1, self.y1, self.x2, self.y2)],
                "score": round(self.score, 4), "class_id": self.class_id, "class": self.name}


def parse_url(url: str) -> tuple[str, str]:
    """'http://host:8000/<model>' (as ultralytics' client takes it) -> (base URL, model)."""
    parsed = urlparse(url)
    parts = [p for p in parsed.path.split("/") if p]
    if parts[:2] == ["v2", "models"]:
        parts = parts[2:]
    if parsed.scheme not in ("http", "https") or not parsed.netloc or len(parts) != 1:
        raise UserError(f"--url {url!r} is not a served model's URL; give "
                        "http://HOST:PORT/MODEL, e.g. http://127.0.0.1:8000/shapes.")
    return f"{parsed.scheme}://{parsed.netloc}", parts[0]


def _call(request: urllib.request.Request, timeout_s: float) -> dict:
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", "")
        except ValueError:
            message = ""
        if exc.code == 400:
            raise UserError(f"the server refused the request: {message or exc.reason}.") from None
        if exc.code == 404:
            raise UserError(f"{request.full_url}: not found ({message or exc.reason}); check "
                            "the model name in --url.") from None
        raise Fault(f"{request.full_url} answered {exc.code}: {message or exc.reason}.") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"nothing answers at {request.full_url} ({reason}); start a server "
                        "(`kfp-yolo serve local --version V`) or check --url.") from None


def class_names(base: str, model: str, timeout_s: float = 10) -> dict[int, str]:
    """The class names the end-to-end model's config carries ({} when it has none)."""
    config = _call(urllib.request.Request(f"{base}/v2/models/{model}/config"), timeout_s)
    text = (config.get("parameters", {}).get("names", {}) or {}).get("string_value", "")
    return {int(k): v for k, v in json.loads(text).items()} if text else {}


def infer_image(base: str, model: str, data: bytes, *, conf: float | None = None,
                iou: float | None = None, names: dict[int, str] | None = None,
                timeout_s: float = 60) -> list[Box]:
    """Sends one encoded image; its boxes, highest score first."""
    element = struct.pack("<I", len(data)) + data
    inputs = [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES",
               "parameters": {"binary_data_size": len(element)}}]
    for name, value in (("CONF", conf), ("IOU", iou)):
        if value is not None:
            inputs.append({"name": name, "shape": [1, 1], "datatype": "FP32",
                           "data": [float(value)]})
    outputs = [{"name": n, "parameters": {"binary_data": False}}
               for n in ("BOXES", "SCORES", "CLASSES", "NUM_DETECTIONS")]
    header = json.dumps({"inputs": inputs, "outputs": outputs}).encode()
    request = urllib.request.Request(
        f"{base}/v2/models/{model}/infer", data=header + element, method="POST",
        headers={"Content-Type": "application/octet-stream",
                 "Inference-Header-Content-Length": str(len(header))})
    answer = {o["name"]: o["data"] for o in _call(request, timeout_s)["outputs"]}
    count = int(answer["NUM_DETECTIONS"][0])
    names = names or {}
    flat = answer["BOXES"]
    return [Box(*flat[4 * i:4 * i + 4], score=answer["SCORES"][i],
                class_id=int(answer["CLASSES"][i]),
                name=names.get(int(answer["CLASSES"][i]), str(answer["CLASSES"][i])))
            for i in range(count)]
