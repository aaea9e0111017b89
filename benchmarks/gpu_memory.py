"""Predicted against measured peak GPU memory of YOLO training steps, on one GPU (GPU check).

For yolov5n, yolov5s and yolov5l at 640, batch 4, 8 and 16, AMP and FP32, each case runs in a
fresh process (a clean allocator and its own CUDA context) a few real training iterations the way
ultralytics' trainer does them: channels_last model, uint8 images normalised inside autocast,
the model's own loss, GradScaler, gradient accumulation, unscale + clip_grad_norm_, a nesterov
SGD step over ultralytics' three parameter groups, zero_grad and a ModelEMA update. It prints,
beside the planner's prediction (kfp_yolo.components.planner, computed on the CPU):

- NVML used memory of the process (CUDA context included) against the predicted peak;
- torch.cuda.max_memory_reserved against the prediction without the CUDA context;
- torch.cuda.max_memory_allocated against the predicted tensors (no allocator overhead,
  workspaces or context), which isolates the probe from the calibration constants;

each with its error in percent. Ratios of these give the constants to calibrate
(FRAGMENTATION = reserved / allocated, CUDA_CONTEXT_MIB = NVML - reserved). The constants are
fitted to the real trainer, whose allocator fragments more (reserved/allocated 1.13 AMP, 1.18
FP32 on an H200) than this bare loop (1.04-1.09): here NVML and reserved read high by about
that difference by design, and the allocated column is the probe's own error.

With --auto-batch each model and precision also runs at the batch `batch: 0` would take on this
GPU (the largest of 64/32/16/... that fits its memory by the planner's numbers), marked `auto`.

    python benchmarks/gpu_memory.py                  # all 18 cases, about 4 minutes on an H100
    python benchmarks/gpu_memory.py --models yolov5n.yaml --batches 4
    python benchmarks/gpu_memory.py --models yolov5l.yaml --batches 16 --auto-batch
    python benchmarks/gpu_memory.py --cpu-smoke      # the training loop on CPU, nothing measured

Without CUDA it prints why and exits 0 (status `skipped`). Results also go to
$OUT/gpu_memory.json when OUT is set. Nothing is downloaded (no AMP check, models from YAML).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

MODELS = ("yolov5n.yaml", "yolov5s.yaml", "yolov5l.yaml")
BATCHES = (4, 8, 16)
PRECISIONS = ("amp", "fp32")
ITERATIONS = 6
ACCUMULATE = 2  # ultralytics accumulates to 64 images; 2 keeps gradients alive across a backward
BUDGET_S = 450  # the whole run fits in 8 minutes: cases left when it is spent are reported
_MIB = 2**20


def _train_iterations(model_yaml: str, *, imgsz: int, batch: int, precision: str,
                      device: str, iterations: int) -> None:
    """Real training iterations as ultralytics' trainer runs them (no dataloader)."""
    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import ModelEMA, init_seeds

    from kfp_yolo.components.planner import BOXES_PER_IMAGE

    init_seeds(0, deterministic=True)  # the trainer's default (deterministic=True)
    model = DetectionModel(model_yaml, nc=80, verbose=False).to(device)
    if device.startswith("cuda"):
        model = model.to(memory_format=torch.channels_last)  # the trainer's default on CUDA
    model.args = get_cfg()
    model.train()
    decay, no_decay, biases = [], [], []  # ultralytics' three parameter groups
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if "bias" in name:
                biases.append(param)
            elif isinstance(module, torch.nn.BatchNorm2d):
                no_decay.append(param)
            else:
                decay.append(param)
    optimizer = torch.optim.SGD(biases, lr=0.01, momentum=0.937, nesterov=True)
    optimizer.add_param_group({"params": decay, "weight_decay": 5e-4})
    optimizer.add_param_group({"params": no_decay, "weight_decay": 0.0})
    ema = ModelEMA(model)
    amp = precision in ("amp", "bf16")
    on_cuda = device.startswith("cuda")
    dtype = torch.float16 if precision == "amp" and on_cuda else torch.bfloat16  # CPU: bf16
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=precision == "amp")

    gen = torch.Generator().manual_seed(0)
    n = batch * BOXES_PER_IMAGE
    images = torch.randint(0, 256, (batch, 3, imgsz, imgsz), dtype=torch.uint8, generator=gen)
    targets = {
        "batch_idx": torch.arange(batch).repeat_interleave(BOXES_PER_IMAGE).float(),
        "cls": torch.randint(0, 80, (n, 1), generator=gen).float(),
        "bboxes": torch.rand(n, 4, generator=gen) * 0.5 + 0.25,
    }
    images = images.to(device)
    targets = {k: v.to(device) for k, v in targets.items()}
    for it in range(1, iterations + 1):
        with torch.autocast(device.split(":")[0], dtype=dtype, enabled=amp):
            img = images.float() / 255
            loss, _ = model.loss({"img": img, **targets})
            loss = loss.sum()
        scaler.scale(loss).backward()
        if it % ACCUMULATE == 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad()
            ema.update(model)


