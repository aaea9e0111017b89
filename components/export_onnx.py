"""export_onnx: ultralytics' ONNX export, then a parity check against PyTorch with onnxruntime.

(No `from __future__ import annotations` in component modules: KFP reads the annotations.)
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ParityResult", "export_onnx", "parity_check"]


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
                                               dynamic=dynamic, simplify=simplify, device="cpu")
    Path(exported).replace(out_path)
    shutil.rmtree(work, ignore_errors=True)
    return out_path


def parity_check(weights: str | Path, onnx_path: str | Path, *, imgsz: int, batch: int = 2,
                 seed: int = 0) -> ParityResult:
    """Runs one seeded input through the PyTorch model and the ONNX model, compares raw outputs."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(str(weights), device="cpu", fuse=True)
    model = model.float().eval()
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
