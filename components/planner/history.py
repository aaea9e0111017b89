"""The throughput history: images/s that finished runs measured, read by later plans.

One small JSON object per measurement under ``<registry_uri or checkpoint_uri>/_throughput/``,
named by its UTC time and a random suffix, so concurrent runs append without reading or
rewriting anything (an S3 PUT of a new key, or a file renamed into place). Each record keys
its images/s by GPU product, model, imgsz, batch per GPU, precision, world size and
dataloader workers (`record`). A plan uses, for each pool's GPU, the nearest point with the
same model and precision (`nearest`: the median of that shape's newest records, so one odd
run moves nothing), scaled to the planned shape by the throughput model; runs on a CPU are
recorded as gpu_product 'cpu' and never used for a GPU pool.

The history is shared by every run of a team, so it is read as untrusted data (`load_history`):
every record is checked (types, positive sizes, a known precision, images/s positive and below
MAX_IMAGES_PER_S_PER_GPU per GPU); what fails is counted and named, never used.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.planner.throughput import gpu_spec

__all__ = ["HISTORY_FOLDER", "KEYS", "MAX_IMAGES_PER_S_PER_GPU", "MAX_RECORDS", "MEDIAN_OF",
           "History", "history_uri", "load_history", "nearest", "read_history", "record",
           "record_from_training", "record_training", "write_record"]

HISTORY_FOLDER = "_throughput"
KEYS = ("gpu_product", "model", "imgsz", "batch_per_gpu", "precision", "world_size", "workers")
"""What a measurement is keyed by."""
MAX_RECORDS = 500
"""A plan reads at most the newest 500 records: bounded in time on any store."""
MAX_IMAGES_PER_S_PER_GPU = 20_000.0
"""The physical bound a record is checked against, per GPU of its world size: no GPU trains a
YOLO this fast (an H200 measured 488 images/s for yolov5l at 640, batch 64; yolov5n at 64 px,
about 40x less work, stays below it). A figure above it is a corrupted or forged record."""
MEDIAN_OF = 5
"""A planned shape's figure is the median of at most this many of its newest records."""
_KIND = "kfp-yolo/throughput"
_PRECISIONS = ("amp", "fp32", "bf16")


def history_uri(registry_uri: str = "", checkpoint_uri: str = "") -> str:
    """Where the history lives: beside the registry, else under checkpoint_uri; '' = none."""
    base = (registry_uri or checkpoint_uri or "").rstrip("/")
    return f"{base}/{HISTORY_FOLDER}" if base else ""


def record(*, gpu_product: str, model: str, imgsz: int, batch_per_gpu: int, precision: str,
           world_size: int, workers: int, images_per_s: float, source: str) -> dict[str, Any]:
    """One history record (checked); model is kept by its file name (yolov5l.yaml)."""
    for key, text in (("gpu_product", gpu_product), ("model", model)):
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"throughput record: {key} must be a name, got {text!r}.")
    if precision not in _PRECISIONS:
        raise UserError(f"throughput record: precision must be one of {', '.join(_PRECISIONS)}, "
                        f"got {precision!r}.")
    values = {"gpu_product": gpu_product.strip().replace(" ", "-"),
              "model": Path(model).name, "imgsz": imgsz, "batch_per_gpu": batch_per_gpu,
              "precision": precision, "world_size": world_size, "workers": workers}
    for key in ("imgsz", "batch_per_gpu", "world_size", "workers"):
        least = 0 if key == "workers" else 1
        if isinstance(values[key], bool) or not isinstance(values[key], int) \
                or values[key] < least:
            raise UserError(f"throughput record: {key} must be a whole number >= {least}, got "
                            f"{values[key]!r}.")
    if isinstance(images_per_s, bool) or not isinstance(images_per_s, int | float) \
            or not math.isfinite(images_per_s) or images_per_s <= 0:
        raise UserError(f"throughput record: images_per_s must be a positive number, got "
                        f"{images_per_s!r}.")
    bound = MAX_IMAGES_PER_S_PER_GPU * world_size
    if images_per_s > bound:
        raise UserError(f"throughput record: images_per_s {images_per_s:.4g} is above the "
                        f"physical bound of {bound:,.0f} for {world_size} GPU(s).")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"kind": _KIND, **values, "images_per_s": round(float(images_per_s), 1),
            "source": source, "recorded_at": stamp}


def record_from_training(training: dict[str, Any], *, model: str, imgsz: int, precision: str,
                         source: str) -> dict[str, Any] | None:
    """The record of a finished training (its training.json); None when it timed nothing."""
    speed = training.get("images_per_s") or 0
    if speed <= 0 or not training.get("world_size"):
        return None
    cpu = training.get("device") != "cuda"
    return record(gpu_product="cpu" if cpu else training.get("gpu_product") or "unknown",
                  model=model, imgsz=imgsz, batch_per_gpu=int(training.get("batch_per_gpu", 0)),
                  # a CPU trains in fp32 whatever the config says
                  precision="fp32" if cpu else precision, world_size=int(training["world_size"]),
                  workers=int(training.get("workers") or 0), images_per_s=speed, source=source)


