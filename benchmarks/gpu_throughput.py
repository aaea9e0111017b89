"""Issue 14 on one GPU: plain ultralytics vs kfp-yolo with `batch: 0`, the ceiling, the planner.

    python benchmarks/gpu_throughput.py             # yolov5l.yaml, 640, AMP: about 4 minutes
    python benchmarks/gpu_throughput.py --dry-run   # tiny, on CPU: checks this script runs
    python benchmarks/gpu_throughput.py --history s3://BUCKET/registry/_throughput  # feeds plans

Side by side, in this one run, on one synthetic dataset (--images PNGs at --synth-px,
letterboxed to 640), each side in a fresh process:
1. plain ultralytics at its defaults: `YOLO(model).train(batch=16, workers=8)` (SGD, seed 0);
2. kfp-yolo with `batch: 0`: the batch from `planner.plan(..., batch=0)` for a pool that is
   this GPU, workers chosen by the worker (training/inputs.py) and the disk cache it chooses
   for a pipeline's (downloaded) dataset, through the local launcher (torchrun, the training
   worker) as `kfp-yolo run` does;
3. the ceiling: the same trainer step (ultralytics' model, loss, GradScaler, accumulation,
   optimizer step and EMA, and the loop's per-iteration loss logging) with one batch already on
   the GPU, at kfp-yolo's batch and at 16, and a torch.profiler table of the batch-16 step;
4. the planner's predicted peak against the kfp-yolo run's (NVML over idle, torch reserved).
Images/s of 1 and 2 are the training loop's, over the epochs after the first. Prints the
issue's Done-when ratios (>= 2.0x plain, >= 0.9x the ceiling); writes OUT/gpu_throughput.json.
Without CUDA (and without --dry-run) it prints why and exits 0. benchmarks/gpu_check.sh
prepares a lent GPU machine (packages) and runs this with `throughput`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gpu_train_check import _dataset, _NvmlSampler  # noqa: E402
from trainer import PLAIN  # noqa: E402


def _steady(epochs: list[dict]) -> float:
    steady = epochs[1:] or epochs
    return sum(e["images"] for e in steady) / sum(e["seconds"] for e in steady)


def _plain(args: argparse.Namespace, data_yaml: Path, work: Path) -> dict:
    settings = {"model": args.model, "data": str(data_yaml), "imgsz": args.imgsz,
                "epochs": args.epochs, "batch": 16, "workers": 8, "seed": 0,
                "optimizer": "SGD", "lr0": 0.01, "device": args.device,
                "amp": not args.dry_run}
    log = work / "plain.log"
    with log.open("w") as handle:
        subprocess.run([sys.executable, "-c", PLAIN, "", str(work / "plain"),
                        json.dumps(settings)], check=True, stdout=handle,
                       stderr=subprocess.STDOUT, timeout=args.side_timeout_s,
                       cwd=work)  # ultralytics' MLflow callback writes into the cwd
    line = next(ln for ln in log.read_text().splitlines() if ln.startswith("RESULT "))
    epochs = json.loads(line[len("RESULT "):])
    return {"batch": 16, "workers": epochs[-1]["workers"], "cache": "none",
            "images_per_s": _steady(epochs)}


def _ours(args: argparse.Namespace, dataset: Path, work: Path, batch: int) -> dict:
    from kfp_yolo.components.launchers.local import LocalLauncher
    from kfp_yolo.components.spec import TrainSpec

    spec = TrainSpec(run_id="throughput", dataset_uri=str(dataset), model=args.model,
                     imgsz=args.imgsz, epochs=args.epochs, batch=batch,
                     precision="fp32" if args.dry_run else "amp", optimizer="SGD", lr0=0.01,
                     seed=0, workers=0, nodes=1, procs_per_node=1,
                     # what auto picks in a pipeline, where the dataset is the job's downloaded
                     # copy; this local folder (auto: none) is the script's own
                     cache="disk",
                     checkpoint_uri=str(work / "ours" / "checkpoints"),
                     output_uri=str(work / "ours" / "output"),
                     device="cpu" if args.dry_run else "cuda")
    stdout, log = sys.stdout, (work / "ours.log").open("w")
    sys.stdout = log  # the launcher streams the workers' logs
    try:
        if args.dry_run:
            LocalLauncher(scratch=work / "ours" / "scratch").launch(spec)
            nvml = None
        else:
            with _NvmlSampler() as nvml:
                LocalLauncher(scratch=work / "ours" / "scratch").launch(spec)
    finally:
        sys.stdout = stdout
        log.close()
    record = json.loads((work / "ours" / "scratch" / "node0" / "progress" / "rank0.json")
                        .read_text())
    result = {"batch": batch, "workers": record["workers"], "cache": record["cache"],
              "chosen": record["input_pipeline"], "images_per_s": _steady(record["epochs"]),
              "torch_reserved_mib": max((e.get("max_memory_reserved_mib", 0.0)
                                         for e in record["epochs"]), default=0.0)}
    if nvml is not None:
        result["nvml_over_idle_mib"] = nvml.peak_mib - nvml.baseline_mib
    return result


def _ceiling_child(case: dict) -> dict:
    """The trainer's step on one batch already on the device, per batch; one is profiled."""
    from kfp_yolo.components.runtime import offline_environment

    offline_environment(case["work"] + "/yolo_config")
    import torch

    results = {}
    for batch in case["batches"]:
        results[str(batch)] = _ceiling_at(case, batch)
        if case["device"] != "cpu":
            torch.cuda.empty_cache()
    return results


