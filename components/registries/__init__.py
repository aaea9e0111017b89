"""Model registries a published version is also registered in: MLflow's and Kubeflow's.

Each is one small adapter module, imported only when configured (MLflow: MLFLOW_TRACKING_URI
set; Kubeflow Model Registry: the `model_registry_address` config key), bounded in time, and
idempotent: registering a version a registry already holds (a retried publish) completes what
is missing and creates nothing twice. A registry that cannot be reached raises a Fault (exit 1)
whose one sentence names the registry and its address; `publish` then leaves `latest` alone.

    registries = open_registries(...)         # configured.py: each adapter configured
    publish(..., registries=registries)      # files, manifest, each registry, then `latest`
    promote(..., registries=registries)      # each registry's champion, then `latest`
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kfp_yolo.components.errors import Fault

__all__ = ["CHAMPION", "Registry", "Release", "RunSource", "registry_fault", "serving_uri"]

CHAMPION = "champion"
"""The alias (MLflow) / property (Model Registry) naming the version `latest` points at."""
TIMEOUT_S = 60.0
"""Longest a registry may take to answer one publish's calls before the step fails."""


@dataclass(frozen=True)
class RunSource:
    """The pipeline run that produced a version (Model Registry's model source)."""

    run_id: str
    run_name: str
    namespace: str


@dataclass(frozen=True)
class Release:
    """One published version, as the registries record it.

    Attributes:
        uri: the version folder (registry_uri/<name>/<version>).
        serving_uri: the Triton model repository inside it, as KServe reads it (s3://...).
        files: local files to attach (MLflow's artifacts); empty when promoting.
        formats: {"onnx": "1", "tensorrt": "<TensorRT version>"} of the served models.
    """

    name: str
    version: str
    uri: str
    serving_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    dataset_hash: str = ""
    formats: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    source: RunSource | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    """The version's lineage record (components/release/lineage.py); {} when promoting."""


class Registry(Protocol):
    """What publish and promote call; `label` names it in messages."""

    label: str

    def register(self, release: Release, *, champion: bool) -> None:
        """Records release (idempotent); moves the champion to it when champion is True."""

    def promote(self, release: Release) -> None:
        """Moves the champion to a version registered before."""


def serving_uri(uri: str) -> str:
    """The URI KServe's storage initializer reads for one of ours (minio:// is our alias of s3)."""
    if uri.startswith("minio://"):
        return "s3://" + uri.removeprefix("minio://")
    return uri


def registry_fault(label: str, address: str, exc: BaseException, reason: str = "") -> Fault:
    """One sentence for a registry that failed: which one, where, why, what happens next."""
    reason = " ".join((reason or str(exc)).split())
    # A connection failure deep in urllib3's retry message: its errno sentence says it all.
    errno = re.search(r"\[Errno -?\d+\] ([^\"'\)]+)", reason)
    if errno:
        reason = f"cannot connect: {errno.group(1).strip()}"
    reason = reason[:200] or type(exc).__name__
    return Fault(f"{label} at {address} failed ({type(exc).__name__}: {reason}); `latest` was "
                 "not moved: run the publish (or promote) again once it answers, it resumes "
                 "this version.")
