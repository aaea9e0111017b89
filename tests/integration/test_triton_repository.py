"""The Triton model repository of a published version, checked with Triton's own parser.

Every config.pbtxt is parsed into tritonclient's ModelConfig protobuf (what the server parses
it into), and model.onnx is loaded with onnxruntime: the config's inputs, outputs, data types
and dims (after the batch axis) must be the model's, and ultralytics' metadata must read back
with ast.literal_eval as its Triton client reads it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from triton_checks import check_against_onnx, export, parse_config

from kfp_yolo.components.release.triton import MAX_BATCH, TRT_SUFFIX, build_repository

pytestmark = pytest.mark.timeout(300)





@pytest.fixture(scope="session")
def dynamic_onnx(tmp_path_factory) -> Path:
    return export(tmp_path_factory.mktemp("onnx-dynamic"))








def test_onnx_model_config_parses_and_matches_the_model(dynamic_onnx, tmp_path):
    import numpy as np
    import onnxruntime as ort

    repo = tmp_path / "triton"
    assert build_repository(repo, "shapes", dynamic_onnx) == ["shapes", "shapes-onnx"]
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()) == [
        "shapes-onnx/1/model.onnx", "shapes-onnx/config.pbtxt", "shapes/1/model.py",
        "shapes/1/yolo_e2e.py", "shapes/config.pbtxt"]
    config = parse_config(repo / "shapes-onnx" / "config.pbtxt")

    assert (config.name, config.platform) == ("shapes-onnx", "onnxruntime_onnx")
    assert config.max_batch_size == MAX_BATCH and config.HasField("dynamic_batching")
    check_against_onnx(config, repo / "shapes-onnx" / "1" / "model.onnx")
    e2e = parse_config(repo / "shapes" / "config.pbtxt")
    assert (e2e.name, e2e.backend, e2e.max_batch_size) == ("shapes", "python", MAX_BATCH)
    assert e2e.HasField("dynamic_batching")
    params = {k: v.string_value for k, v in e2e.parameters.items()}
    assert (params["head"], params["imgsz"], params["detectors"]) == ("nms", "64", "shapes-onnx")
    assert [i.name for i in e2e.input if i.optional] == ["IMAGE", "PIXELS", "CONF", "IOU"]
    assert list(config.input[0].dims) == [3, -1, -1]  # dynamic export: H and W are free
    # What a batch of MAX_BATCH images gives back has the rank the config declares.
    session = ort.InferenceSession(str(repo / "shapes-onnx" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": np.zeros((MAX_BATCH, 3, 64, 64), np.float32)})
    assert out.shape[0] == MAX_BATCH and out.ndim == len(config.output[0].dims) + 1
    assert out.shape[1] == 4 + 3  # box + the 3 classes

    # ultralytics' Triton client: ast.literal_eval(parameters["metadata"].string_value)
    metadata = ast.literal_eval(config.parameters["metadata"].string_value)
    assert metadata["names"] == {0: "circle", 1: "square", 2: "it's a \"triangle\""}
    assert (metadata["stride"], metadata["imgsz"], metadata["task"]) == (32, [64, 64], "detect")


def test_a_tensorrt_plan_is_served_as_is_beside_the_onnx_model(dynamic_onnx, tmp_path):
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"\x00plain-serialized-plan")  # no 4-byte length + JSON header
    repo = tmp_path / "triton"
    assert build_repository(repo, "shapes", dynamic_onnx, plan, tensorrt_version="11.4.0") == [
        "shapes", "shapes-onnx", "shapes-trt"]

    trt_dir = repo / f"shapes{TRT_SUFFIX}"
    config = parse_config(trt_dir / "config.pbtxt")
    assert (config.name, config.platform) == (f"shapes{TRT_SUFFIX}", "tensorrt_plan")
    assert (trt_dir / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert config.max_batch_size == MAX_BATCH  # build-tensorrt's profile ends at 8 too
    check_against_onnx(config, dynamic_onnx)  # a plan built from that ONNX has its tensors
    assert "names" in ast.literal_eval(config.parameters["metadata"].string_value)
    assert config.parameters["tensorrt_version"].string_value == "11.4.0"
    e2e = parse_config(repo / "shapes" / "config.pbtxt")  # the plan first when it is loaded
    assert e2e.parameters["detectors"].string_value == "shapes-trt shapes-onnx"


def test_an_ultralytics_engine_header_is_taken_off_the_plan(dynamic_onnx, tmp_path):
    import json

    plan = b"\x00\x01serialized-plan{not json}"
    meta = json.dumps({"stride": 32, "names": {"0": "circle"}}).encode()
    engine = tmp_path / "model.engine"  # what YOLO.export(format="engine") writes
    engine.write_bytes(len(meta).to_bytes(4, "little", signed=True) + meta + plan)
    build_repository(tmp_path / "triton", "m", dynamic_onnx, engine)
    assert (tmp_path / "triton" / "m-trt" / "1" / "model.plan").read_bytes() == plan


def test_a_fixed_batch_export_is_served_without_batching(tmp_path):
    onnx = export(tmp_path / "static", dynamic=False)
    repo = tmp_path / "triton"
    build_repository(repo, "fixed", onnx)
    config = parse_config(repo / "fixed-onnx" / "config.pbtxt")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    check_against_onnx(config, onnx)
    assert list(config.input[0].dims) == [1, 3, 64, 64]


def test_an_onnx_file_without_ultralytics_metadata_is_refused(dynamic_onnx, tmp_path):
    import onnx

    model = onnx.load(str(dynamic_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(ValueError, match="no ultralytics metadata"):
        build_repository(tmp_path / "triton", "m", bare)


class TritonStandIn:
    """Triton's gRPC inference protocol (KServe v2) for one repository model, on loopback.

    Not Triton: ModelConfig answers the config.pbtxt parsed by Triton's ModelConfig protobuf,
    ModelInfer runs 1/model.onnx with onnxruntime. Enough for ultralytics' own Triton client.
    """

    def __init__(self, model_dir: Path):
        import onnxruntime as ort

        self.config = parse_config(model_dir / "config.pbtxt")
        self.session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"),
                                            providers=["CPUExecutionProvider"])
        self.requests = 0

    def serve(self):
        from concurrent import futures

        import grpc
        import numpy as np
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        standin = self

        class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
            def ModelConfig(self, request, context):  # noqa: N802 - gRPC's names
                assert request.name == standin.config.name
                return service_pb2.ModelConfigResponse(config=standin.config)

            def ModelInfer(self, request, context):  # noqa: N802
                standin.requests += 1
                feeds = {tensor.name: np.frombuffer(raw, np.float32).reshape(tensor.shape)
                         for tensor, raw in zip(request.inputs, request.raw_input_contents,
                                                strict=True)}
                outputs = standin.session.run(None, feeds)
                response = service_pb2.ModelInferResponse(model_name=request.model_name)
                for meta, value in zip(standin.session.get_outputs(), outputs, strict=True):
                    response.outputs.add(name=meta.name, datatype="FP32", shape=value.shape)
                    response.raw_output_contents.append(value.astype(np.float32).tobytes())
                return response

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return server, port


def test_ultralytics_uses_the_served_model_through_its_triton_client(dynamic_onnx, tmp_path):
    import numpy as np

    from kfp_yolo.components.runtime import offline_environment

    repo = tmp_path / "triton"
    build_repository(repo, "shapes", dynamic_onnx)
    standin = TritonStandIn(repo / "shapes-onnx")
    server, port = standin.serve()
    try:
        offline_environment()
        from ultralytics import YOLO

        model = YOLO(f"grpc://127.0.0.1:{port}/shapes-onnx", task="detect")
        image = np.full((64, 64, 3), 114, np.uint8)
        (result,) = model.predict(image, imgsz=64, verbose=False)
    finally:
        server.stop(grace=None)
    assert standin.requests >= 1  # the prediction ran on the "server"
    # The class names came from the config's metadata parameter, not from a local file.
    assert result.names == {0: "circle", 1: "square", 2: "it's a \"triangle\""}
    assert result.boxes is not None
