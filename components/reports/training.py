"""The training report: one self-contained HTML page from ultralytics' results.csv and the
worker's training.json (per epoch: losses, P, R, mAP, learning rate, images/s, GPU memory; the
best epoch marked; a few validation images with the model's boxes; the run's shape), and the
numbers of the train step's Metrics artifact (best epoch, images/s, GPU-hours, cost).

No script, no stylesheet or font from anywhere: charts are inline SVG (reports.svg), images are
JPEG data URIs, so it renders the same offline, in a browser and in the Kubeflow UI's sandboxed
HTML viewer.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kfp_yolo.components.progress import duration
from kfp_yolo.components.reports.escape import html_text as escape
from kfp_yolo.components.reports.media import jpeg_data_uri
from kfp_yolo.components.reports.svg import line_chart

__all__ = ["best_epoch", "prediction_samples", "read_results", "render_training_report",
           "train_step_report", "training_metrics", "wall_time", "write_training_report"]

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:20px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px}
.sub{color:#666;margin-bottom:14px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:110px}
.card b{display:block;font-size:18px}.card span{color:#666;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:8px}
.charts svg{border:1px solid #eee;border-radius:4px;background:#fff}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 7px;
text-align:right}th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
tr.best{background:#fff4c2}.samples{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0}.samples img{min-width:160px}figcaption{font-size:12px;color:#555}
"""
_LR_GROUPS = ("pg0 weights", "pg1 norm weights", "pg2 biases")
"""lr/pg0..2 of results.csv: weights with decay, batch-norm weights and biases without."""
SAMPLE_CONF = 0.25
"""Boxes drawn on the sample images from this confidence up (ultralytics' plotting default)."""
# ultralytics' column -> the name the report (and MLflow) uses
_COLUMNS = {"metrics/precision(B)": "precision", "metrics/recall(B)": "recall",
            "metrics/mAP50(B)": "mAP50", "metrics/mAP50-95(B)": "mAP50-95"}


