"""triton: a Triton Inference Server model repository for a published version.

    triton/<name>/config.pbtxt          backend python: image bytes in, boxes out (end to end)
    triton/<name>/1/model.py, yolo_e2e.py   (components/release/e2e_config.py)
    triton/<name>-onnx/config.pbtxt     platform onnxruntime_onnx: the raw detector
    triton/<name>-onnx/1/model.onnx
    triton/<name>-trt/config.pbtxt      platform tensorrt_plan (only when an engine was built)
    triton/<name>-trt/1/model.plan      the plain TensorRT plan (no ultralytics JSON header)

Inputs, outputs and their dims come from the exported ONNX graph (a dynamic axis is -1), the
leading batch axis becomes `max_batch_size` with dynamic batching, and every config carries
ultralytics' `metadata` parameter (names, stride, imgsz, task, ...), which
`YOLO("http://host:8000/<name>-onnx", task="detect")` reads to use the served detector like a
local one. Any other client calls `<name>` with an image file's bytes (README, Serving).
KServe's Triton runtime serves this folder as its `storageUri` (`--model-store=/mnt/models`).

(No `from __future__ import annotations` in component modules: KFP reads the annotations.)
"""

import ast
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_BATCH", "ONNX_SUFFIX", "TRT_SUFFIX", "TensorSpec", "build_repository", "onnx_io",
           "plain_plan", "render_config", "ultralytics_metadata"]

MAX_BATCH = 8
"""Largest batch Triton forms; build-tensorrt's optimisation profile ends at the same 8."""
TRT_SUFFIX = "-trt"
ONNX_SUFFIX = "-onnx"
QUEUE_DELAY_US = 500
"""How long dynamic batching waits to fill a batch: small next to a YOLO inference (ms)."""
_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 16: "TYPE_BF16", 2: "TYPE_UINT8", 3: "TYPE_INT8",
          6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL", 11: "TYPE_FP64"}
"""onnx.TensorProto element types -> Triton data types."""
# ultralytics writes every ONNX metadata value with str(); these are Python literals.
_LITERALS = {"imgsz", "names", "args", "kpt_shape", "end2end"}
_INTEGERS = {"stride", "batch", "channels"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model: name, Triton data type, dims (batch axis included)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


def onnx_io(onnx_path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's inputs and outputs; a symbolic or unknown dim is -1."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}

    def spec(value) -> TensorSpec:
        tensor = value.type.tensor_type
        if tensor.elem_type not in _TYPES:
            raise ValueError(f"{onnx_path}: tensor {value.name!r} has ONNX type "
                             f"{tensor.elem_type}, which Triton's config cannot name")
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        return TensorSpec(value.name, _TYPES[tensor.elem_type], dims)

    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in model.graph.output]


def ultralytics_metadata(onnx_path: str | Path) -> dict:
    """ultralytics' export metadata from the ONNX file, with its literal values parsed.

    Raises:
        ValueError: the file carries no ultralytics metadata (names, stride, imgsz, task).
    """
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_path),
                                               load_external_data=False).metadata_props}
    metadata: dict = {}
    for key, value in props.items():
        if key in _INTEGERS:
            metadata[key] = int(value)
        elif key in _LITERALS:
            metadata[key] = ast.literal_eval(value)
        else:
            metadata[key] = value
    missing = [k for k in ("names", "stride", "imgsz", "task") if k not in metadata]
    if missing:
        raise ValueError(f"{onnx_path} has no ultralytics metadata {missing}; export it with "
                         "ultralytics (kfp-yolo's export-onnx step does)")
    return metadata


def plain_plan(data: bytes) -> bytes:
    """A TensorRT plan without the header ultralytics' `.engine` export puts before it.

    ultralytics writes a 4-byte little-endian length and that many bytes of JSON metadata,
    then the plan (utils/export/engine.py); Triton and trtexec read only the plan. Our own
    build-tensorrt step writes a plain plan, which passes through unchanged.
    """
    if len(data) > 4:
        length = int.from_bytes(data[:4], "little", signed=True)
        if 0 < length <= len(data) - 4 and data[4:5] == b"{":
            try:
                json.loads(data[4:4 + length])
            except ValueError:
                return data
            return data[4 + length:]
    return data


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _tensors(kind: str, specs: list[TensorSpec], batched: bool) -> list[str]:
    lines = [f"{kind} ["]
    for index, spec in enumerate(specs):
        dims = spec.dims[1:] if batched else spec.dims
        comma = "," if index < len(specs) - 1 else ""
        lines += ["  {", f"    name: {_quote(spec.name)}", f"    data_type: {spec.data_type}",
                  f"    dims: [ {', '.join(str(d) for d in dims)} ]", f"  }}{comma}"]
    return [*lines, "]"]


