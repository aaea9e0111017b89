"""The fine-tuning keys (warm_start, dataset_hash): their fields and checks, kept out of
config.py as serving_keys.py and hpo_keys.py keep theirs. Fetching and checking the checkpoint
is components/training/warm_start.py's; lineage is components/release/lineage.py's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from kfp_yolo.components.config.values import (
    REGISTRY_PREFIX,
    check_dataset_hash,
    check_detection_model,
)

__all__ = ["DatasetHash", "WarmStart", "check_model", "check_registry_model", "fine_tunes"]

WarmStart = Literal["none", "champion", "latest"]
DatasetHash = Annotated[str, BeforeValidator(check_dataset_hash)]
"""A sha256 in hex or ''; a number (YAML's reading of a hash of digits) is refused."""

MODEL_FIELD = Field("yolov5n.yaml", description=
    "Ultralytics YOLO detection model: a model YAML (e.g. yolov5l.yaml, from scratch), a .pt "
    "checkpoint to fine-tune (a name ultralytics ships, a path, an s3://, minio:// or file:// "
    "URI), or registry:champion, registry:latest or registry:VERSION (of this run's name under "
    "registry_uri); not RT-DETR, classification, segmentation, pose or OBB models.")

WARM_START_FIELD = Field("none", description=
    "none (train from `model`), champion or latest: fine-tune from that version of this run's "
    "name under registry_uri (champion: the one `latest` points at; latest: the newest "
    "finished one); with none published yet, the run trains from `model` and says so.")
DATASET_HASH_FIELD = Field("", description=
    "The prepared dataset's expected content hash (sha256, 64 hex digits, as the Dataset "
    "artifact's content_hash and a version's lineage record it); a run whose data differs is "
    "refused before training; empty = not pinned.")


def check_registry_model(cfg: Any) -> None:
    """Refuses a registry model or a warm start with no registry to read, and a fetched
    checkpoint with a hyperparameter search."""
    if not cfg.registry_uri and (cfg.model.startswith(REGISTRY_PREFIX)
                                 or cfg.warm_start != "none"):
        key = "warm_start" if cfg.warm_start != "none" else "model"
        raise ValueError(f"{key}={getattr(cfg, key)!r} reads the registry, and registry_uri "
                         "is empty; set registry_uri (where versions are published)")
    fetched = "://" in cfg.model or cfg.model.startswith(REGISTRY_PREFIX)
    if cfg.hpo_trials and (fetched or cfg.warm_start != "none"):
        # the search's trials train from `model` as given; they do not read the plan's copy
        raise ValueError("a hyperparameter search (hpo_trials > 0) trains its trials from a "
                         "model YAML or a local .pt, not from a fetched checkpoint; set "
                         "hpo_trials=0, or warm_start=none and a local model")


def fine_tunes(model: str) -> bool:
    """Whether `model` starts the run from a checkpoint (a .pt or a registry version); a warm
    start from a YAML is decided by the plan step, which reads the registry."""
    return model.endswith(".pt") or model.startswith(REGISTRY_PREFIX)


def check_model(value: str) -> None:
    """Refuses a `model` that is neither a model YAML, a .pt nor a registry version, or that
    is not a YOLO detector (values.check_detection_model)."""
    if not value.endswith((".yaml", ".yml", ".pt")) and not fine_tunes(value):
        raise ValueError("must be a model YAML such as yolov5l.yaml, a .pt checkpoint, or "
                         "registry:champion")
    check_detection_model(value)
