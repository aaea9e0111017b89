"""Serving load: the end-to-end Triton model under concurrent clients vs ultralytics' predict loop.

One tiny untrained YOLOv8n (tests/tiny_detectors.py, 3 classes) is exported, put in a Triton
repository by kfp-yolo and served by the real tritonserver 2.51 (nvidia-pytriton) on loopback,
twice: as published (dynamic batching on) and with every `dynamic_batching` block taken out.
Clients send the 4 COCO8 validation photos (JPEG bytes) for a fixed time, over HTTP
(kfp-yolo's urllib client) and gRPC (tritonclient), each request one image; the same photos go
through `YOLO(model.onnx).predict` in a loop in this process on the same CPUs. Printed:
requests/s, p50 and p99 latency per setting, and each setting's throughput as a ratio of
ultralytics' loop, measured in one run.

    .venv/bin/python benchmarks/serving_load.py                       # 15 s per setting
    .venv/bin/python benchmarks/serving_load.py --seconds 5 --clients 4 --imgsz 320
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # tiny_detectors, as the tests import it
IMAGES = sorted((REPO / "tests" / "data" / "coco8" / "images" / "val").glob("*.jpg"))


def _latencies(call, seconds: float, clients: int) -> list[float]:
    done: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def work(offset: int) -> None:
        index = offset
        while time.monotonic() < stop:
            start = time.perf_counter()
            call(IMAGES[index % len(IMAGES)])
            with lock:
                done.append(time.perf_counter() - start)
            index += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done


def _row(name: str, latencies: list[float], seconds: float) -> dict:
    ordered = sorted(latencies)
    return {"name": name, "rps": len(ordered) / seconds,
            "p50": 1000 * statistics.median(ordered),
            "p99": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]}


def _grpc_call(url: str, model: str):
    import numpy as np
    import tritonclient.grpc as grpcclient

    local = threading.local()

    def call(path: Path) -> None:
        if not hasattr(local, "client"):
            local.client = grpcclient.InferenceServerClient(url)
        tensor = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[path.read_bytes()]], dtype=object))
        local.client.infer(model, [tensor])

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--imgsz", type=int, default=320)
    args = parser.parse_args()

    from tiny_detectors import tiny_detector

    from kfp_yolo.components.export_onnx import export_onnx
    from kfp_yolo.components.release.predict_client import infer_image
    from kfp_yolo.components.release.triton import build_repository
    from kfp_yolo.components.release.triton_local import LocalTriton, local_repository

    work = Path(tempfile.mkdtemp(prefix="serving-load-"))
    weights = tiny_detector(work / "model", "yolov8n.yaml", imgsz=args.imgsz)
    onnx = export_onnx(weights, work / "model" / "model.onnx", imgsz=args.imgsz)
    build_repository(work / "published", "bench", onnx)

    from ultralytics import YOLO

    model = YOLO(str(onnx), task="detect")
    model.predict(str(IMAGES[0]), imgsz=args.imgsz, verbose=False)  # warm up
    rows = [_row("ultralytics predict loop (1 thread)", _latencies(
        lambda p: model.predict(str(p), imgsz=args.imgsz, verbose=False), args.seconds, 1),
        args.seconds)]
    for batching in (True, False):
        repository = work / f"repository-{batching}"
        local_repository(work / "published", repository)
        if not batching:
            for config in repository.glob("*/config.pbtxt"):
                config.write_text(re.sub(r"dynamic_batching \{[^}]*\}\n", "",
                                         config.read_text()))
        with LocalTriton(repository, work) as server:
            label = "dynamic batching" if batching else "no batching"
            infer_image(server.url, "bench", IMAGES[0].read_bytes())  # warm up
            http = _latencies(lambda p, s=server: infer_image(s.url, "bench", p.read_bytes()),
                              args.seconds, args.clients)
            rows.append(_row(f"Triton HTTP, {args.clients} clients, {label}", http,
                             args.seconds))
            grpc = _latencies(_grpc_call(f"127.0.0.1:{server.grpc_port}", "bench"),
                              args.seconds, args.clients)
            rows.append(_row(f"Triton gRPC, {args.clients} clients, {label}", grpc,
                             args.seconds))
    base = rows[0]["rps"]
    print(f"\nimgsz {args.imgsz}, {len(IMAGES)} COCO8 photos, {args.seconds:.0f} s per setting")
    print(f"{'setting':<44} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'x loop':>7}")
    for row in rows:
        print(f"{row['name']:<44} {row['rps']:>7.1f} {row['p50']:>8.1f} {row['p99']:>8.1f} "
              f"{row['rps'] / base:>7.2f}")


if __name__ == "__main__":
    main()