def render_config(name: str, platform: str, inputs: list[TensorSpec], outputs: list[TensorSpec],
                  metadata: dict, *, max_batch: int = MAX_BATCH,
                  extra: dict[str, str] | None = None) -> str:
    """config.pbtxt text for one model.

    The batch axis is left to Triton (max_batch_size, dynamic batching) when every tensor's
    first dim is dynamic; a model exported with a fixed batch is served as it is (max 0).
    `extra` parameters (the plan's TensorRT version) follow ultralytics' `metadata`.
    """
    batched = max_batch > 0 and all(s.dims and s.dims[0] == -1 for s in [*inputs, *outputs])
    lines = [f"name: {_quote(name)}", f"platform: {_quote(platform)}",
             f"max_batch_size: {max_batch if batched else 0}",
             *_tensors("input", inputs, batched), *_tensors("output", outputs, batched)]
    if batched:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}",
                  "}"]
    # ultralytics' Triton client reads this with ast.literal_eval (utils/triton.py).
    lines += ["parameters {", '  key: "metadata"', "  value {",
              f"    string_value: {_quote(str(metadata))}", "  }", "}"]
    for key, value in (extra or {}).items():
        lines += ["parameters {", f"  key: {_quote(key)}", "  value {",
                  f"    string_value: {_quote(value)}", "  }", "}"]
    return "\n".join(lines) + "\n"


def build_repository(out_dir: str | Path, name: str, onnx_path: str | Path,
                     engine_path: str | Path | None = None, *,
                     max_batch: int = MAX_BATCH, tensorrt_version: str = "") -> list[str]:
    """Writes the model repository into out_dir (created); returns the model names in it.

    Args:
        out_dir: the repository folder (published as `<version>/triton/`).
        name: the end-to-end model's name in Triton; the raw detectors are `name + ONNX_SUFFIX`
            and `name + TRT_SUFFIX`.
        onnx_path: the exported model; its graph gives the I/O, its metadata ultralytics' and
            the head (end2end or nms) the end-to-end model post-processes.
        engine_path: a plain TensorRT plan built from that ONNX model, or None.
        max_batch: Triton's max_batch_size (the engine's profile must reach it).
        tensorrt_version: the TensorRT that built the plan, recorded in its config.
    """
    from kfp_yolo.components.release.e2e_config import write_e2e_model

    out_dir = Path(out_dir)
    inputs, outputs = onnx_io(onnx_path)
    metadata = ultralytics_metadata(onnx_path)
    models = [(name + ONNX_SUFFIX, "onnxruntime_onnx", Path(onnx_path), "model.onnx", {})]
    if engine_path is not None:
        models.append((name + TRT_SUFFIX, "tensorrt_plan", Path(engine_path), "model.plan",
                       {"tensorrt_version": tensorrt_version or "unknown"}))
    for model, platform, source, filename, extra in models:
        folder = out_dir / model / "1"
        folder.mkdir(parents=True, exist_ok=True)
        if platform == "tensorrt_plan":
            (folder / filename).write_bytes(plain_plan(source.read_bytes()))
        else:
            shutil.copy2(source, folder / filename)
        (out_dir / model / "config.pbtxt").write_text(
            render_config(model, platform, inputs, outputs, metadata, max_batch=max_batch,
                          extra=extra))
    batched = max_batch > 0 and all(s.dims and s.dims[0] == -1 for s in [*inputs, *outputs])
    write_e2e_model(out_dir, name, detectors=[m for m, *_ in reversed(models)],
                    detector_input=inputs[0].name, detector_output=outputs[0].name,
                    metadata=metadata, max_batch=max_batch if batched else 1)
    return [name, *(model for model, *_ in models)]