def read_results(path: str | Path) -> dict[str, list[float]]:
    """results.csv column by column, the metric columns renamed (mAP50-95, precision, ...)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, skipinitialspace=True))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            name = _COLUMNS.get(key.strip(), key.strip())
            try:
                columns.setdefault(name, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(name, []).append(math.nan)
    return columns


def best_epoch(results: Mapping[str, Sequence[float]]) -> int | None:
    """The epoch (1-based, as results.csv numbers them) whose weights are best.pt.

    ultralytics 8.4's fitness is mAP50-95 and it keeps the first epoch of a tie, except that a
    fitness of 0 never counts as found (every such epoch replaces the one before).
    """
    scores = [s if math.isfinite(s) else -1.0 for s in results.get("mAP50-95", [])]
    epochs = results.get("epoch") or list(range(1, len(scores) + 1))
    if not scores:
        return None
    top = max(scores)
    index = scores.index(top) if top > 0 else len(scores) - 1
    return int(epochs[index])


def _value_at(results: Mapping[str, Sequence[float]], column: str, epoch: int | None) -> float:
    epochs = [int(e) for e in results.get("epoch", [])]
    if epoch is None or epoch not in epochs or column not in results:
        return math.nan
    return results[column][epochs.index(epoch)]


def wall_time(results: Mapping[str, Sequence[float]], training: Mapping[str, Any]) -> float:
    """Seconds the training took, validation included, across resumes.

    results.csv's `time` counts from the start of the process that trained the epoch, so a
    resumed run starts counting again: each process's last time is added up. A new process
    began where the time goes down, and at the first epoch of the worker's own record
    (training.json holds the epochs of the last process only). Without a time column: the
    worker's per-epoch seconds (training loops only).
    """
    recorded = [int(e["epoch"]) for e in training.get("epochs") or [] if "epoch" in e]
    resumed_at = min(recorded) if recorded else None
    total, previous = 0.0, None
    for epoch, seconds in zip(results.get("epoch", []), results.get("time", []), strict=False):
        if not math.isfinite(seconds):
            continue
        if previous is not None and (seconds < previous or int(epoch) == resumed_at):
            total += previous
        previous = seconds
    if previous is not None:
        return total + previous
    return sum(e.get("seconds", 0.0) for e in training.get("epochs") or [])


def training_metrics(results: Mapping[str, Sequence[float]], training: Mapping[str, Any], *,
                     hourly_price: float | None = None) -> dict:
    """The Metrics artifact's values: best epoch and its mAP, epochs run, images/s, wall time,
    GPU-hours (wall time x GPUs; 0 on CPU) and the estimated cost at the pool's price
    (`hourly_price`: the catalog's price of one GPU-hour). Cost is left out when the pool has
    no price."""
    best = best_epoch(results)
    wall_s = wall_time(results, training)
    gpus = training.get("world_size", 1) if training.get("device") == "cuda" else 0
    gpu_hours = wall_s / 3600 * gpus
    values = {"best_epoch": best or 0, "epochs_run": len(results.get("epoch", [])),
              "best_mAP50-95": round(_value_at(results, "mAP50-95", best), 6),
              "best_mAP50": round(_value_at(results, "mAP50", best), 6),
              "images_per_s": float(training.get("images_per_s") or 0.0),
              "wall_time_s": round(wall_s, 1), "gpus": gpus,
              "gpu_hours": round(gpu_hours, 4)}
    if hourly_price is not None:
        values["estimated_cost_usd"] = round(gpu_hours * hourly_price, 4)
    return {k: v for k, v in values.items() if not (isinstance(v, float) and math.isnan(v))}


def prediction_samples(weights: str | Path, images: Sequence[str | Path], *, imgsz: int,
                       max_side: int = 320, quality: int = 70) -> list[tuple[str, bytes]]:
    """(caption, JPEG) of each image with the model's boxes (confidence >= SAMPLE_CONF) drawn, at
    most max_side px; the caption is the file name and how many boxes it got."""
    from PIL import Image

    from kfp_yolo.components.runtime import offline_environment

    offline_environment()  # the boxes' labels need a font: the local one, nothing fetched
    from ultralytics import YOLO

    model = YOLO(str(weights))
    samples = []
    for result in model.predict([str(p) for p in images], imgsz=imgsz, device="cpu",
                                verbose=False, conf=SAMPLE_CONF):
        drawn = Image.fromarray(result.plot()[..., ::-1])  # BGR -> RGB
        drawn.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        drawn.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
        boxes = len(result.boxes) if result.boxes is not None else 0
        count = "no box" if boxes == 0 else f"{boxes} box" + ("es" if boxes > 1 else "")
        samples.append((f"{Path(result.path).name}: {count}", buffer.getvalue()))
    return samples


def _series(results: Mapping[str, Sequence[float]], columns: Mapping[str, str]
            ) -> dict[str, list[tuple[float, float]]]:
    epochs = results.get("epoch", [])
    return {label: list(zip(epochs, results[column], strict=False))
            for label, column in columns.items() if column in results}


def _per_epoch(training: Mapping[str, Any], key: str) -> list[tuple[float, float]]:
    return [(e["epoch"], e[key]) for e in training.get("epochs") or [] if key in e]


def _charts(results: Mapping[str, Sequence[float]], training: Mapping[str, Any],
            best: int | None) -> list[str]:
    charts = []
    for part in ("box", "cls", "dfl"):
        charts.append(line_chart(_series(results, {"train": f"train/{part}_loss",
                                                   "val": f"val/{part}_loss"}),
                                 title=f"{part} loss", marker_x=best))
    charts.append(line_chart(_series(results, {"precision": "precision", "recall": "recall"}),
                             title="precision and recall", marker_x=best))
    charts.append(line_chart(_series(results, {"mAP50": "mAP50", "mAP50-95": "mAP50-95"}),
                             title="mAP", marker_x=best))
    groups = sorted(c for c in results if c.startswith("lr/pg"))
    # ultralytics 8.4 builds its SGD/Adam groups in this order (trainer.build_optimizer)
    names = (_LR_GROUPS if len(groups) == len(_LR_GROUPS)
             else tuple(f"group {c[len('lr/pg'):]}" for c in groups))
    charts.append(line_chart(_series(results, dict(zip(names, groups, strict=True))),
                             title="learning rate", marker_x=best))
    charts.append(line_chart({"job": _per_epoch(training, "images_per_s")},
                             title="throughput", y_label="images/s"))
    charts.append(line_chart({"rank 0": _per_epoch(training, "gpu_memory_mib")},
                             title="peak GPU memory reserved", y_label="MiB",
                             empty="no GPU: trained on CPU" if training.get("device") == "cpu"
                             else "not recorded"))
    return charts


_NO_BOXES = (f"No box reaches confidence {SAMPLE_CONF} on these images yet: the model needs "
             "more epochs (or data) before it is sure of what it sees.")


def _cards(metrics: Mapping[str, Any]) -> str:
    shown = [("best epoch", metrics.get("best_epoch")),
             ("mAP50-95 (best)", metrics.get("best_mAP50-95")),
             ("mAP50 (best)", metrics.get("best_mAP50")),
             ("epochs run", metrics.get("epochs_run")),
             ("images/s", metrics.get("images_per_s")),
             ("wall time", duration(metrics.get("wall_time_s") or 0)),
             ("GPU-hours", metrics.get("gpu_hours") if metrics.get("gpus") != 0 else "0 (CPU)"),
             ("est. cost (USD)", metrics.get("estimated_cost_usd", "no price")
              if metrics.get("gpus") != 0 else "0 (CPU)")]
    return "".join(f'<div class="card"><b>{escape(_fmt(v))}</b><span>{escape(k)}</span></div>'
                   for k, v in shown if v is not None)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(results: Mapping[str, Sequence[float]], training: Mapping[str, Any],
           best: int | None) -> str:
    columns = [c for c in ("epoch", "train/box_loss", "val/box_loss", "precision", "recall",
                           "mAP50", "mAP50-95", "lr/pg0") if c in results]
    extra = {e["epoch"]: e for e in training.get("epochs") or []}
    head = "".join(f"<th>{escape(c)}</th>" for c in [*columns, "images/s", "GPU MiB"])
    rows = []
    for i, epoch in enumerate(results.get("epoch", [])):
        cells = [_fmt(int(epoch))] + [_fmt(results[c][i]) for c in columns[1:]]
        record = extra.get(int(epoch), {})
        cells += [_fmt(record.get("images_per_s", "")), _fmt(record.get("gpu_memory_mib", "-"))]
        mark = ' class="best"' if best is not None and int(epoch) == best else ""
        rows.append(f"<tr{mark}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def render_training_report(results: Mapping[str, Sequence[float]], training: Mapping[str, Any],
                           shape: Mapping[str, Any], metrics: Mapping[str, Any],
                           samples: Sequence[tuple[str, bytes]] = (), *, title: str = "") -> str:
    """The report as one HTML document.

    Args:
        results: read_results() of results.csv.
        training: the worker's training.json ({} when absent: a run finished from its
            checkpoint has none); gives images/s and GPU memory per epoch.
        shape: the run's shape as label -> value (launcher, nodes x processes, batch per GPU,
            pool, precision, ...), shown as a table.
        metrics: training_metrics() of the same run.
        samples: prediction_samples() of a few validation images.
    """
    best = best_epoch(results)
    shape_rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_fmt(v))}</td></tr>"
                         for k, v in shape.items())
    figures = "".join(
        f'<figure><img alt="{escape(name)}" src="{jpeg_data_uri(data)}">'
        f'<figcaption>{escape(name)}</figcaption></figure>'
        for name, data in samples)
    best_note = f"best epoch {best} (dashed line; its weights are best.pt)" if best else ""
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{escape(title or 'Training report')}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title or 'Training report')}</h1>",
        f'<div class="sub">{escape(best_note)}</div>',
        f'<div class="cards">{_cards(metrics)}</div>',
        "<h2>Run</h2>", f"<table>{shape_rows}</table>",
        "<h2>Per epoch</h2>", f'<div class="charts">{"".join(_charts(results, training, best))}'
                              "</div>",
        f"<h2>Validation images, best.pt's boxes (confidence &ge; {SAMPLE_CONF})</h2>"
        if samples else "",
        f'<p class="sub">{_NO_BOXES}</p>'
        if samples and all(name.endswith(": no box") for name, _ in samples) else "",
        f'<div class="samples">{figures}</div>' if samples else "",
        "<h2>Table</h2>", _table(results, training, best),
        "</body></html>\n"])


def write_training_report(weights_dir: str | Path, out_html: str | Path, *,
                          shape: Mapping[str, Any], imgsz: int, val_images: Sequence[Path] = (),
                          hourly_price: float | None = None, title: str = "",
                          samples: int = 4) -> dict:
    """Writes the report of the training in `weights_dir` (results.csv, training.json, best.pt)
    to out_html; returns training_metrics(). Drawing the sample predictions is best effort: the
    report goes out without them rather than fail the step."""
    import json
    import logging

    folder = Path(weights_dir)
    results = read_results(folder / "results.csv") if (folder / "results.csv").exists() else {}
    training = (json.loads((folder / "training.json").read_text())
                if (folder / "training.json").exists() else {})
    metrics = training_metrics(results, training, hourly_price=hourly_price)
    drawn: list[tuple[str, bytes]] = []
    if val_images and (folder / "best.pt").exists():
        try:
            drawn = prediction_samples(folder / "best.pt", list(val_images)[:samples], imgsz=imgsz)
        except Exception as exc:  # a picture is not worth failing the training step for
            logging.getLogger("kfp_yolo.reports").warning(
                "training report without sample predictions: %s: %s", type(exc).__name__, exc)
    Path(out_html).parent.mkdir(parents=True, exist_ok=True)
    Path(out_html).write_text(render_training_report(results, training, shape, metrics, drawn,
                                                     title=title), encoding="utf-8")
    return metrics


def train_step_report(weights_dir: str | Path, dataset_dir: str | Path, report_path: str | Path,
                      *, training: Mapping[str, Any], launcher: str, pool: str, node_pools: str,
                      precision: str, model: str, imgsz: int, epochs: int, run_id: str) -> dict:
    """The train step's report: the run's shape, the pool's price from the catalog text
    `node_pools` (none when the pool is not in it), a few of the dataset's val images; returns
    the Metrics values."""
    from kfp_yolo.components.k8s.pools import load_pools_text

    chosen = ({p.name: p for p in load_pools_text(node_pools)}.get(pool) if node_pools
              else None)
    shape = {"launcher": launcher, "model": model, "image size": imgsz, "epochs": epochs,
             "nodes x processes": f"{training.get('nodes', '?')} x "
                                  f"{training.get('procs_per_node', '?')} "
                                  f"({training.get('device', '?')})",
             "batch per GPU": training.get("batch_per_gpu", "?"),
             "global batch": training.get("batch", "?"), "pool": pool or "-",
             "precision": precision if training.get("device") == "cuda" else
             f"{precision} (fp32 on CPU)",
             "dataloader": f"{training.get('workers', '?')} workers, cache "
                           f"{training.get('cache', '?')}"}
    if chosen is not None and chosen.hourly_price is not None:
        shape["pool price"] = f"{chosen.hourly_price} USD per GPU-hour"
    val_images = sorted(p for p in (Path(dataset_dir) / "images" / "val").glob("*")
                        if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"))
    values = write_training_report(
        weights_dir, report_path, shape=shape, imgsz=imgsz, val_images=val_images,
        hourly_price=chosen.hourly_price if chosen else None, title=f"Training report: {run_id}")
    print(f"training report: {report_path} (best epoch {values.get('best_epoch')}, "
          f"{values.get('images_per_s')} images/s, {values.get('gpu_hours')} GPU-hours)")
    return values
