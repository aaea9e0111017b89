"""Wall time of `kfp-yolo run` vs a plain ultralytics script doing the same train + val + export.

Both run in this one invocation, on the same synthetic data and settings, one after the other:

    .venv/bin/python benchmarks/overhead.py                # the demo's settings
    .venv/bin/python benchmarks/overhead.py --epochs 3     # quicker

Prints both times and their ratio (goal: <= 1.3).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PLAIN = textwrap.dedent("""
    import sys
    from kfp_yolo.components.runtime import offline_environment
    offline_environment(sys.argv[2] + "/yolo_config")
    from kfp_yolo.components.data.synth import SynthSpec, synthesize
    import yaml
    root = sys.argv[2] + "/data"
    images, imgsz, epochs, batch = (int(v) for v in sys.argv[3:7])
    data_yaml = synthesize(root, SynthSpec(images=images, imgsz=imgsz, seed=0))
    data = yaml.safe_load(open(data_yaml)); data["path"] = root
    yaml.safe_dump(data, open(data_yaml, "w"))
    from ultralytics import YOLO
    model = YOLO(sys.argv[1])
    model.train(data=str(data_yaml), imgsz=imgsz, epochs=epochs, batch=batch, device="cpu",
                workers=2, seed=0, optimizer=sys.argv[7], lr0=float(sys.argv[8]),
                project=sys.argv[2], name="train")
    best = YOLO(sys.argv[2] + "/train/weights/best.pt")
    metrics = best.val(data=str(data_yaml), imgsz=imgsz, batch=16, device="cpu")
    best.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, opset=17)
    print("MAP", metrics.box.map)
""")


def _timed(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as handle:
        # in the run's own folder: plain ultralytics' MLflow callback writes MLflow's default
        # store (mlflow.db, mlruns/) into the current folder
        subprocess.run(cmd, check=True, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="yolov5n.yaml")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--optimizer", default="AdamW")
    parser.add_argument("--lr0", type=float, default=0.004)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kfp-yolo-overhead-"))
    (work / "plain").mkdir()
    settings = [str(args.images), str(args.imgsz), str(args.epochs), str(args.batch),
                args.optimizer, str(args.lr0)]
    plain_s = _timed([sys.executable, "-c", PLAIN, args.model, str(work / "plain"), *settings],
                     work / "plain.log")
    ours_s = _timed([sys.executable, "-m", "kfp_yolo.pipelines.cli", "run",
                     "--workdir", str(work / "ours"),
                     "--set", f"model={args.model}", "--set", f"imgsz={args.imgsz}",
                     "--set", f"epochs={args.epochs}", "--set", f"batch={args.batch}",
                     "--set", f"optimizer={args.optimizer}", "--set", f"lr0={args.lr0}",
                     "--set", f"dataset_uri=synthetic://shapes?images={args.images}"
                     f"&imgsz={args.imgsz}", "--set", "min_map50_95=0"], work / "ours.log")
    summary = json.loads((work / "ours" / "summary.json").read_text())
    print(f"plain ultralytics train+val+export: {plain_s:7.1f} s")
    print(f"kfp-yolo run (whole DAG):           {ours_s:7.1f} s  "
          f"(mAP50-95 {summary['metrics'].get('mAP50-95', float('nan')):.3f})")
    print(f"ratio kfp-yolo / plain:             {ours_s / plain_s:7.2f}  (goal <= 1.3)")
    print(f"logs: {work}")


if __name__ == "__main__":
    main()
