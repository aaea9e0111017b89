"""TensorRT FP16 latency against onnxruntime and PyTorch, on one GPU, in one run (GPU check).

For each model (built from its YAML, random weights: latency does not depend on their values)
it saves a .pt, exports ONNX with the pipeline's own `export_onnx`, builds the engine with the
pipeline's own `build_engine`, then times at each batch size, on the same GPU and input shape:

- TensorRT: the engine, through `tensorrt.measure_latency` (what build_tensorrt logs);
- onnxruntime: CUDAExecutionProvider with inputs and outputs bound on the GPU when that provider
  is installed, else CPUExecutionProvider (the project image ships CPU onnxruntime);
- PyTorch: the same weights, eager, fp16 and fp32.

and prints every latency as a ratio to TensorRT's (how many times slower than the engine).

    python benchmarks/gpu_trt_check.py                       # yolov5n + yolov5l, 640, batch 1, 8
    python benchmarks/gpu_trt_check.py --models yolov5n.yaml --imgsz 320 --iters 50
    python benchmarks/gpu_trt_check.py --cpu-smoke           # everything but TensorRT, on a CPU

Without CUDA or the tensorrt package it prints why and exits 0 (status `skipped`). Results also
go to $OUT/gpu_trt_check.json when OUT is set.

Where to run it: in a pod of the project image on a GPU pool (the image holds torch,
ultralytics, kfp, onnxruntime and tensorrt-cu13; copy this one file in, it imports the installed
package), or on any CUDA machine after `pip install -e . tensorrt-cu13==11.4.0.106`.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def _save_model(model_yaml: str, path: Path) -> Path:
    from ultralytics import YOLO

    YOLO(model_yaml).save(str(path))
    return path


def _torch_ms(weights: Path, *, imgsz: int, batch: int, device: str, half: bool, iters: int,
              warmup: int) -> float:
    import torch
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(str(weights), device="cpu", fuse=True)
    model = model.to(device).eval()
    model = model.half() if half else model.float()
    dtype = torch.float16 if half else torch.float32
    images = torch.rand(batch, 3, imgsz, imgsz, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            model(images)
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            model(images)
        sync()
    return (time.perf_counter() - start) / iters * 1000


def _onnxruntime_ms(onnx_path: Path, *, imgsz: int, batch: int, cuda: bool, iters: int,
                    warmup: int) -> tuple[float, str]:
    import numpy as np
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(str(onnx_path), providers=providers)
    used = session.get_providers()[0]
    images = np.random.default_rng(0).random((batch, 3, imgsz, imgsz), dtype=np.float32)
    input_name = session.get_inputs()[0].name
    if used == "CUDAExecutionProvider":
        # Inputs and outputs stay on the GPU, as with the engine: no host copies in the timing.
        binding = session.io_binding()
        binding.bind_ortvalue_input(input_name, ort.OrtValue.ortvalue_from_numpy(images, "cuda", 0))
        for output in session.get_outputs():
            binding.bind_output(output.name, "cuda", 0)

        def infer() -> None:
            session.run_with_iobinding(binding)
    else:
        def infer() -> None:
            session.run(None, {input_name: images})
    for _ in range(warmup):
        infer()
    start = time.perf_counter()
    for _ in range(iters):
        infer()
    return (time.perf_counter() - start) / iters * 1000, used


def _check_model(model_yaml: str, work: Path, args: argparse.Namespace) -> dict:
    from kfp_yolo.components.export_onnx import export_onnx

    name = Path(model_yaml).stem
    weights = _save_model(model_yaml, work / f"{name}.pt")
    started = time.perf_counter()
    onnx_path = export_onnx(weights, work / f"{name}.onnx", imgsz=args.imgsz, dynamic=True)
    result: dict = {"model": model_yaml, "imgsz": args.imgsz,
                    "export_s": round(time.perf_counter() - started, 1), "batches": {}}
    engine = None
    if not args.cpu_smoke:
        from kfp_yolo.components.tensorrt import build_engine

        started = time.perf_counter()
        engine = build_engine(onnx_path, work / f"{name}.engine", imgsz=args.imgsz,
                              precision="fp16", max_batch=max(args.batches))
        result["engine_build_s"] = round(time.perf_counter() - started, 1)
        result["engine_mib"] = round(engine.stat().st_size / 2**20, 1)
    device = "cpu" if args.cpu_smoke else "cuda"
    timing = {"iters": args.iters, "warmup": args.warmup}
    for batch in args.batches:
        row: dict = {}
        if engine is not None:
            from kfp_yolo.components.tensorrt import measure_latency

            row["tensorrt_fp16_ms"] = measure_latency(engine, imgsz=args.imgsz, batch=batch,
                                                      iterations=args.iters, warmup=args.warmup)
        row["onnxruntime_ms"], row["onnxruntime_provider"] = _onnxruntime_ms(
            onnx_path, imgsz=args.imgsz, batch=batch, cuda=not args.cpu_smoke, **timing)
        if not args.cpu_smoke:
            row["torch_fp16_ms"] = _torch_ms(weights, imgsz=args.imgsz, batch=batch,
                                             device=device, half=True, **timing)
        row["torch_fp32_ms"] = _torch_ms(weights, imgsz=args.imgsz, batch=batch, device=device,
                                         half=False, **timing)
        if "tensorrt_fp16_ms" in row:
            trt = row["tensorrt_fp16_ms"]
            row["ratios_to_tensorrt"] = {
                key.removesuffix("_ms"): round(value / trt, 2) for key, value in row.items()
                if key.endswith("_ms") and key != "tensorrt_fp16_ms"}
        result["batches"][str(batch)] = {k: round(v, 3) if isinstance(v, float) else v
                                         for k, v in row.items()}
    return result


def _print(report: dict) -> None:
    print(f"device: {report['device']}")
    for result in report["models"]:
        print(f"\n{result['model']} @ {result['imgsz']}px  (export {result['export_s']} s, "
              f"engine build {result.get('engine_build_s', '-')} s)")
        for batch, row in result["batches"].items():
            print(f"  batch {batch}:")
            for key, value in row.items():
                if key.endswith("_ms"):
                    ratio = row.get("ratios_to_tensorrt", {}).get(key.removesuffix("_ms"))
                    extra = f"  x{ratio} TensorRT" if ratio is not None else ""
                    provider = f" [{row['onnxruntime_provider']}]" if "onnx" in key else ""
                    print(f"    {key:<18} {value:9.3f} ms{extra}{provider}")


def _write(report: dict) -> None:
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_trt_check.json").write_text(json.dumps(report, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="yolov5n.yaml,yolov5l.yaml",
                        help="comma-separated ultralytics model YAMLs")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="run everything but TensorRT on the CPU (checks the script itself)")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]

    from kfp_yolo.components.runtime import offline_environment

    with tempfile.TemporaryDirectory(prefix="gpu-trt-check-") as tmp:
        offline_environment(Path(tmp) / "yolo_config")  # before ultralytics is imported
        from kfp_yolo.components.tensorrt import availability

        reason = "" if args.cpu_smoke else availability()
        if reason:
            report = {"status": "skipped", "reason": reason}
            print(f"gpu_trt_check skipped: {reason}")
            _write(report)
            return 0
        import torch

        device = "cpu" if args.cpu_smoke else torch.cuda.get_device_name(0)
        report = {"status": "ok", "device": device, "torch": torch.__version__, "models": []}
        if not args.cpu_smoke:
            import tensorrt

            report["tensorrt"] = tensorrt.__version__
        for model_yaml in args.models.split(","):
            report["models"].append(_check_model(model_yaml, Path(tmp), args))
    _print(report)
    _write(report)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
