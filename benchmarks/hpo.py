"""A search's worth at the same compute: the searched configuration's mAP50-95 next to the
default's, on the demo's synthetic shapes, both sides given the same total CPU time.

    .venv/bin/python benchmarks/hpo.py                       # 4 trials x 3 epochs + 12 epochs
    .venv/bin/python benchmarks/hpo.py --images 256 --imgsz 128 --trials 6 --trial-epochs 4 \\
        --epochs 20                                          # nearer `make demo`

Side A: `--trials` short trials (Optuna TPE, median pruning, through the worker under
torchrun), then `--epochs` with the best trial's values. Side B: the default configuration
(AdamW, lr0 0.004, ultralytics' augmentation) trained once, for as many epochs as side A's CPU
time buys. Both are evaluated on the same validation split.

CPU time, not epochs or wall time: every training runs in torchrun's child processes, so
resource.getrusage(RUSAGE_CHILDREN) measures each one (user + system seconds of the trainings
that ended, whatever else shares the machine). Each of side A's trainings (trials, pruned ones
included, and the final one) gives a point (epochs run, CPU seconds); a least-squares line
through them is the cost of starting a training plus the cost of an epoch, and side B gets
round((side A's CPU - start) / epoch) epochs. Side B is not trained to a wall-clock limit
(ultralytics' `time` argument): on a shared machine wall time is not compute. Prints both
sides' CPU seconds and their ratio (about 1, within one epoch), both mAP50-95 and their ratio.
No threshold: on data this small one seed can decide it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import yaml

T = TypeVar("T")


def child_cpu_s() -> float:
    """CPU seconds (user + system) of this process's children that ended, and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fit_cost(launches: list[tuple[int, float]]) -> tuple[float, float]:
    """(CPU seconds to start a training, CPU seconds an epoch), least squares over (epochs,
    CPU seconds) points; proportional (no start cost) when the line is not meaningful."""
    n = len(launches)
    mean_x = sum(x for x, _ in launches) / n
    mean_y = sum(y for _, y in launches) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in launches)
    if sxx > 0:
        per_epoch = sum((x - mean_x) * (y - mean_y) for x, y in launches) / sxx
        start = mean_y - per_epoch * mean_x
        if per_epoch > 0 and start >= 0:
            return start, per_epoch
    return 0.0, sum(y for _, y in launches) / max(1, sum(x for x, _ in launches))


def measured(run: Callable[[], T]) -> tuple[T, float, float]:
    """run()'s result, the CPU seconds of the children it ran and its wall seconds."""
    cpu, wall = child_cpu_s(), time.monotonic()
    result = run()
    return result, child_cpu_s() - cpu, time.monotonic() - wall


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
    from kfp_yolo.components.hpo.result import TrialRecord, format_table
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

    def train(spec: TrainSpec) -> None:
        LocalLauncher(scratch=work / f"{spec.run_id}-scratch").launch(spec)

    def score(spec: TrainSpec) -> float:
        result = evaluate(Path(spec.output_uri) / "best.pt", data_yaml, imgsz=spec.imgsz,
                          out_dir=work / f"{spec.run_id}-eval")
        return result.map50_95

    # Side A. Trials run one at a time: the children's CPU between two trials' ends is one's.
    launches: list[tuple[int, float]] = []
    mark = [child_cpu_s()]

    def on_trial(record: TrialRecord) -> None:
        now = child_cpu_s()
        launches.append((len(record.metrics), now - mark[0]))
        mark[0] = now

    search, search_cpu, search_wall = measured(lambda: run_local_search(
        base, space, trials=args.trials, epochs=args.trial_epochs, workdir=work / "search",
        on_trial=on_trial))
    best = apply_values(search.best_trial.values)
    searched = replace(base, run_id="searched", output_uri=str(work / "searched"),
                       lr0=best.pop("lr0", base.lr0), hyp=best)
    _, final_cpu, final_wall = measured(lambda: train(searched))
    launches.append((searched.epochs, final_cpu))
    a_cpu, a_wall = search_cpu + final_cpu, search_wall + final_wall

    # Side B: the epochs side A's CPU time buys at the measured cost of a training.
    start_s, epoch_s = fit_cost(launches)
    default = replace(base, run_id="default",
                      epochs=max(1, round((a_cpu - start_s) / epoch_s)))
    _, b_cpu, b_wall = measured(lambda: train(default))
    # evaluated after both trainings: no evaluation's processes inside a measured window
    searched_map, default_map = score(searched), score(default)

    trial_epochs = sum(len(t.metrics) for t in search.trials)
    pruned = sum(t.state == "pruned" for t in search.trials)
    print(format_table(search))
    print(f"cost of a training here: {start_s:.1f} CPU s to start + {epoch_s:.1f} CPU s an "
          f"epoch (least squares over side A's {len(launches)} trainings, epochs: CPU s "
          f"{', '.join(f'{e}: {c:.0f}' for e, c in launches)})")
    print(f"searched: {len(search.trials)} trials ({pruned} pruned), {trial_epochs} trial "
          f"epochs + {args.epochs} epochs with {search.best_trial.values}: CPU {a_cpu:.0f} s "
          f"(wall {a_wall:.0f} s), mAP50-95 {searched_map:.4f}")
    print(f"default:  {default.epochs} epochs: CPU {b_cpu:.0f} s (wall {b_wall:.0f} s), "
          f"mAP50-95 {default_map:.4f}")
    print(f"CPU time default / searched: {b_cpu / a_cpu:.2f}")
    ratio = searched_map / default_map if default_map else float("inf")
    print(f"ratio searched / default mAP50-95: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
