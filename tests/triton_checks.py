"""A Triton model repository checked with Triton's own parser: config.pbtxt parsed into
tritonclient's ModelConfig protobuf and compared with the ONNX model onnxruntime loads.
"""

from __future__ import annotations

from pathlib import Path

_ORT_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16"}


def export(folder: Path, *, imgsz: int = 64, dynamic: bool = True) -> Path:
    """A real ultralytics ONNX export of an untrained 3-class yolov5n (seconds on a CPU)."""
    import os

    import yaml

    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    folder.mkdir(parents=True, exist_ok=True)
    spec = {**yaml_model_load("yolov5n.yaml"), "nc": 3}
    (folder / "yolov5n.yaml").write_text(yaml.safe_dump(spec))
    cwd = os.getcwd()
    os.chdir(folder)  # ultralytics writes the .onnx beside the model it was given
    try:
        model = YOLO(str(folder / "yolov5n.yaml"))
        model.model.names = {0: "circle", 1: "square", 2: "it's a \"triangle\""}
        exported = model.export(format="onnx", imgsz=imgsz, dynamic=dynamic, simplify=False,
                                device="cpu")
    finally:
        os.chdir(cwd)
    target = folder / "model.onnx"
    (folder / exported).replace(target)  # a relative path is relative to folder
    return target


def parse_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _dims_agree(config_dims: list[int], model_dims: list, batched: bool) -> None:
    model_dims = [d if isinstance(d, int) else -1 for d in model_dims]
    assert config_dims == (model_dims[1:] if batched else model_dims)


def check_against_onnx(config, onnx_path: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    batched = config.max_batch_size > 0
    for tensors, metas in ((config.input, session.get_inputs()),
                           (config.output, session.get_outputs())):
        assert [t.name for t in tensors] == [m.name for m in metas]
        for tensor, meta in zip(tensors, metas, strict=True):
            from tritonclient.grpc import model_config_pb2

            assert model_config_pb2.DataType.Name(tensor.data_type) == _ORT_TYPES[meta.type]
            _dims_agree(list(tensor.dims), list(meta.shape), batched)