def _ceiling_at(case: dict, batch: int) -> dict:
    import torch
    from ultralytics.utils.torch_utils import autocast

    from kfp_yolo.components.ultralytics_patches import launcher_trainer_class

    cuda = case["device"] != "cpu"
    overrides = {"model": case["model"], "data": case["data"], "imgsz": case["imgsz"],
                 "batch": batch, "device": case["device"], "workers": 0, "amp": cuda,
                 "optimizer": "SGD", "lr0": 0.01, "seed": 0, "plots": False,
                 "exist_ok": True, "save_dir": f"{case['work']}/ceiling{batch}"}
    trainer = launcher_trainer_class()(overrides, world_size=1, local_rank=0, is_main=True)
    trainer._setup_train()
    on_device = {k: v.to(trainer.device) if isinstance(v, torch.Tensor) else v
                 for k, v in next(iter(trainer.train_loader)).items()}
    trainer.model.train()

    def step(i: int) -> None:  # _do_train's iteration, less the dataloader
        with autocast(trainer.amp, device=trainer.device.type):
            loss, items = trainer.model(trainer.preprocess_batch(dict(on_device)))
            trainer.loss = loss.sum()
        trainer.scaler.scale(trainer.loss).backward()
        if (i + 1) % trainer.accumulate == 0:
            trainer.optimizer_step()
        [float(v) for v in items.values()]  # the loop's progress bar: a host sync

    for i in range(case["warmup"] * trainer.accumulate):
        step(i)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    iterations = case["iterations"] * trainer.accumulate
    started = time.perf_counter()
    for i in range(iterations):
        step(i)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    result = {"images_per_s": batch * iterations / seconds,
              "ms_per_iteration": 1000 * seconds / iterations, "accumulate": trainer.accumulate}
    if cuda:
        result["torch_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    if batch == case["profile_batch"]:
        result["profile"] = _profile(step, trainer.accumulate, cuda)
    return result


def _profile(step, iterations: int, cuda: bool) -> str:
    """torch.profiler table of `iterations` steps (one optimizer step): where the time goes."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for i in range(iterations):
            step(i)
    events = prof.key_averages()
    syncs = sum(e.count for e in events if e.key in ("cudaStreamSynchronize",
                                                    "cudaDeviceSynchronize"))
    d2h = sum(e.count for e in events if e.key == "Memcpy DtoH (Device -> Pageable)")
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    header = (f"{iterations} iterations; host syncs {syncs}, device-to-host copies {d2h}; "
              f"self CPU {sum(e.self_cpu_time_total for e in events) / 1e3:.1f} ms")
    if cuda:
        header += f", self CUDA {sum(e.self_device_time_total for e in events) / 1e3:.1f} ms"
    return header + "\n" + events.table(sort_by=sort, row_limit=15, max_name_column_width=48)


def _ceiling(args: argparse.Namespace, data_yaml: Path, work: Path, batches: list[int]
             ) -> dict:
    case = {"model": args.model, "data": str(data_yaml), "imgsz": args.imgsz,
            "device": args.device, "batches": batches, "profile_batch": 16 if not args.dry_run
            else batches[-1], "work": str(work), "warmup": 2 if not args.dry_run else 1,
            "iterations": 5 if not args.dry_run else 1}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)],
                          capture_output=True, text=True, timeout=args.side_timeout_s)
    (work / "ceiling.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"ceiling failed: {(proc.stderr or proc.stdout)[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _plan(args: argparse.Namespace, gpu_mib: int, work: Path):
    from kfp_yolo.components.k8s.pools import Pool
    from kfp_yolo.components.planner import plan

    this_gpu = Pool(name="this-gpu", gpu_product="this", gpu_memory_mib=gpu_mib,
                    gpus_per_node=1, max_nodes=1, flavor="this")
    return plan(args.model, imgsz=args.imgsz, batch=0, world_size=1, precision="amp",
                optimizer="SGD", nc=3, pools=[this_gpu], cache_dir=work / "probes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="yolov5l.yaml")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=1280, help="a fifth goes to val")
    parser.add_argument("--synth-px", type=int, default=320, help="side of the made images")
    parser.add_argument("--side-timeout-s", type=int, default=200)
    parser.add_argument("--out", default=os.environ.get("OUT") or ".", help="results folder")
    parser.add_argument("--dry-run", action="store_true",
                        help="yolov5n, 64 px, 48 images, 2 epochs on CPU: checks the script")
    parser.add_argument("--history", default=None, metavar="URI",
                        help="also add kfp-yolo's images/s to this throughput history (a "
                             "path, s3:// or minio://), which `kfp-yolo plan --history` reads")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_ceiling_child(json.loads(args.child))))
        return 0
    if args.dry_run:
        args.model, args.imgsz, args.epochs, args.images, args.synth_px = (
            "yolov5n.yaml", 64, 2, 48, 64)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    import torch

    result: dict = {"model": args.model, "imgsz": args.imgsz, "torch": torch.__version__}
    if not args.dry_run and not torch.cuda.is_available():
        result.update(status="skipped", reason="no CUDA device")
        print("skipped: no CUDA device (use --dry-run to check the script on CPU)")
        (out / "gpu_throughput.json").write_text(json.dumps(result, indent=1))
        return 0
    args.device = "cpu" if args.dry_run else "0"
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="kfp-yolo-gpu-throughput-"))
    dataset = _dataset(work / "data", args.images, args.synth_px)
    data_yaml = dataset / "data.yaml"
    gpu_mib = (torch.cuda.get_device_properties(0).total_memory // 2**20 if not args.dry_run
               else 16384)
    planned = _plan(args, gpu_mib, work)
    batch = planned.batch if not args.dry_run else min(planned.batch, 8)  # CPU: keep it tiny
    result.update(device=torch.cuda.get_device_name(0) if not args.dry_run else "cpu",
                  gpu_memory_mib=gpu_mib, planned_batch=planned.batch, batch=batch,
                  predicted_peak_mib=planned.peak_mib, status="ok")
    print(f"{result['device']} ({gpu_mib} MiB): plan(batch=0) -> batch {planned.batch}, "
          f"predicted peak {planned.peak_mib} MiB", flush=True)
    result["plain"] = _plain(args, data_yaml, work)
    print(f"plain done ({time.perf_counter() - started:.0f} s)", flush=True)
    result["kfp_yolo"] = _ours(args, dataset, work, batch)
    print(f"kfp-yolo done ({time.perf_counter() - started:.0f} s)", flush=True)
    result["ceiling"] = _ceiling(args, data_yaml, work, sorted({16 if not args.dry_run else 4,
                                                                 batch}))
    result["seconds"] = round(time.perf_counter() - started)
    _report(result)
    if args.history:
        result["history_record"] = _record(args, result)
    (out / "gpu_throughput.json").write_text(json.dumps(result, indent=1))
    print(f"results: {out / 'gpu_throughput.json'}; logs: {work}")
    return 0


def _record(args: argparse.Namespace, r: dict) -> str:
    """kfp-yolo's measured images/s as one throughput-history record (planner/history.py)."""
    from kfp_yolo.components.planner.history import record, write_record

    ours = r["kfp_yolo"]
    entry = record(gpu_product=r["device"], model=args.model, imgsz=args.imgsz,
                   batch_per_gpu=r["batch"], precision="fp32" if args.dry_run else "amp",
                   world_size=1, workers=ours["workers"], images_per_s=ours["images_per_s"],
                   source="benchmarks/gpu_throughput.py")
    uri = write_record(args.history, entry)
    print(f"throughput history: {uri}")
    return uri


def _report(r: dict) -> None:
    plain, ours, ceiling = r["plain"], r["kfp_yolo"], r["ceiling"]
    top = ceiling[str(r["batch"])]
    print(f"\n{r['model']} imgsz {r['imgsz']} on {r['device']}, images/s of the training loop")
    print(f"{'side':44s} {'batch':>5} {'workers':>7} {'cache':>6} {'images/s':>9} {'x plain':>8}")
    rows = [("plain ultralytics (defaults)", plain),
            ("kfp-yolo batch: 0", ours)] + [
        (f"ceiling: batch on the device, b{b}", {**c, "workers": "-", "cache": "-", "batch": b})
        for b, c in ceiling.items()]
    for name, row in rows:
        print(f"{name:44s} {row['batch']:>5} {row['workers']!s:>7} {row['cache']:>6} "
              f"{row['images_per_s']:>9.1f} {row['images_per_s'] / plain['images_per_s']:>8.2f}")
    print(f"kfp-yolo's input pipeline: {ours['chosen']['reason']}")
    ratio_plain = ours["images_per_s"] / plain["images_per_s"]
    ratio_ceiling = ours["images_per_s"] / top["images_per_s"]
    r["ratios"] = {"kfp_over_plain": ratio_plain, "kfp_over_ceiling": ratio_ceiling}
    print(f"kfp-yolo / plain {ratio_plain:.2f} (goal >= 2.0); kfp-yolo / ceiling at batch "
          f"{r['batch']} {ratio_ceiling:.2f} (goal >= 0.9)")
    measured = ours.get("nvml_over_idle_mib")
    if measured:
        err = 100 * (r["predicted_peak_mib"] - measured) / measured
        r["planner_error_pct"] = err
        print(f"planner: predicted peak {r['predicted_peak_mib']} MiB vs measured {measured:.0f} "
              f"MiB NVML over idle ({err:+.1f}%; goal within +-3%, never under by more than 2%);"
              f" torch reserved {ours['torch_reserved_mib']:.0f} MiB")
    for b, c in ceiling.items():
        if "profile" in c:
            print(f"\nprofile of the ceiling step at batch {b} ({c['ms_per_iteration']:.1f} ms/"
                  f"iteration, accumulate {c['accumulate']}):\n{c['profile']}")


if __name__ == "__main__":
    sys.exit(main())