def _nvml_used_mib(pid: int | None = None) -> float | None:
    """NVML used memory of a process on GPU 0 (of the whole device when pid is None)."""
    try:
        import pynvml  # nvidia-ml-py, installed with ultralytics
    except ImportError:
        return None
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        if pid is None:
            return pynvml.nvmlDeviceGetMemoryInfo(handle).used / _MIB
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return proc.usedGpuMemory / _MIB
        return None  # another PID namespace: the parent falls back to the device's used memory
    finally:
        pynvml.nvmlShutdown()


def _case_child(spec: str) -> int:
    """One measured case, in its own process; prints one JSON line."""
    import torch

    case = json.loads(spec)
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    _train_iterations(case["model"], imgsz=case["imgsz"], batch=case["batch"],
                      precision=case["precision"], device="cuda:0", iterations=ITERATIONS)
    torch.cuda.synchronize()
    print(json.dumps({
        "reserved_mib": torch.cuda.max_memory_reserved() / _MIB,
        "allocated_mib": torch.cuda.max_memory_allocated() / _MIB,
        "nvml_process_mib": _nvml_used_mib(os.getpid()),
        "nvml_device_mib": _nvml_used_mib(),
        "seconds": round(time.perf_counter() - start, 1),
    }))
    return 0


def _predict(model: str, imgsz: int, batch: int, precision: str) -> dict:
    from kfp_yolo.components.planner import estimate_peak

    est = estimate_peak(model, imgsz=imgsz, batch=batch, precision=precision, optimizer="SGD")
    parts = est.breakdown_mib
    overhead = parts["allocator_overhead"] + parts["nccl"] + parts["cuda_context"]
    return {"peak_mib": est.peak_mib, "reserved_mib": est.peak_mib - parts["cuda_context"],
            "tensors_mib": est.peak_mib - overhead, "breakdown_mib": parts}


def _auto_batch(model: str, imgsz: int, precision: str, gpu_mib: int) -> int:
    """The batch `batch: 0` takes on one GPU of gpu_mib MiB (0: not one image fits)."""
    from kfp_yolo.components.planner import auto_batch, fit_batch

    fits = fit_batch(model, imgsz=imgsz, precision=precision, optimizer="SGD", nc=80,
                     gpu_memory_mib=gpu_mib)
    return auto_batch(fits, 1)


def _err(predicted: float, measured: float | None) -> float | None:
    return None if not measured else round(100 * (predicted - measured) / measured, 1)


def _measure(case: dict, timeout: float) -> dict:
    baseline = _nvml_used_mib()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit {proc.returncode}"}
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    if measured["nvml_process_mib"] is None and baseline is not None:
        measured["nvml_process_mib"] = measured["nvml_device_mib"] - baseline
    return measured


