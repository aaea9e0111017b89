"""build_tensorrt: a plain TensorRT plan from the ONNX model, and its latency (GPU only).

Without CUDA or the tensorrt package the step finishes with status `skipped` and the reason;
it never writes a fake engine. (No `from __future__ import annotations`: KFP reads them.)
"""

import time
from pathlib import Path

TRT_PRECISIONS = ("fp16", "int8", "fp32")
"""What build_engine really sets: FP16, INT8 (entropy-calibrated, FP16 fallback) or neither."""

__all__ = ["availability", "build_engine",
           "calibration_batches", "measure_latency"]


def availability() -> str:
    """'' when an engine can be built here, else the reason it cannot."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed (it comes with the project image)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device on this machine; TensorRT engines are built on a GPU pool"
    return ""


def calibration_batches(images_dir: str | Path, *, imgsz: int, batch: int = 8,
                        limit: int = 256):
    """Validation images, letterboxed to imgsz as ultralytics' predictor does, in NCHW batches."""
    import numpy as np

    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    import cv2
    from ultralytics.data.augment import LetterBox

    paths = sorted(p for p in Path(images_dir).rglob("*")
                   if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".webp"})[:limit]
    if not paths:
        raise ValueError(f"no calibration images under {images_dir}")
    letterbox = LetterBox((imgsz, imgsz), auto=False)
    batch = min(batch, len(paths))
    for start in range(0, len(paths) - batch + 1, batch):
        chunk = paths[start:start + batch]
        images = [letterbox(image=cv2.imread(str(path)))[..., ::-1] for path in chunk]
        yield np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2), dtype=np.float32) / 255


def _int8_calibrator(batches, cache_path: Path):
    """An entropy calibrator over real validation images; its cache is reused on rebuilds."""
    import tensorrt as trt
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self._batches = iter(batches)
            self._device_batch = None
            self._size = None

        def get_batch_size(self):
            return self._size or 1

        def get_batch(self, names):
            try:
                batch = next(self._batches)
            except StopIteration:
                return None
            self._size = batch.shape[0]
            self._device_batch = torch.from_numpy(batch).cuda()
            return [int(self._device_batch.data_ptr())]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.exists() else None

        def write_calibration_cache(self, cache):
            cache_path.write_bytes(bytes(cache))

    return Calibrator()


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, imgsz: int,
                 precision: str = "fp16", max_batch: int = 8, workspace_gib: float = 4.0,
                 calibration_images: str | Path | None = None) -> Path:
    """Parses the ONNX file and writes a plain serialized plan with a dynamic-batch profile.

    INT8 calibrates on calibration_images (the validation split) with an entropy calibrator;
    its cache lands beside the engine (`calibration.cache`).
    """
    if precision not in TRT_PRECISIONS:  # anything else would build FP32 under another label
        from kfp_yolo.components.errors import UserError

        raise UserError(f"trt_precision={precision!r} is not a precision this builder sets; "
                        f"use one of {', '.join(TRT_PRECISIONS)}.")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    # A version-compatible plan loads in any later TensorRT of the same major (Triton needs
    # --backend-config=tensorrt,version-compatible=true, which the InferenceService passes).
    config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        if calibration_images is None:
            raise ValueError("INT8 needs calibration images (the validation split)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers INT8 cannot run fall back to FP16
        cache = Path(engine_path).with_name("calibration.cache")
        config.int8_calibrator = _int8_calibrator(
            calibration_batches(calibration_images, imgsz=imgsz), cache)
    input_tensor = network.get_input(0)
    profile = builder.create_optimization_profile()
    shape = (3, imgsz, imgsz)
    profile.set_shape(input_tensor.name, (1, *shape), (max(1, max_batch // 2), *shape),
                      (max_batch, *shape))
    config.add_optimization_profile(profile)
    if precision == "int8":
        config.set_calibration_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine; see its log above.")
    from kfp_yolo.components.atomic import write_atomic

    return write_atomic(engine_path, bytes(plan))


def measure_latency(engine_path: str | Path, *, imgsz: int, batch: int, iterations: int = 100,
                    warmup: int = 10) -> float:
    """Mean milliseconds per inference of the engine at a batch size, on the current GPU."""
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()
    buffers = {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            context.set_input_shape(name, (batch, 3, imgsz, imgsz))
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        shape = tuple(context.get_tensor_shape(name))
        buffers[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
        context.set_tensor_address(name, buffers[name].data_ptr())
    for _ in range(warmup):
        context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return (time.perf_counter() - start) / iterations * 1000
