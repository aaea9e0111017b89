"""A published version served by the real Triton (nvidia-pytriton's tritonserver 2.51, loopback).

Two small detectors, a v8-style one (raw head: NMS in the end-to-end model) and a YOLO26 one
(NMS-free head), go through the project's own export (`nms=False`), repository build and
publish; the published `triton/` folders are loaded as they are, except that each raw ONNX
detector runs through onnxruntime in a python-backend model (this Triton has no onnxruntime
backend). The served end-to-end model must give ultralytics' own predict boxes on real COCO
images of other sizes than the model's, and refuse bad requests without crashing.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from processes import stop_group
from testdata import COCO8
from tiny_detectors import NAMES, tiny_detector

pytestmark = pytest.mark.timeout(600)

IMGSZ = 96
CONF = 0.5
IMAGES = sorted((COCO8 / "images" / "val").glob("*.jpg"))
MODELS = {"v8": "yolov8n.yaml", "y26": "yolo26n.yaml"}


def _publish(root: Path, name: str, model_yaml: str) -> tuple[Path, str]:
    from kfp_yolo.components.export_onnx import export_onnx, head_of, parity_check
    from kfp_yolo.components.release.publish import publish
    from kfp_yolo.components.release.triton import build_repository

    weights = tiny_detector(root / name, model_yaml, imgsz=IMGSZ)
    onnx = export_onnx(weights, root / name / "model.onnx", imgsz=IMGSZ)
    assert parity_check(weights, onnx, imgsz=IMGSZ).max_abs_diff < 0.05  # pixels of a 96 px input
    head = head_of(onnx)
    build_repository(root / name / "triton", name, onnx)
    publish(registry_uri=str(root / "registry"), name=name, version="v1",
            files={"best.pt": weights, "model.onnx": onnx},
            metadata={"metrics": {"map50_95": 0.0}, "onnx": {"head": head}},
            folders={"triton": root / name / "triton"})
    return onnx, head


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """({name: (model.onnx, head)}, server): both versions in one real Triton."""
    from kfp_yolo.components.release.triton_local import LocalTriton, local_repository

    root = tmp_path_factory.mktemp("serving")
    published = {name: _publish(root, name, yaml) for name, yaml in MODELS.items()}
    repository = root / "repository"
    repository.mkdir()
    for name in MODELS:
        local_repository(root / "registry" / name / "v1" / "triton", root / "local" / name)
        for model in (root / "local" / name).iterdir():
            model.rename(repository / model.name)
    with LocalTriton(repository, root) as server:
        yield published, server


def _iou(a, b) -> float:
    if max(abs(x - y) for x, y in zip(a[:4], b[:4], strict=True)) < 0.5:
        return 1.0  # the same box (also one clipped flat at the image's edge)
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _unmatched(ours: list[tuple], theirs: list[tuple], margin: float) -> list[tuple]:
    """Boxes of `ours` clear of the threshold by margin with no box in `theirs` of the same
    class, IoU >= 0.9 and |score difference| <= 0.02."""
    return [box for box in ours if box[4] >= CONF + margin and not any(
        box[5] == other[5] and _iou(box, other) >= 0.9 and abs(box[4] - other[4]) <= 0.02
        for other in theirs)]


@pytest.mark.parametrize("name", list(MODELS))
def test_served_boxes_are_ultralytics_predict_boxes(served, name):
    from kfp_yolo.components.release.predict_client import class_names, infer_image
    from kfp_yolo.components.runtime import offline_environment

    published, server = served
    onnx, head = published[name]
    assert head == {"v8": "nms", "y26": "end2end"}[name]
    offline_environment()
    from ultralytics import YOLO

    # ultralytics' predict on the very file served: what differs is the pre- and post-processing.
    model = YOLO(str(onnx), task="detect")
    names = class_names(server.url, name)
    assert names == NAMES
    compared = 0
    for image in IMAGES:
        (result,) = model.predict(str(image), imgsz=IMGSZ, conf=CONF, iou=0.7, verbose=False)
        expected = [(*b.xyxy[0].tolist(), float(b.conf), int(b.cls)) for b in result.boxes]
        boxes = infer_image(server.url, name, image.read_bytes(), conf=CONF, names=names)
        got = [(b.x1, b.y1, b.x2, b.y2, b.score, b.class_id) for b in boxes]
        assert all(b.name == NAMES[b.class_id] for b in boxes)
        # Boxes whose score sits within 0.02 of the threshold may fall either side of it.
        missing = _unmatched(expected, got, 0.02)
        assert not missing, (image.name, [(m, max(got, key=lambda g: _iou(m, g))) for m in missing])
        assert not _unmatched(got, expected, 0.02), image.name
        assert abs(len(got) - len(expected)) <= sum(abs(b[4] - CONF) < 0.02 for b in expected)
        compared += len(expected)
    assert compared >= 20  # the comparison had boxes to compare


def _infer(url: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bad_requests_get_triton_errors_and_the_model_keeps_serving(served):
    import cv2

    from kfp_yolo.components.errors import UserError
    from kfp_yolo.components.release.predict_client import infer_image

    _, server = served
    url = f"{server.url}/v2/models/v8/infer"
    with pytest.raises(UserError, match="neither an image"):
        infer_image(server.url, "v8", b"this is not an image")
    # 50 megapixels of one colour: a small PNG, refused from its header before decoding.
    huge = cv2.imencode(".png", np.zeros((7072, 7072, 3), np.uint8))[1].tobytes()
    assert len(huge) < 1 << 20
    with pytest.raises(UserError, match="exceeds the limit of 40000000 pixels"):
        infer_image(server.url, "v8", huge)
    # The wrong data type for IMAGE: Triton's own check.
    status, answer = _infer(url, json.dumps({"inputs": [
        {"name": "IMAGE", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}).encode())
    assert status == 400 and "data-type" in answer["error"]
    # An empty batch.
    status, answer = _infer(url, json.dumps({"inputs": [
        {"name": "IMAGE", "shape": [0, 1], "datatype": "BYTES", "data": []}]}).encode())
    assert status == 400, answer
    # No image at all, only a threshold.
    status, answer = _infer(url, json.dumps({"inputs": [
        {"name": "CONF", "shape": [1, 1], "datatype": "FP32", "data": [0.5]}]}).encode())
    assert status == 400 and "exactly one of the inputs IMAGE" in answer["error"]
    # Still serving, with the same stub: a good request answers.
    assert infer_image(server.url, "v8", IMAGES[0].read_bytes(), conf=CONF)
    with urllib.request.urlopen(f"{server.url}/v2/models/v8/ready", timeout=5) as answer:
        assert answer.status == 200


def test_pixels_and_base64_json_give_the_file_bytes_boxes(served):
    """A uint8 HxWx3 batch (RGB) and a JSON client's base64 text: the same boxes."""
    import base64

    import cv2

    from kfp_yolo.components.release.predict_client import infer_image

    _, server = served
    data = IMAGES[1].read_bytes()
    reference = infer_image(server.url, "v8", data, conf=CONF)
    rgb = cv2.imread(str(IMAGES[1]))[..., ::-1]
    pixels = np.ascontiguousarray(np.stack([rgb, rgb]))
    outputs = [{"name": n, "parameters": {"binary_data": False}} for n in ("BOXES", "SCORES",
                                                                          "NUM_DETECTIONS")]
    # Binary, as a client sends arrays: Triton 2.51's HTTP server dies (SIGSEGV) on a JSON
    # body holding a photo's pixels as numbers (923,520 of them, 3.4 MB), whatever the model.
    header = json.dumps({
        "inputs": [{"name": "PIXELS", "shape": list(pixels.shape), "datatype": "UINT8",
                    "parameters": {"binary_data_size": pixels.size}},
                   {"name": "CONF", "shape": [2, 1], "datatype": "FP32", "data": [CONF, CONF]}],
        "outputs": outputs}).encode()
    status, answer = _infer(f"{server.url}/v2/models/v8/infer", header + pixels.tobytes(),
                            {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200, answer
    found = {o["name"]: o for o in answer["outputs"]}
    assert found["NUM_DETECTIONS"]["data"] == [len(reference)] * 2
    assert np.allclose(found["BOXES"]["data"][:4], [reference[0].x1, reference[0].y1,
                                                    reference[0].x2, reference[0].y2], atol=0.5)
    status, answer = _infer(f"{server.url}/v2/models/v8/infer", json.dumps({
        "inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES",
                    "data": [base64.b64encode(data).decode()]}],
        "outputs": outputs}).encode())
    assert status == 200
    found = {o["name"]: o for o in answer["outputs"]}
    assert found["NUM_DETECTIONS"]["data"] == [sum(b.score > 0.25 for b in infer_image(
        server.url, "v8", data))]