def write_record(uri: str, entry: dict[str, Any]) -> str:
    """Adds one record to the history at uri (a new object; nothing is read or rewritten)."""
    from kfp_yolo.components import storage

    # microseconds: records of one second still sort in the order they were written
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    name = f"{now}-{uuid.uuid4().hex[:12]}.json"
    return storage.write_bytes(f"{uri.rstrip('/')}/{name}",
                               json.dumps(entry, sort_keys=True).encode())


def record_training(uri: str, training: dict[str, Any], *, model: str, imgsz: int,
                    precision: str, source: str) -> str:
    """Adds a finished training's images/s to the history at uri; never raises.

    Returns the record's URI, or '' (nothing timed, or the store refused: said on stderr).
    A history is a hint for later plans: failing to write it never fails the training.
    """
    try:
        entry = record_from_training(training, model=model, imgsz=imgsz, precision=precision,
                                     source=source)
        return write_record(uri, entry) if entry else ""
    except Exception as exc:  # noqa: BLE001 - see above
        print(f"warning: throughput history {uri} not written ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return ""


@dataclass(frozen=True)
class History:
    """What a history holds: the records that passed the checks, and what was ignored."""

    records: list[dict[str, Any]] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    """{object name: why} for each record that was unreadable or failed a check."""

    def ignored_note(self, shown: int = 3) -> str:
        """'N ignored: name (why); ...' naming the first `shown', or '' when none were."""
        if not self.ignored:
            return ""
        items = list(self.ignored.items())
        named = "; ".join(f"{name} ({why})" for name, why in items[:shown])
        more = f"; and {len(items) - shown} more" if len(items) > shown else ""
        return f"{len(items)} ignored: {named}{more}"


def load_history(uri: str, *, limit: int = MAX_RECORDS) -> History:
    """The newest `limit` records at uri, each checked; the others named in `ignored`.

    Raises what the storage module raises for a store that cannot be reached (UserError,
    StorageFault).
    """
    from kfp_yolo.components import storage

    names = [n for n in storage.list_prefix(uri) if n.endswith(".json") and "/" not in n]
    history = History()
    for name in sorted(names)[-limit:]:  # names start with their UTC time
        try:
            entry = json.loads(storage.read_bytes(f"{uri.rstrip('/')}/{name}"))
        except (ValueError, UserError):
            history.ignored[name] = "not JSON"
            continue
        why = _problem(entry)
        if why:
            history.ignored[name] = why
        else:
            history.records.append(entry)
    return history


def read_history(uri: str, *, limit: int = MAX_RECORDS) -> list[dict[str, Any]]:
    """The records of load_history(uri) that passed the checks."""
    return load_history(uri, limit=limit).records


def _problem(entry: Any) -> str:
    """Why entry is no usable record ('' when it is one)."""
    if not isinstance(entry, dict) or entry.get("kind") != _KIND:
        return f"not a {_KIND} record"
    missing = [k for k in (*KEYS, "images_per_s") if k not in entry]
    if missing:
        return f"no {missing[0]}"
    try:
        record(**{k: entry[k] for k in (*KEYS, "images_per_s")}, source="")
    except UserError as exc:
        return str(exc).removeprefix("throughput record: ").rstrip(".")
    return ""


def _same_gpu(a: str, b: str) -> bool:
    """The same GPU type: equal product names, or the same entry of the spec table."""
    if a.lower() == b.lower():
        return True
    spec_a, spec_b = gpu_spec(a), gpu_spec(b)
    return spec_a is not None and spec_a == spec_b


def nearest(records: list[dict[str, Any]], *, gpu_product: str, model: str, imgsz: int,
            batch_per_gpu: int, precision: str, world_size: int,
            workers: int) -> dict[str, Any] | None:
    """The measured point closest to the planned shape on this GPU type, or None.

    Only points with the same model (file name) and precision count; among them the distance
    is the sum of |log2| ratios of imgsz, batch per GPU and world size, plus half that of the
    workers; the newest wins a tie. CPU records never match a GPU. The point returned is the
    newest record of that shape with images_per_s the median of the shape's newest MEDIAN_OF
    records (and "records": how many), so one odd measurement does not decide a plan.
    """
    def distance(r: dict[str, Any]) -> float:
        def ratio(a: int, b: int) -> float:
            return abs(math.log2(max(a, 1) / max(b, 1)))

        return (ratio(r["imgsz"], imgsz) + ratio(r["batch_per_gpu"], batch_per_gpu)
                + ratio(r["world_size"], world_size) + 0.5 * ratio(r["workers"], workers))

    name = Path(str(model)).name
    fitting = [r for r in records if r["gpu_product"].lower() != "cpu"
               and _same_gpu(r["gpu_product"], gpu_product) and r["model"] == name
               and r["precision"] == precision]
    if not fitting:
        return None
    closest = min(reversed(fitting), key=distance)  # reversed: the newest of equals comes first
    same = [r for r in fitting if all(r[k] == closest[k] for k in KEYS)][-MEDIAN_OF:]
    return {**closest, "images_per_s": round(statistics.median(r["images_per_s"] for r in same),
                                             1), "records": len(same)}
