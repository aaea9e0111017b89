"""The deploy step's check: the served end-to-end model must answer ultralytics' boxes for the
published validation image. A scripted KServe v2 server on loopback plays the served model."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kfp_yolo.components.errors import JobFailed
from kfp_yolo.components.release.serving_check import check_served, disagreements

EXPECTED = {"image": "serving_check.jpg", "conf": 0.25, "imgsz": 96,
            "boxes": [[10, 20, 110, 220, 0.9, 1], [300, 40, 380, 90, 0.6, 0]]}


def _server(boxes: list[list[float]]):
    """A KServe v2 HTTP server whose model answers these boxes for any image."""

    class Handler(BaseHTTPRequestHandler):
        seen: list[dict] = []

        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers["Content-Length"])
            body = self.rfile.read(length)
            header = json.loads(body[:int(self.headers["Inference-Header-Content-Length"])])
            Handler.seen.append({"path": self.path, "header": header,
                                 "image": body[len(json.dumps(header)) + 4:]})
            n = len(boxes)
            answer = {"outputs": [
                {"name": "BOXES", "shape": [1, n, 4], "data": [v for b in boxes for v in b[:4]]},
                {"name": "SCORES", "shape": [1, n], "data": [b[4] for b in boxes]},
                {"name": "CLASSES", "shape": [1, n], "data": [b[5] for b in boxes]},
                {"name": "NUM_DETECTIONS", "shape": [1, 1], "data": [n]}]}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, Handler


def test_served_boxes_equal_to_ultralytics_pass():
    served = [[10.3, 20.2, 110.1, 219.6, 0.895, 1], [300, 40, 380, 90, 0.61, 0]]
    server, handler = _server(served)
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert check_served(url, "shapes", b"\xff\xd8jpeg", EXPECTED) == 2
    finally:
        server.shutdown()
    (request,) = handler.seen
    assert request["path"] == "/v2/models/shapes/infer"
    assert request["image"] == b"\xff\xd8jpeg"  # the file's bytes, not re-encoded
    assert {"name": "CONF", "shape": [1, 1], "datatype": "FP32", "data": [0.25]} in \
        request["header"]["inputs"]


@pytest.mark.parametrize("served, says", [
    ([[10, 20, 110, 220, 0.9, 2], [300, 40, 380, 90, 0.6, 0]], "expected box"),  # class
    ([[40, 60, 140, 260, 0.9, 1], [300, 40, 380, 90, 0.6, 0]], "expected box"),  # moved
    ([[10, 20, 110, 220, 0.8, 1], [300, 40, 380, 90, 0.6, 0]], "expected box"),  # score
    ([[10, 20, 110, 220, 0.9, 1], [300, 40, 380, 90, 0.6, 0], [0, 0, 5, 5, 0.7, 2]],
     "served box"),  # one too many
])
def test_disagreeing_boxes_fail_the_deploy(served, says):
    server, _ = _server(served)
    try:
        with pytest.raises(JobFailed, match=f"disagree with ultralytics' predict .*{says}"):
            check_served(f"http://127.0.0.1:{server.server_port}", "shapes", b"x", EXPECTED)
    finally:
        server.shutdown()


def test_boxes_at_the_threshold_may_fall_either_side():
    near = [[0, 0, 10, 10, 0.26, 0]]  # within 0.02 of conf 0.25: served may drop it
    assert disagreements(near, [], 0.25) == []
    assert disagreements([[0, 0, 10, 10, 0.3, 0]], [], 0.25)
