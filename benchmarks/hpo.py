"""A search's worth at the same compute: the searched configuration's mAP50-95 next to the
default's, on the demo's synthetic shapes, both given the same total training epochs (so about
the same CPU time: every epoch here is the same images at the same size unless imgsz is
searched, which this benchmark leaves alone).

    .venv/bin/python benchmarks/hpo.py                       # 4 trials x 3 epochs + 12 epochs
    .venv/bin/python benchmarks/hpo.py --images 256 --imgsz 128 --trials 6 --trial-epochs 4 \\
        --epochs 20                                          # nearer `make demo`

Side A: hpo_trials short trials (Optuna TPE, median pruning, through the worker under
torchrun), then `--epochs` with the best trial's values. Side B: the default configuration
(AdamW, lr0 0.004, ultralytics' augmentation) for the epochs side A trained in all (trials
included; a pruned trial counts the epochs it ran). Both are evaluated on the same validation
split. Prints both mAP50-95, their ratio, and each side's wall time. No threshold: on data this
small one seed can decide it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import yaml


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--trial-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--space", default="hpo_lr0=0.0005..0.02,hpo_mosaic=0..1",
                        help="the searched keys, KEY=LOW..HIGH separated by commas")
    args = parser.parse_args()

    from kfp_yolo.components.data.synth import SynthSpec, synthesize
    from kfp_yolo.components.evaluate import evaluate
    from kfp_yolo.components.hpo.local import run_local_search
    from kfp_yolo.components.hpo.result import format_table
    from kfp_yolo.components.hpo.space import SearchSpace, apply_values
    from kfp_yolo.components.launchers.local import LocalLauncher
    from kfp_yolo.components.spec import TrainSpec

    work = Path(tempfile.mkdtemp(prefix="kfp-yolo-hpo-bench-"))
    data = work / "data"
    data_yaml = synthesize(data, SynthSpec(images=args.images, imgsz=args.imgsz))
    content = yaml.safe_load(data_yaml.read_text())
    data_yaml.write_text(yaml.safe_dump({**content, "path": str(data)}, sort_keys=False))
    base = TrainSpec(run_id="bench", dataset_uri=str(data), model="yolov5n.yaml",
                     imgsz=args.imgsz, epochs=args.epochs, batch=16, precision="amp",
                     optimizer="AdamW", lr0=0.004, seed=0, workers=0, nodes=1, procs_per_node=1,
                     checkpoint_uri="", output_uri=str(work / "default"), device="cpu")
    space = SearchSpace.from_config({**dict(kv.split("=", 1) for kv in args.space.split(",")),
                                     "imgsz": args.imgsz})

    def train_and_score(spec: TrainSpec) -> float:
        LocalLauncher(scratch=work / f"{spec.run_id}-scratch").launch(spec)
        result = evaluate(Path(spec.output_uri) / "best.pt", data_yaml, imgsz=spec.imgsz,
                          out_dir=work / f"{spec.run_id}-eval")
        return result.map50_95

    started = time.monotonic()
    search = run_local_search(base, space, trials=args.trials, epochs=args.trial_epochs,
                              workdir=work / "search")
    best = apply_values(search.best_trial.values)
    searched = replace(base, run_id="searched", output_uri=str(work / "searched"),
                       lr0=best.pop("lr0", base.lr0), hyp=best)
    searched_map = train_and_score(searched)
    searched_s = time.monotonic() - started
    trial_epochs = sum(len(t.metrics) for t in search.trials)
    started = time.monotonic()
    default = replace(base, run_id="default", epochs=args.epochs + trial_epochs)
    default_map = train_and_score(default)
    default_s = time.monotonic() - started
    print(format_table(search))
    print(f"searched: {trial_epochs} trial epochs + {args.epochs} epochs with "
          f"{search.best_trial.values}: mAP50-95 {searched_map:.4f} ({searched_s:.0f} s)")
    print(f"default:  {default.epochs} epochs: mAP50-95 {default_map:.4f} ({default_s:.0f} s)")
    ratio = searched_map / default_map if default_map else float("inf")
    print(f"ratio searched / default mAP50-95: {ratio:.2f} "
          f"(wall time {searched_s / default_s:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
