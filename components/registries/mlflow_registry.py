"""MLflow's model registry: one registered model per config `name`, one model version per
published version, the alias `champion` on the version `latest` names.

A version's artifacts (model.onnx, best.pt) are logged to a run first: the run KFP's MLflow
plugin started for the task when MLFLOW_RUN_ID names one, else a run of our own in the
experiment `kfp-yolo/<name>`. The model version's source is that run's `model/` folder; its
tags carry the metrics (`metric.<name>`), the dataset's content hash and our version, which is
how a retried publish finds the version it registered before instead of adding a second.

Bounded in time: mlflow's HTTP client retries with backoff for minutes by default; here every
request has BOUND (components/bounded.py: environment settings mlflow reads per request,
set only where the user has not). Imported only when MLFLOW_TRACKING_URI is set (mlflow-skinny).
"""

from __future__ import annotations

import os
from typing import Any

from kfp_yolo.components.bounded import Bound, bound_mlflow
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.registries import CHAMPION, Release, registry_fault
from kfp_yolo.components.release.lineage import flat_lineage

__all__ = ["ARTIFACT_PATH", "MLflowRegistry", "VERSION_TAG"]

VERSION_TAG = "kfp_yolo.version"
"""Tag of a model version (and its run) naming our published version."""
ARTIFACT_PATH = "model"
ATTACHED = ("model.onnx", "best.pt", "model.engine", "metrics.json", "data.yaml")
BOUND = Bound(timeout_s=20, retries=2)


class MLflowRegistry:
    """Registers published versions in MLflow's model registry at tracking_uri."""

    label = "MLflow"

    def __init__(self, tracking_uri: str, *, run_id: str | None = None):
        bound_mlflow(BOUND)  # the user's own MLFLOW_HTTP_REQUEST_* settings win
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.run_id = run_id if run_id is not None else os.environ.get("MLFLOW_RUN_ID", "")
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _fault(self, exc: BaseException) -> Exception:
        return registry_fault(self.label, self.tracking_uri, exc)

    def _find(self, name: str, version: str) -> Any:
        """The model version carrying our version tag, or None."""
        found = self.client.search_model_versions(
            f"name = '{name}' and tag.`{VERSION_TAG}` = '{version}'", max_results=2)
        return found[0] if found else None

    def _ensure_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            self.client.create_registered_model(
                name, tags={"kfp_yolo.model": name},
                description="YOLO object detector trained and published by kfp-yolo.")

    def _log_run(self, release: Release) -> str:
        """The run holding the version's artifacts (KFP's task run, else one of ours)."""
        run_id = self.run_id
        if not run_id:
            experiment = f"kfp-yolo/{release.name}"
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = (found.experiment_id if found is not None
                             else self.client.create_experiment(experiment))
            run_id = self.client.create_run(experiment_id, run_name=f"publish-{release.version}",
                                            tags={VERSION_TAG: release.version}).info.run_id
        for filename in ATTACHED:
            if filename in release.files:
                self.client.log_artifact(run_id, str(release.files[filename]), ARTIFACT_PATH)
        for key, value in release.metrics.items():
            self.client.log_metric(run_id, _metric_key(key), float(value))
        if not self.run_id:  # KFP's plugin ends its own run
            self.client.set_terminated(run_id)
        return run_id

    def register(self, release: Release, *, champion: bool) -> None:
        """Creates the model version (once) and moves `champion` to it when asked."""
        from mlflow.exceptions import MlflowException

        try:
            self._ensure_model(release.name)
            found = self._find(release.name, release.version)
            if found is None:
                run_id = self._log_run(release)
                run = self.client.get_run(run_id)
                found = self.client.create_model_version(
                    release.name, source=f"{run.info.artifact_uri}/{ARTIFACT_PATH}",
                    run_id=run_id, tags=_tags(release),
                    description=f"kfp-yolo {release.version}: {release.uri}")
            if champion:
                self.client.set_registered_model_alias(release.name, CHAMPION, found.version)
        except (MlflowException, OSError) as exc:
            raise self._fault(exc) from exc

    def promote(self, release: Release) -> None:
        """Moves `champion` to the model version of release.version."""
        from mlflow.exceptions import MlflowException

        try:
            found = self._find(release.name, release.version)
        except (MlflowException, OSError) as exc:
            raise self._fault(exc) from exc
        if found is None:
            raise UserError(f"MLflow at {self.tracking_uri} has no version of model "
                            f"{release.name!r} tagged {VERSION_TAG}={release.version}; it was "
                            "published before MLflow was configured, promote another version "
                            "or unset MLFLOW_TRACKING_URI.")
        try:
            self.client.set_registered_model_alias(release.name, CHAMPION, found.version)
        except (MlflowException, OSError) as exc:
            raise self._fault(exc) from exc


def _metric_key(key: str) -> str:
    # MLflow keys allow letters, digits, _ - . / and space: 'mAP50-95/person' is fine as is.
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _tags(release: Release) -> dict[str, str]:
    tags = {VERSION_TAG: release.version, "kfp_yolo.uri": release.uri,
            "kfp_yolo.dataset_hash": release.dataset_hash}
    tags.update(flat_lineage(release.lineage))  # lineage.parent, lineage.config_sha256, ...
    if release.serving_uri:
        tags["kfp_yolo.serving_uri"] = release.serving_uri
    for model_format, version in release.formats.items():
        tags[f"kfp_yolo.format.{model_format}"] = version
    tags.update({f"metric.{_metric_key(k)}": f"{float(v):.6g}"
                 for k, v in release.metrics.items()})
    if release.source is not None:
        tags.update({"kfp.run_id": release.source.run_id, "kfp.run_name": release.source.run_name,
                     "kfp.namespace": release.source.namespace})
    return tags