def test_the_raw_detector_stays_addressable(served):
    """`<name>-onnx` answers the raw head's tensor, as ultralytics' Triton client calls it."""
    _, server = served
    header = json.dumps({"inputs": [{"name": "images", "shape": [1, 3, IMGSZ, IMGSZ],
                                     "datatype": "FP32", "parameters": {
                                         "binary_data_size": 4 * 3 * IMGSZ * IMGSZ}}],
                         "outputs": [{"name": "output0",
                                      "parameters": {"binary_data": False}}]}).encode()
    body = header + struct.pack(f"<{3 * IMGSZ * IMGSZ}f", *([0.5] * (3 * IMGSZ * IMGSZ)))
    status, answer = _infer(f"{server.url}/v2/models/v8-onnx/infer", body, {
        "Inference-Header-Content-Length": str(len(header))})
    assert status == 200, answer
    assert answer["outputs"][0]["shape"][:2] == [1, 4 + len(NAMES)]


def test_serve_local_and_predict_commands(served, tmp_path):
    """`kfp-yolo serve local` on the published registry, `kfp-yolo predict --json` against it,
    SIGTERM stops Triton's whole group (exit 143)."""
    import yaml

    published, _ = served
    registry = Path(published["v8"][0]).parents[1] / "registry"  # root/v8/model.onnx
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"name": "v8", "registry_uri": str(registry)}))
    kfp_yolo = str(Path(sys.executable).parent / "kfp-yolo")
    process = subprocess.Popen([kfp_yolo, "serve", "local", "--config", str(config),
                                "--version", "v1"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v8"), (
            url, process.stderr.read() if process.poll() is not None else "")
        done = subprocess.run([kfp_yolo, "predict", "--url", url, "--json", "--conf", str(CONF),
                               str(IMAGES[0]), str(IMAGES[2])],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert [Path(i["image"]).name for i in result["images"]] == [IMAGES[0].name,
                                                                    IMAGES[2].name]
        assert all(b["class"] in NAMES.values() for i in result["images"] for b in i["boxes"])
        assert result["images"][0]["boxes"]
        missing = subprocess.run([kfp_yolo, "predict", "--url", url, str(tmp_path / "no.jpg")],
                                 capture_output=True, text=True, timeout=60)
        assert missing.returncode == 2 and "no such image file" in missing.stderr
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 143
        time.sleep(0.5)
        with pytest.raises(ProcessLookupError):  # nothing of the group is left
            os.killpg(process.pid, 0)
    finally:
        stop_group(process, 10)


@pytest.mark.parametrize("name", list(MODELS))
def test_the_deploy_check_passes_on_the_real_server(served, name):
    """What publish stores (ultralytics' boxes for a validation image) against what Triton
    serves: the deploy step's check, with the real server."""
    from kfp_yolo.components.release.serving_check import check_served, expected_boxes

    published, server = served
    onnx, _ = published[name]
    expected = expected_boxes(onnx, IMAGES[3], imgsz=IMGSZ, conf=CONF)
    assert check_served(server.url, name, IMAGES[3].read_bytes(), expected) >= 1
