"""Training throughput of our worker vs plain ultralytics, and of 2 gloo processes vs 1 (CPU).

All runs happen in this one invocation, on the same synthetic data and settings:

    .venv/bin/python benchmarks/trainer.py                  # 256 images at 64 px, 4 epochs
    .venv/bin/python benchmarks/trainer.py --repeats 2      # best of 2 for each side

Images/s is measured inside the training loop (epoch start to epoch end, validation excluded),
the same way on both sides, over the epochs after the first (warm-up, plots). Prints:
- plain `YOLO(model).train()` vs our worker with 1 process under torchrun (goal >= 0.95);
- our worker with 2 processes (gloo, the global batch split) vs 1 process.
Wall times (process start to end) are printed too.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

# Plain ultralytics `YOLO.train()` with a per-epoch record; benchmarks/gpu_throughput.py uses
# it too. argv: _, work folder, settings as JSON.
PLAIN = textwrap.dedent("""
    import json, sys, time
    from kfp_yolo.components.runtime import offline_environment
    offline_environment(sys.argv[2] + "/yolo_config")
    from ultralytics import YOLO
    settings = json.loads(sys.argv[3])
    epochs, started = [], {}
    def epoch_start(trainer):
        started["t"] = time.perf_counter()
    def epoch_end(trainer):
        epochs.append({"epoch": trainer.epoch + 1, "seconds": time.perf_counter() - started["t"],
                       "images": len(trainer.train_loader.sampler),
                       "workers": trainer.train_loader.num_workers})
    model = YOLO(settings.pop("model"))
    model.add_callback("on_train_epoch_start", epoch_start)
    model.add_callback("on_train_epoch_end", epoch_end)
    model.train(**settings, project=sys.argv[2], name="train", exist_ok=True)
    print("RESULT " + json.dumps(epochs))
""")


def _steady_images_per_s(epochs_by_rank: list[list[dict]]) -> float:
    """Images/s over the epochs after the first: all ranks' images over the slowest rank."""
    images = seconds = 0.0
    for index in range(1, len(epochs_by_rank[0])):
        images += sum(rank[index]["images"] for rank in epochs_by_rank)
        seconds += max(rank[index]["seconds"] for rank in epochs_by_rank)
    return images / seconds


def _plain(work: Path, data_yaml: Path, args: argparse.Namespace) -> tuple[float, float]:
    settings = {"model": args.model, "data": str(data_yaml), "imgsz": args.imgsz,
                "epochs": args.epochs, "batch": args.batch, "device": "cpu", "workers": 0,
                "seed": 0, "optimizer": "SGD", "lr0": 0.01, "amp": False}
    start = time.perf_counter()
    log = work.parent / f"{work.name}.log"
    with log.open("w") as handle:
        subprocess.run([sys.executable, "-c", PLAIN, "", str(work), json.dumps(settings)],
                       check=True, stdout=handle, stderr=subprocess.STDOUT,
                       cwd=work.parent)  # ultralytics' MLflow callback writes into the cwd
    wall = time.perf_counter() - start
    line = next(ln for ln in log.read_text().splitlines() if ln.startswith("RESULT "))
    return _steady_images_per_s([json.loads(line[len("RESULT "):])]), wall


def _ours(work: Path, dataset: Path, args: argparse.Namespace, procs: int) -> tuple[float, float]:
    from kfp_yolo.components.launchers.local import LocalLauncher
    from kfp_yolo.components.spec import TrainSpec

    spec = TrainSpec(run_id=work.name, dataset_uri=str(dataset), model=args.model,
                     imgsz=args.imgsz, epochs=args.epochs, batch=args.batch, precision="fp32",
                     optimizer="SGD", lr0=0.01, seed=0, workers=0, nodes=1,
                     procs_per_node=procs, checkpoint_uri=str(work / "checkpoints"),
                     output_uri=str(work / "output"), device="cpu")
    start = time.perf_counter()
    log = (work.parent / f"{work.name}.log").open("w")
    stdout, sys.stdout = sys.stdout, log  # the launcher streams the workers' logs to stdout
    try:
        LocalLauncher(scratch=work / "scratch").launch(spec)
    finally:
        sys.stdout = stdout
        log.close()
    wall = time.perf_counter() - start
    records = [json.loads(p.read_text())
               for p in sorted((work / "scratch").glob("node*/progress/rank*.json"))]
    return _steady_images_per_s([r["epochs"] for r in records]), wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="yolov5n.yaml")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side; best kept")
    args = parser.parse_args()
    import yaml

    from kfp_yolo.components.data.synth import SynthSpec, synthesize

    work = Path(tempfile.mkdtemp(prefix="kfp-yolo-bench-trainer-"))
    dataset = work / "data"
    data_yaml = synthesize(dataset, SynthSpec(images=args.images, imgsz=args.imgsz))
    data = yaml.safe_load(data_yaml.read_text())
    data_yaml.write_text(yaml.safe_dump({**data, "path": str(dataset)}, sort_keys=False))

    runs: dict[str, list[tuple[float, float]]] = {"plain": [], "ours1": [], "ours2": []}
    for repeat in range(args.repeats):  # interleaved, so a busy machine slows all sides alike
        runs["plain"].append(_plain(_fresh(work / f"plain{repeat}"), data_yaml, args))
        runs["ours1"].append(_ours(_fresh(work / f"ours1_{repeat}"), dataset, args, 1))
        runs["ours2"].append(_ours(_fresh(work / f"ours2_{repeat}"), dataset, args, 2))
    best = {name: max(results) for name, results in runs.items()}
    print(f"{args.model} {args.images} images at {args.imgsz} px, batch {args.batch}, "
          f"{args.epochs} epochs, CPU, best of {args.repeats}")
    for name, label in (("plain", "plain ultralytics YOLO().train()"),
                        ("ours1", "our worker, 1 process (torchrun)"),
                        ("ours2", "our worker, 2 processes (gloo)")):
        each = ", ".join(f"{speed:.1f}" for speed, _ in runs[name])
        print(f"{label:36s} {best[name][0]:8.1f} images/s   wall {best[name][1]:6.1f} s"
              f"   (runs: {each})")
    print(f"ratio ours(1) / plain:               {best['ours1'][0] / best['plain'][0]:8.2f}"
          "   (goal >= 0.95)")
    print(f"ratio ours(2) / ours(1):             {best['ours2'][0] / best['ours1'][0]:8.2f}")
    print(f"logs: {work}")


def _fresh(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


if __name__ == "__main__":
    main()
