"""e2e_config: the end-to-end `<name>` model of a version's Triton repository.

    triton/<name>/config.pbtxt     backend python: image bytes (or pixels) in, boxes out
    triton/<name>/1/model.py       triton_e2e_model.py
    triton/<name>/1/yolo_e2e.py    letterbox, decode, NMS, scale back (numpy, OpenCV)

It calls the detector of the same repository (`<name>-onnx`, or `<name>-trt` when that one is
loaded) through Triton's BLS, so the detector stays addressable on its own for ultralytics'
client. The head decides the post-processing: 'end2end' (YOLO26/v10 exported with nms=False:
(K,6) rows, no NMS) or 'nms' (v5u/v8/11: (4+nc,N), NMS here).

(No `from __future__ import annotations` in component modules: KFP reads the annotations.)
"""

import json
import shutil
from pathlib import Path

__all__ = ["DEFAULT_CONF", "DEFAULT_IOU", "MAX_PIXELS", "head_of", "write_e2e_model"]

DEFAULT_CONF = 0.25
"""ultralytics' predict default: what `YOLO(...).predict` shows a user without arguments."""
DEFAULT_IOU = 0.7
"""The NMS IoU of ultralytics' predict and of the evaluate step's validation."""
MAX_PIXELS = 40_000_000
"""Largest image accepted (a 40-megapixel photo); bigger ones are refused before decoding."""
MAX_DET = 300
_HERE = Path(__file__).parent


def head_of(metadata: dict) -> str:
    """'end2end' for a model exported with its NMS-free head, else 'nms'."""
    return "end2end" if metadata.get("end2end") in (True, "True") else "nms"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_e2e_config(name: str, params: dict[str, str], *, max_batch: int) -> str:
    """config.pbtxt of the end-to-end model."""
    tensors = {
        "input": [("IMAGE", "TYPE_STRING", "1", True), ("PIXELS", "TYPE_UINT8", "-1, -1, 3", True),
                  ("CONF", "TYPE_FP32", "1", True), ("IOU", "TYPE_FP32", "1", True)],
        "output": [("BOXES", "TYPE_FP32", "-1, 4", False), ("SCORES", "TYPE_FP32", "-1", False),
                   ("CLASSES", "TYPE_INT32", "-1", False),
                   ("NUM_DETECTIONS", "TYPE_INT32", "1", False)],
    }
    lines = [f"name: {_quote(name)}", 'backend: "python"', f"max_batch_size: {max_batch}"]
    for kind, specs in tensors.items():
        lines.append(f"{kind} [")
        for index, (tensor, data_type, dims, optional) in enumerate(specs):
            lines += ["  {", f"    name: {_quote(tensor)}", f"    data_type: {data_type}",
                      f"    dims: [ {dims} ]"]
            lines += ["    optional: true"] if optional else []
            lines.append("  }" + ("," if index < len(specs) - 1 else ""))
        lines.append("]")
    lines += ["dynamic_batching {", "  max_queue_delay_microseconds: 2000", "}"]
    for key, value in params.items():
        lines += ["parameters {", f"  key: {_quote(key)}", "  value {",
                  f"    string_value: {_quote(value)}", "  }", "}"]
    return "\n".join(lines) + "\n"


def write_e2e_model(out_dir: str | Path, name: str, *, detectors: list[str], detector_input: str,
                    detector_output: str, metadata: dict, max_batch: int,
                    conf: float = DEFAULT_CONF, iou: float = DEFAULT_IOU) -> str:
    """Writes out_dir/name (config and the two python files); returns the head it serves.

    Args:
        detectors: the repository's detector models, preferred first (the TensorRT one).
        detector_input, detector_output: the detector's tensor names.
        metadata: ultralytics' metadata of the ONNX export (imgsz, names, end2end).
        max_batch: the detector's max_batch_size: each BLS call sends at most that many.
    """
    head = head_of(metadata)
    imgsz = metadata["imgsz"]
    imgsz = int(imgsz[0] if isinstance(imgsz, list | tuple) else imgsz)
    names = {int(k): str(v) for k, v in metadata["names"].items()}
    folder = Path(out_dir) / name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_HERE / "triton_e2e_model.py", folder / "model.py")
    shutil.copyfile(_HERE / "yolo_e2e.py", folder / "yolo_e2e.py")
    params = {"detectors": " ".join(detectors), "detector_input": detector_input,
              "detector_output": detector_output, "detector_max_batch": str(max(1, max_batch)),
              "head": head, "imgsz": str(imgsz), "conf": str(conf), "iou": str(iou),
              "max_det": str(MAX_DET), "max_pixels": str(MAX_PIXELS),
              "names": json.dumps(names, sort_keys=True)}
    (Path(out_dir) / name / "config.pbtxt").write_text(
        render_e2e_config(name, params, max_batch=max(1, max_batch)))
    return head
