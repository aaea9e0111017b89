"""How much sooner a retrain reaches the gate from the round-1 champion than from scratch.

Two rounds of synthetic shapes data, the second with a new seed (new images, positions, sizes
and colours) and more objects per image. Round 1 trains from scratch (its best.pt is the
champion); round 2 trains from scratch and from the champion, side by side in this one run,
each stopped at the first epoch whose validation mAP50-95 reaches the gate. Training is
ultralytics' DetectionTrainer (what kfp-yolo's worker runs) with kfp-yolo's defaults: AdamW,
lr0 0.004 from scratch and ultralytics' own 0.001 for the fine-tune (components/config/values.py).
Then the planner's GPU-hours for yolov5l at 640 on a COCO-sized dataset (118,287 training
images, 80 classes, 8 GPUs of the catalog's cheapest pool that fits), for 300 epochs from
scratch and for the epochs the measured ratio gives.

    .venv/bin/python benchmarks/warm_start.py        # 256 images at 128 px, gate 0.4
    .venv/bin/python benchmarks/warm_start.py --images 512 --gate 0.5 --max-epochs 40
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COCO_TRAIN_IMAGES = 118_287
SCRATCH_EPOCHS_COCO = 300  # ultralytics' from-scratch recipe for COCO


def _train(model: str, data_yaml: Path, work: Path, args: argparse.Namespace,
           lr0: float) -> dict:
    """Trains until the gate or args.max_epochs; epochs and seconds to the gate (None if never)."""
    from ultralytics import YOLO

    from kfp_yolo.components.ultralytics_patches import mlflow_callback_off

    reached: dict = {"epochs": None, "seconds": None, "map50_95": []}
    start = {}

    def train_start(trainer) -> None:
        start["t"] = time.perf_counter()

    def fit_epoch_end(trainer) -> None:
        value = float(trainer.metrics.get("metrics/mAP50-95(B)", 0.0))
        reached["map50_95"].append(round(value, 4))
        if value >= args.gate and reached["epochs"] is None:
            reached["epochs"] = trainer.epoch + 1
            reached["seconds"] = round(time.perf_counter() - start["t"], 1)
            trainer.stop = True  # ultralytics checks it after this callback

    yolo = YOLO(model)
    yolo.add_callback("on_train_start", train_start)
    yolo.add_callback("on_fit_epoch_end", fit_epoch_end)
    # without it, ultralytics' own MLflow callback writes mlflow.db and mlruns/ into the
    # current folder (MLflow's default store) when no tracking server is set
    with mlflow_callback_off():
        yolo.train(data=str(data_yaml), imgsz=args.imgsz, epochs=args.max_epochs,
                   batch=args.batch, device="cpu", workers=0, seed=0, optimizer="AdamW",
                   lr0=lr0, amp=False, plots=False, project=str(work), name="train",
                   exist_ok=True, verbose=False)
    reached["best_pt"] = str(work / "train" / "weights" / "best.pt")
    return reached


def _planner_gpu_hours(epochs: int, cache_dir: Path) -> tuple[float, str]:
    from kfp_yolo.components.k8s.pools import load_pools
    from kfp_yolo.components.planner import plan

    result = plan("yolov5l.yaml", imgsz=640, batch=0, world_size=8, procs_per_node=8, nc=80,
                  pools=load_pools(), train_images=COCO_TRAIN_IMAGES, epochs=epochs,
                  objective="cost", cache_dir=str(cache_dir))
    row = next(r for r in result.pools if r.name == result.pool.name)
    return row.run_s * row.world_size / 3600, result.pool.name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--gate", type=float, default=0.4, help="mAP50-95 to reach")
    parser.add_argument("--max-epochs", type=int, default=25)
    parser.add_argument("--model", default="yolov5n.yaml")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    import yaml

    from kfp_yolo.components.config.values import default_lr0
    from kfp_yolo.components.data.synth import synthesize, synthetic_spec
    from kfp_yolo.components.runtime import offline_environment

    work = Path(tempfile.mkdtemp(prefix="kfp-yolo-warm-start-"))
    offline_environment(work / "yolo_config")
    rounds = {}
    for name, extra in (("round1", "seed=1"), ("round2", "seed=2&max_objects=5")):
        spec = synthetic_spec(f"synthetic://shapes?images={args.images}&imgsz={args.imgsz}"
                              f"&{extra}")
        data_yaml = synthesize(work / name, spec)
        data = yaml.safe_load(data_yaml.read_text())  # ultralytics resolves `path` from cwd
        data_yaml.write_text(yaml.safe_dump({**data, "path": str(work / name)}, sort_keys=False))
        rounds[name] = data_yaml
    scratch_lr, fine_lr = default_lr0("AdamW"), default_lr0("AdamW", fine_tune=True)
    round1 = _train(args.model, rounds["round1"], work / "r1", args, scratch_lr)
    if round1["epochs"] is None:
        print(f"round 1 never reached the gate {args.gate} in {args.max_epochs} epochs "
              f"({round1['map50_95']}); lower --gate or raise --max-epochs")
        return 1
    scratch = _train(args.model, rounds["round2"], work / "r2-scratch", args, scratch_lr)
    warm = _train(round1["best_pt"], rounds["round2"], work / "r2-warm", args, fine_lr)
    print(json.dumps({"round1_scratch": round1, "round2_scratch": scratch,
                      "round2_from_champion": warm}, indent=1))
    if scratch["epochs"] is None or warm["epochs"] is None:
        print("round 2 did not reach the gate on both sides; raise --max-epochs")
        return 1
    epoch_ratio = warm["epochs"] / scratch["epochs"]
    print(f"\ngate mAP50-95 >= {args.gate}, {args.images} images at {args.imgsz} px, "
          f"{args.model}, CPU")
    print(f"round 2 from scratch:       {scratch['epochs']:3d} epochs, {scratch['seconds']:7.1f} s")
    print(f"round 2 from the champion:  {warm['epochs']:3d} epochs, {warm['seconds']:7.1f} s")
    print(f"warm / scratch: epochs {epoch_ratio:.2f}, wall time "
          f"{warm['seconds'] / scratch['seconds']:.2f}")
    warm_epochs = max(1, round(SCRATCH_EPOCHS_COCO * epoch_ratio))
    hours_scratch, pool = _planner_gpu_hours(SCRATCH_EPOCHS_COCO, work / "probe")
    hours_warm, _ = _planner_gpu_hours(warm_epochs, work / "probe")
    print(f"planner, yolov5l 640 on {COCO_TRAIN_IMAGES} images, 8 GPUs on {pool}: "
          f"{SCRATCH_EPOCHS_COCO} epochs from scratch {hours_scratch:,.0f} GPU-hours; "
          f"{warm_epochs} epochs from the champion {hours_warm:,.0f} GPU-hours "
          f"(ratio {hours_warm / hours_scratch:.2f})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
