"""export_onnx: ultralytics' ONNX export, then a parity check against PyTorch with onnxruntime.

The head is chosen explicitly: ultralytics 8.4.190 exports with `nms=None` by default, which
for dual-head models (YOLO26, v10) is the one-to-many head that needs NMS. We pass
`nms=False`: a dual-head model exports its NMS-free one-to-one head ((B,K,6) rows: x1, y1, x2,
y2, score, class; K = min(300, anchors)), a single-head model (v5u, v8, 11) its raw
(B,4+nc,N) output. `head_of` names what came out; publish records it, and the end-to-end
Triton model post-processes accordingly.

(No `from __future__ import annotations` in component modules: KFP reads the annotations.)
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ParityResult", "export_onnx", "head_of", "parity_check"]


@dataclass(frozen=True)
class ParityResult:
    """The same input through PyTorch and onnxruntime: the largest absolute difference."""

    max_abs_diff: float
    batch: int
    output_shape: tuple[int, ...]


def export_onnx(weights: str | Path, out_path: str | Path, *, imgsz: int, opset: int = 17,
                dynamic: bool = True) -> Path:
    """Exports best.pt to ONNX (simplified with onnxslim when it is installed)."""
    import importlib.util

    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics import YOLO

    out_path = Path(out_path)
    work = out_path.parent / f".export-{out_path.stem}"
    work.mkdir(parents=True, exist_ok=True)
    local_weights = work / "model.pt"  # ultralytics writes the .onnx beside the weights
    shutil.copy2(weights, local_weights)
    simplify = importlib.util.find_spec("onnxslim") is not None
    exported = YOLO(str(local_weights)).export(format="onnx", imgsz=imgsz, opset=opset,
                                               dynamic=dynamic, simplify=simplify, device="cpu",
                                               nms=False)
    Path(exported).replace(out_path)
    shutil.rmtree(work, ignore_errors=True)
    return out_path


def head_of(onnx_path: str | Path) -> str:
    """'end2end' (NMS-free rows) or 'nms' (raw head: NMS after the model), from the export's
    own `end2end` metadata."""
    from kfp_yolo.components.release.e2e_config import head_of as from_metadata
    from kfp_yolo.components.release.triton import ultralytics_metadata

    return from_metadata(ultralytics_metadata(onnx_path))


def parity_check(weights: str | Path, onnx_path: str | Path, *, imgsz: int, batch: int = 2,
                 seed: int = 0) -> ParityResult:
    """Runs one seeded input through the PyTorch model and the ONNX model, compares raw outputs."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(str(weights), device="cpu", fuse=False)
    if hasattr(model, "end2end"):  # the head the ONNX file was exported with (see head_of);
        model.end2end = head_of(onnx_path) == "end2end"  # before fuse, which drops the other
    model = model.fuse().float().eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_meta = session.get_inputs()[0]
    if not isinstance(input_meta.shape[0], str):  # a static batch axis
        batch = int(input_meta.shape[0])
    rng = np.random.default_rng(seed)
    images = rng.random((batch, 3, imgsz, imgsz), dtype=np.float32)
    with torch.no_grad():
        torch_out = model(torch.from_numpy(images))
    if isinstance(torch_out, (list, tuple)):
        torch_out = torch_out[0]
    onnx_out = session.run(None, {input_meta.name: images})[0]
    torch_np = torch_out.numpy()
    if torch_np.shape != onnx_out.shape:
        raise ValueError(f"output shapes differ: torch {torch_np.shape}, onnx {onnx_out.shape}")
    diff = float(np.max(np.abs(torch_np - onnx_out)))
    return ParityResult(max_abs_diff=diff, batch=batch, output_shape=tuple(onnx_out.shape))
