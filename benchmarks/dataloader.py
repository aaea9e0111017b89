"""Images/s of ultralytics' training dataloader at 640 with mosaic: defaults vs kfp-yolo's choice.

    .venv/bin/python benchmarks/dataloader.py                 # 160 synthetic images, batch 16
    .venv/bin/python benchmarks/dataloader.py --batches 40 --repeats 3

The loader is the one the trainer builds on a GPU (build_yolo_dataset in train mode: mosaic and
the other augmentations, then build_dataloader), here without a GPU. Sides, measured in this one
run on the same synthetic dataset (components/data/synth.py, PNG images at --px), interleaved:
- ultralytics' defaults: workers=8, cache=False (build_dataloader caps workers at the CPUs);
- kfp-yolo's choice for one process on this machine (training/inputs.py: cgroup CPUs and
  memory; a disk cache in the job's own copy of the dataset);
- the same workers with cache=ram, which kfp-yolo takes only when set: is disk as fast?
Images/s counts batches after the first (worker start-up) from a fresh loader; per worker is
images/s over the loader's worker processes (in-process loading counts as one). Also printed:
the workers' private memory (USS), which training/inputs.py's WORKER_BYTES budgets.
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def _loader(data_yaml: Path, imgsz: int, batch: int, workers: int, cache: bool | str):
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml))
    cfg = get_cfg(overrides={"imgsz": imgsz, "cache": cache, "workers": workers})
    dataset = build_yolo_dataset(cfg, data["train"], batch, data, mode="train")
    # device "cuda", as the trainer passes it on a GPU; without one it counts 0 GPUs
    return build_dataloader(dataset, batch=batch, workers=workers, shuffle=True, rank=-1)


def _worker_uss_mib() -> float:
    import psutil

    workers = psutil.Process().children(recursive=True)
    return sum(p.memory_full_info().uss for p in workers) / 2**20 / max(1, len(workers))


def _measure(data_yaml: Path, args: argparse.Namespace, workers: int, cache: bool | str
             ) -> dict:
    loader = _loader(data_yaml, args.imgsz, args.batch, workers, cache)
    try:
        batches = _forever(loader)
        next(batches)  # worker start-up and the first mosaic buffer fill
        started, images = time.perf_counter(), 0
        for _ in range(args.batches):
            images += len(next(batches)["img"])
        seconds = time.perf_counter() - started
        uss = _worker_uss_mib() if loader.num_workers else 0.0
    finally:
        loader.close()
        # ultralytics reads an existing .npy in every cache mode: the other sides must not
        for npy in data_yaml.parent.rglob("*.npy"):
            npy.unlink()
    speed = images / seconds
    return {"workers": loader.num_workers, "images_per_s": speed,
            "per_worker": speed / max(1, loader.num_workers), "worker_uss_mib": uss}


def _forever(loader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--px", type=int, default=640, help="side of the synthetic images")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side; best kept")
    args = parser.parse_args()

    from kfp_yolo.components.runtime import (
        offline_environment,
        usable_cpus,
        usable_memory_bytes,
    )

    os.environ["YOLO_VERBOSE"] = "false"  # ultralytics' progress bars would bury the table
    offline_environment()
    import yaml

    from kfp_yolo.components.data.synth import SynthSpec, synthesize
    from kfp_yolo.components.training.inputs import choose_input_pipeline

    work = Path(tempfile.mkdtemp(prefix="kfp-yolo-bench-loader-"))
    try:
        data_yaml = synthesize(work, SynthSpec(images=args.images, imgsz=args.px))
        data = yaml.safe_load(data_yaml.read_text())
        data_yaml.write_text(yaml.safe_dump({**data, "path": str(work)}, sort_keys=False))
        common = dict(cpus=usable_cpus(), mem_bytes=usable_memory_bytes(), n_images=args.images,
                      imgsz=args.imgsz, batch_per_proc=args.batch,
                      disk_free_bytes=shutil.disk_usage(work).free)
        ours = choose_input_pipeline(procs_per_node=1, **common)
        sides = {"ultralytics defaults (workers=8, cache=False)": (8, False),
                 f"kfp-yolo's choice (workers={ours.workers}, cache={ours.cache})":
                     (ours.workers, ours.ultralytics_cache),
                 "same workers, cache=ram (only when set)": (ours.workers, "ram")}
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for _ in range(args.repeats):  # interleaved: a busy machine slows every side alike
            for name, (workers, cache) in sides.items():
                runs[name].append(_measure(data_yaml, args, workers, cache))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best = {name: max(r, key=lambda x: x["images_per_s"]) for name, r in runs.items()}
    print(f"training dataloader, {args.images} synthetic {args.px} px PNGs at imgsz {args.imgsz}, "
          f"mosaic, batch {args.batch}, {args.batches} batches, best of {args.repeats}; "
          f"{common['cpus']} CPUs, {common['mem_bytes'] / 2**30:.1f} GiB")
    print(f"kfp-yolo's choice: {ours.reason}")
    for name, result in best.items():
        each = ", ".join(f"{r['images_per_s']:.1f}" for r in runs[name])
        print(f"  {name:52s} {result['workers']:2d} worker processes  "
              f"{result['images_per_s']:7.1f} images/s  {result['per_worker']:6.1f} per worker"
              f"  worker USS {result['worker_uss_mib']:6.0f} MiB   (runs: {each})")
    base, mine = best[next(iter(sides))], best[list(sides)[1]]
    print(f"ratio kfp-yolo's choice / ultralytics defaults: images/s "
          f"{mine['images_per_s'] / base['images_per_s']:.2f}, per worker process "
          f"{mine['per_worker'] / base['per_worker']:.2f}")


if __name__ == "__main__":
    main()