def _cpu_smoke() -> int:
    """The training loop and the prediction on CPU, tiny: proves the script runs."""
    start = time.perf_counter()
    for precision in PRECISIONS:
        _train_iterations("yolov5n.yaml", imgsz=64, batch=2, precision=precision, device="cpu",
                          iterations=ACCUMULATE)
        pred = _predict("yolov5n.yaml", 64, 2, precision)
        print(f"cpu-smoke {precision}: loop ok, predicted peak {pred['peak_mib']} MiB")
    print(f"cpu-smoke done in {time.perf_counter() - start:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--auto-batch", action="store_true",
                        help="also run the batch `batch: 0` takes on this GPU")
    parser.add_argument("--cpu-smoke", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _case_child(args.child)
    if args.cpu_smoke:
        return _cpu_smoke()

    import torch

    result: dict = {"status": "ok", "cases": []}
    if not torch.cuda.is_available():
        result.update(status="skipped", reason="no CUDA device: this check needs a GPU")
        print(f"gpu_memory: skipped ({result['reason']})")
        _write(result)
        return 0
    result["device"] = torch.cuda.get_device_name(0)
    result["torch"] = torch.__version__
    start = time.perf_counter()
    header = (f"{'model':<14}{'prec':<6}{'batch':>8} | {'pred':>7}{'nvml':>7}{'err%':>7} | "
              f"{'pred':>7}{'resvd':>7}{'err%':>7} | {'tensor':>7}{'alloc':>7}{'err%':>7}")
    print(f"{result['device']}  imgsz {args.imgsz}  (MiB; NVML | reserved | allocated)")
    print(header)
    gpu_mib = torch.cuda.get_device_properties(0).total_memory // _MIB
    for model in args.models:
        for precision in args.precisions:
            auto = _auto_batch(model, args.imgsz, precision, gpu_mib) if args.auto_batch else 0
            for batch in sorted({*args.batches, auto} - {0}):
                case = {"model": model, "imgsz": args.imgsz, "batch": batch,
                        "precision": precision, "auto": batch == auto}
                left = BUDGET_S - (time.perf_counter() - start)
                if left < 20:
                    result["cases"].append({**case, "skipped": "time budget spent"})
                    continue
                pred = _predict(model, args.imgsz, batch, precision)
                try:
                    got = _measure(case, timeout=min(120.0, left))
                except subprocess.TimeoutExpired:
                    got = {"error": "timed out"}
                row = {**case, "predicted": pred, "measured": got}
                if "error" not in got:
                    row["error_pct"] = {
                        "nvml": _err(pred["peak_mib"], got["nvml_process_mib"]),
                        "reserved": _err(pred["reserved_mib"], got["reserved_mib"]),
                        "allocated": _err(pred["tensors_mib"], got["allocated_mib"]),
                    }
                    e = row["error_pct"]
                    nvml = got["nvml_process_mib"] or 0
                    label = f"{batch}{' auto' if case['auto'] else ''}"
                    print(f"{model:<14}{precision:<6}{label:>8} | {pred['peak_mib']:>7}"
                          f"{nvml:>7.0f}{_fmt(e['nvml'])} | {pred['reserved_mib']:>7}"
                          f"{got['reserved_mib']:>7.0f}{_fmt(e['reserved'])} | "
                          f"{pred['tensors_mib']:>7}{got['allocated_mib']:>7.0f}"
                          f"{_fmt(e['allocated'])}", flush=True)
                else:
                    print(f"{model:<14}{precision:<6}{batch:>8} | error: {got['error']}",
                          flush=True)
                result["cases"].append(row)
    errors = [abs(c["error_pct"]["nvml"]) for c in result["cases"]
              if c.get("error_pct", {}).get("nvml") is not None]
    if errors:
        result["max_abs_error_pct_nvml"] = max(errors)
        print(f"largest |error| against NVML: {max(errors):.1f}% over {len(errors)} cases "
              f"({time.perf_counter() - start:.0f}s)")
    _write(result)
    return 0


def _fmt(value: float | None) -> str:
    return f"{'-':>7}" if value is None else f"{value:>+7.1f}"


def _write(result: dict) -> None:
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_memory.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
