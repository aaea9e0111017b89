"""GPU check of the distributed trainer: yolov5l at 640 with AMP on one GPU, through our worker.

    python benchmarks/gpu_train_check.py                  # yolov5l.yaml, 640, batch 16, amp
    python benchmarks/gpu_train_check.py --precision bf16
    python benchmarks/gpu_train_check.py --cpu-smoke      # tiny run on CPU: checks this script

It trains a synthetic dataset (--images at --synth-px, letterboxed to --imgsz) for --epochs
through LocalLauncher: torchrun, one process, the training worker, as `kfp-yolo run` does. With the
defaults that is 3 epochs x 20 iterations. Printed, and written to OUT/gpu_train_check.json:
- images/s of the training loop over the epochs after the first (warm-up excluded), as the worker
  records it in SCRATCH/node0/progress/rank0.json;
- peak memory: torch.cuda.max_memory_reserved and max_memory_allocated in the worker, and the
  device's used memory from NVML (nvidia-ml-py), sampled every 50 ms, with its idle baseline.

Without CUDA it prints why and exits 0 with status `skipped`. benchmarks/gpu_check.sh prepares a
lent GPU machine (packages) and runs this.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout


class _NvmlSampler:
    """The device's used memory, sampled in a thread; peak and idle baseline in MiB."""

    def __init__(self, index: int = 0, interval_s: float = 0.05):
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.name = pynvml.nvmlDeviceGetName(self._handle)
        self.total_mib = pynvml.nvmlDeviceGetMemoryInfo(self._handle).total / 2**20
        self.baseline_mib = self._used()
        self.peak_mib = self.baseline_mib
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _used(self) -> float:
        return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_mib = max(self.peak_mib, self._used())

    def __enter__(self) -> "_NvmlSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._nvml.nvmlShutdown()


def _dataset(root: Path, images: int, px: int) -> Path:
    import yaml

    from kfp_yolo.components.data.synth import SynthSpec, synthesize

    data_yaml = synthesize(root, SynthSpec(images=images, imgsz=px))
    data = yaml.safe_load(data_yaml.read_text())
    data_yaml.write_text(yaml.safe_dump({**data, "path": str(root)}, sort_keys=False))
    return root


def _train(args: argparse.Namespace, work: Path, device: str) -> dict:
    from kfp_yolo.components.launchers.local import LocalLauncher
    from kfp_yolo.components.spec import TrainSpec

    spec = TrainSpec(run_id="gpu-check", dataset_uri=str(_dataset(work / "data", args.images,
                                                                  args.synth_px)),
                     model=args.model, imgsz=args.imgsz, epochs=args.epochs, batch=args.batch,
                     precision=args.precision, optimizer="SGD", lr0=0.01, seed=0,
                     workers=args.workers, nodes=1, procs_per_node=1,
                     checkpoint_uri=str(work / "checkpoints"), output_uri=str(work / "output"),
                     device=device)
    started = time.perf_counter()
    LocalLauncher(scratch=work / "scratch").launch(spec)
    wall = time.perf_counter() - started
    record = json.loads((work / "scratch" / "node0" / "progress" / "rank0.json").read_text())
    epochs = record["epochs"]
    steady = epochs[1:] or epochs
    return {
        "iterations": sum(e["batches"] for e in epochs),
        "images_per_s": sum(e["images"] for e in steady) / sum(e["seconds"] for e in steady),
        "epoch_seconds": [round(e["seconds"], 3) for e in epochs],
        "torch_max_memory_reserved_mib": max(
            (e.get("max_memory_reserved_mib", 0.0) for e in epochs), default=None),
        "torch_max_memory_allocated_mib": max(
            (e.get("max_memory_allocated_mib", 0.0) for e in epochs), default=None),
        "wall_s": round(wall, 1),
        "best_pt": (work / "output" / "best.pt").exists(),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="yolov5l.yaml")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--precision", default="amp", choices=["amp", "bf16", "fp32"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=400, help="a fifth goes to val")
    parser.add_argument("--synth-px", type=int, default=320, help="side of the made images")
    parser.add_argument("--workers", type=int, default=8, help="dataloader workers")
    parser.add_argument("--out", default=os.environ.get("OUT") or ".", help="results folder")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="yolov5n, 64 px, 32 images, 2 epochs on CPU: checks the script")
    args = parser.parse_args()
    if args.cpu_smoke:
        args.model, args.imgsz, args.batch, args.epochs = "yolov5n.yaml", 64, 8, 2
        args.images, args.synth_px, args.precision = 32, 64, "fp32"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"model": args.model, "imgsz": args.imgsz, "batch": args.batch,
                    "precision": args.precision, "epochs": args.epochs}

    import torch

    result["torch"] = torch.__version__
    if not args.cpu_smoke and not torch.cuda.is_available():
        result.update(status="skipped", reason="no CUDA device: torch.cuda.is_available() is "
                      f"False (torch {torch.__version__})")
        print(f"skipped: {result['reason']}")
    else:
        work = Path(tempfile.mkdtemp(prefix="kfp-yolo-gpu-train-"))
        if args.cpu_smoke:
            result.update(status="ok", device="cpu", **_train(args, work, "cpu"))
        else:
            with _NvmlSampler() as nvml:
                result.update(status="ok", **_train(args, work, "cuda"))
            result.update(device=nvml.name, gpu_total_mib=round(nvml.total_mib),
                          nvml_baseline_mib=round(nvml.baseline_mib),
                          nvml_used_peak_mib=round(nvml.peak_mib),
                          nvml_peak_minus_baseline_mib=round(nvml.peak_mib - nvml.baseline_mib))
        print(f"{result['model']} imgsz {args.imgsz} batch {args.batch} {args.precision} on "
              f"{result['device']}: {result['iterations']} iterations, "
              f"{result['images_per_s']:.1f} images/s (epochs after the first)")
        if "nvml_used_peak_mib" in result:
            print(f"peak memory: torch reserved {result['torch_max_memory_reserved_mib']:.0f} MiB,"
                  f" allocated {result['torch_max_memory_allocated_mib']:.0f} MiB; NVML used "
                  f"{result['nvml_used_peak_mib']} MiB ({result['nvml_peak_minus_baseline_mib']}"
                  " MiB over the idle baseline)")
    (out / "gpu_train_check.json").write_text(json.dumps(result, indent=1))
    print(f"results: {out / 'gpu_train_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
