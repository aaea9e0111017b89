"""Plain data shared by the KFP steps, the launchers and the training processes.

No kfp, no kubernetes, no torch here: every torchrun rank imports this module. TrainSpec is
what a launcher hands to every training process (as JSON in its argv); the choices and the
batch-shape rule are defined once and used by the config, the planner, the launchers and the
worker.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kfp_yolo.components.errors import UserError

__all__ = ["CACHES", "OPTIMIZERS", "PRECISIONS", "TrainSpec", "canonical_optimizer",
           "as_field_types", "check_batch_shape", "default_checkpoint_uri", "train_spec_from"]

PRECISIONS = ("amp", "fp32", "bf16")
"""Training precisions: amp (fp16 autocast), fp32, bf16 (CUDA only; CPU always trains fp32)."""
OPTIMIZERS = ("auto", "SGD", "Adam", "AdamW")
"""Optimizers as ultralytics names them."""
_OPTIMIZER_NAMES = {name.lower(): name for name in OPTIMIZERS}
CACHES = ("auto", "ram", "disk", "none")
"""Image caching: auto (chosen from the pod's memory, the dataset and the processes per node;
see training/inputs.py), ram, disk (.npy beside the images) or none."""


def canonical_optimizer(name: str) -> str:
    """ultralytics' spelling of an optimizer name given in any case; UserError if unknown."""
    canonical = _OPTIMIZER_NAMES.get(str(name).lower())
    if canonical is None:
        raise UserError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}.")
    return canonical


def check_batch_shape(batch: int, world_size: int, *, shape: str = "") -> None:
    """Refuses a global batch that does not split evenly over world_size processes.

    batch 0 (the planner chooses) always passes. `shape` says where world_size comes from,
    e.g. " (2 nodes x 4 processes per node)".
    """
    if batch and batch % world_size:
        suggestion = max(1, batch // world_size) * world_size
        raise UserError(f"batch {batch} is not divisible by the world size {world_size}{shape}: "
                        f"it does not split over {world_size} GPUs; use a multiple of "
                        f"{world_size} such as {suggestion}.")


def default_checkpoint_uri(output_uri: str) -> str:
    """Where checkpoints go when checkpoint_uri is empty: `checkpoints` beside the weights.

    For a cluster job output_uri is the train step's weights artifact in object storage (under
    the pipeline root), so its checkpoints outlive the training pods and a restarted job
    resumes; `kfp-yolo job render` shows the same place. Locally it is a folder.
    """
    if "://" in output_uri:
        return posixpath.join(posixpath.dirname(output_uri.rstrip("/")), "checkpoints")
    return os.path.join(os.path.dirname(output_uri.rstrip(os.sep)), "checkpoints")


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """Everything every training process needs; serialised to JSON into the worker's argv."""

    run_id: str
    """Names the run; a restarted job with the same run id resumes from its checkpoint."""
    dataset_uri: str
    """Folder (path or object-store prefix) holding the prepared data.yaml, images/ and labels/."""
    model: str
    """Model YAML (from scratch) or .pt checkpoint."""
    imgsz: int
    epochs: int
    batch: int
    """Global batch over all processes."""
    precision: str
    """amp | fp32 | bf16 (CUDA only; CPU always trains in fp32)."""
    optimizer: str
    lr0: float
    seed: int
    workers: int
    """Dataloader workers per training process; 0 = chosen from the pod's CPUs and memory
    (training/inputs.py)."""
    nodes: int
    procs_per_node: int
    checkpoint_uri: str
    """Checkpoints go to checkpoint_uri/run_id/ every epoch."""
    output_uri: str
    """best.pt, last.pt and results.csv are uploaded here at the end."""
    device: str = "auto"
    """auto (cuda when there is one), cpu or cuda."""
    init_timeout_s: int = 300
    """Seconds a rendezvous or process-group init may take before failing."""
    cache: str = "auto"
    """Image cache, one of CACHES; auto = chosen per run (training/inputs.py)."""
    hyp: dict[str, float] = field(default_factory=dict)
    """More ultralytics training arguments, from a hyperparameter search (components/hpo):
    momentum, weight_decay, mosaic, scale, hsv_h, hsv_s, hsv_v, fraction."""
    metric_lines: bool = False
    """Rank 0 prints `map50_95=VALUE` after every epoch: what Katib's StdOut collector and the
    local search's pruner read."""
    model_sha256: str = ""
    """sha256 of a fetched base checkpoint (warm_start.py): every node checks its copy."""

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node

    @property
    def shape(self) -> str:
        """" (N nodes x P processes per node)", for messages."""
        return f" ({self.nodes} nodes x {self.procs_per_node} processes per node)"

    def to_json(self) -> str:
        data = asdict(self)
        # Left out at their defaults: a training job's spec reads as it did before searches
        # and fine-tunes.
        for name, default in (("hyp", {}), ("metric_lines", False), ("model_sha256", "")):
            if data[name] == default:
                del data[name]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainSpec:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_GIVEN_BY_THE_RUN = frozenset({"run_id", "dataset_uri", "output_uri", "checkpoint_uri", "batch"})
"""TrainSpec fields the step (or `job render`) decides, not read from the config's values."""


def train_spec_from(values: Mapping[str, Any], *, run_id: str, dataset_uri: str,
                    output_uri: str, batch: int | None = None) -> TrainSpec:
    """The TrainSpec of a run from its checked config values: the one place config keys become
    TrainSpec fields.

    Every field named like a config key is taken by that name, so a new training key needs
    only RunConfig, a TrainSpec field and the worker that reads it. lr0 must be resolved
    (the validate step's values; RunConfig.learning_rate).

    Args:
        values: checked config values (the validate step's outputs, or a RunConfig's dump).
        run_id, dataset_uri, output_uri: what the run knows (its name, the artifacts' URIs).
        batch: the planner's global batch (batch 0 in the config = planned); None = values'.
    """
    taken = {f.name: values[f.name] for f in fields(TrainSpec)
             if f.name in values and f.name not in _GIVEN_BY_THE_RUN}
    # a copy of each mapping (hyp): the spec is a value of its own, not a view of the caller's
    taken = {k: dict(v) if isinstance(v, Mapping) else v for k, v in taken.items()}
    return TrainSpec(**as_field_types(TrainSpec, {
        "run_id": run_id, "dataset_uri": dataset_uri, "output_uri": output_uri,
        "batch": values["batch"] if batch is None else batch,
        # empty: beside the weights, in object storage for a cluster job (as `job render` shows)
        "checkpoint_uri": values.get("checkpoint_uri") or default_checkpoint_uri(output_uri),
        **taken}))


def as_field_types(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """values with each plain field's type restored: a config that crossed the DAG as one
    structured value (a protobuf Struct, whose numbers are doubles) may give 10.0 for 10."""
    kinds = {f.name: f.type for f in fields(cls)}
    typed = dict(values)
    for name, value in values.items():
        kind = kinds.get(name)
        if kind in ("int", int) and isinstance(value, float) and value.is_integer():
            typed[name] = int(value)
        elif kind in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
            typed[name] = float(value)
    return typed

