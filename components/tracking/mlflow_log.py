"""MLflow, when MLFLOW_TRACKING_URI is set: the run's parameters, per-epoch metrics, reports.

KFP 2.17's MLflow plugin (with `injectUserEnvVars: true`) gives a task MLFLOW_TRACKING_URI,
MLFLOW_RUN_ID (its nested run) and MLFLOW_EXPERIMENT_ID; the cluster launchers forward them to
the job's pods. With a run id everything goes into that run; without one a run is created in
the experiment named after the config's `name`.

`mlflow` (mlflow-skinny in the image) is imported on first use only. Every request is bounded
(components/bounded.py, where the user's own MLFLOW_HTTP_REQUEST_* settings win), and the
first error turns the tracker off with one warning: MLflow being down never fails or stalls a
training for more than one bounded request.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kfp_yolo.components.bounded import Bound, bound_mlflow
from kfp_yolo.components.redact import redact

__all__ = ["CREDENTIAL_KEYS", "ENV_KEYS", "MlflowSettings", "MlflowTracker", "metric_name"]

log = logging.getLogger("kfp_yolo.mlflow")

ENV_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")
"""What a task gets from KFP's plugin and the launchers forward to the job's pods as values."""
CREDENTIAL_KEYS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
                   "MLFLOW_TRACKING_PASSWORD")
"""Credentials: forwarded to the pods only from a Secret (config key mlflow_secret)."""
BOUND = Bound(timeout_s=5, retries=1)
"""Each request to MLflow during training: a server that is down costs seconds, once."""
_UNSAFE = re.compile(r"[^\w./\- :]")  # MLflow's key rule: letters, digits, _ - . / space :


def metric_name(name: str) -> str:
    """An ultralytics column as an MLflow key: 'metrics/mAP50-95(B)' -> 'mAP50-95'."""
    name = name.removeprefix("metrics/").replace("(B)", "")
    return _UNSAFE.sub("_", name)


@dataclass(frozen=True)
class MlflowSettings:
    """Where to log; read once at a process boundary (`from_environ`), then passed as a value."""

    tracking_uri: str = ""
    run_id: str = ""
    experiment_id: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.tracking_uri)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> MlflowSettings:
        environ = os.environ if environ is None else environ
        return cls(*(environ.get(key, "").strip() for key in ENV_KEYS))

    def env(self) -> dict[str, str]:
        """The non-empty settings as environment variables, for the training processes."""
        values = dict(zip(ENV_KEYS, (self.tracking_uri, self.run_id, self.experiment_id),
                          strict=True))
        return {key: value for key, value in values.items() if value}

    def with_run(self, run_id: str) -> MlflowSettings:
        return replace(self, run_id=run_id)


class MlflowTracker:
    """One MLflow run, logged to with explicit run ids (no global active run).

    Args:
        settings: where to log; a disabled one makes every method a no-op.
        experiment: the experiment a new run goes in when the settings name none.
        run_name: the name of a run created here.
        warn: where the one warning goes.
    """

    def __init__(self, settings: MlflowSettings, *, experiment: str = "kfp-yolo",
                 run_name: str = "", warn: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.experiment = experiment
        self.run_name = run_name
        self.run_id = settings.run_id
        self.created = False
        self._client: Any = None
        self._off = not settings.enabled
        self._warn = warn or log.warning

    @property
    def active(self) -> bool:
        return not self._off

    def start(self) -> str:
        """The run's id: the given one, or a new run in `experiment`; '' when off or failed."""
        if self._off:
            return ""
        if not self.run_id:
            self._call("create the run", self._create_run)
        return self.run_id if not self._off else ""

    def log_params(self, params: Mapping[str, Any]) -> None:
        from_mlflow = self._entities()
        if from_mlflow is None:
            return
        # Parameters are shown to everyone who can read the experiment: no user-info, no key.
        items = [from_mlflow.Param(str(k)[:250], redact(str(v))[:6000])
                 for k, v in params.items()]
        self._call("log parameters", lambda c: c.log_batch(self.run_id, params=items))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Finite values only, with `step` (the epoch) and one timestamp."""
        from_mlflow = self._entities()
        if from_mlflow is None:
            return
        now = int(time.time() * 1000)
        items = [from_mlflow.Metric(metric_name(k), float(v), now, int(step))
                 for k, v in metrics.items()
                 if isinstance(v, int | float) and math.isfinite(float(v))]
        if items:
            self._call("log metrics", lambda c: c.log_batch(self.run_id, metrics=items))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None, *,
                     name: str = "") -> None:
        """Uploads a file, as `name` when given (KFP names every artifact file alike)."""
        if not self._ready():
            return
        with tempfile.TemporaryDirectory() as folder:
            source = Path(path)
            if name:
                source = Path(folder) / name
                shutil.copyfile(path, source)
            self._call(f"upload {source.name}",
                       lambda c: c.log_artifact(self.run_id, str(source), artifact_path))

    def finish(self, status: str = "FINISHED") -> None:
        """Ends a run created here as FINISHED or FAILED (a given run belongs to whoever gave
        it)."""
        if self.created and self._ready():
            self._call("end the run", lambda c: c.set_terminated(self.run_id, status))

    # -- internals -----------------------------------------------------------------------------

    def _ready(self) -> bool:
        return not self._off and bool(self.start())

    def _entities(self) -> Any:
        if not self._ready():
            return None
        import mlflow.entities

        return mlflow.entities

    def _create_run(self, client: Any) -> None:
        experiment_id = self.settings.experiment_id
        if not experiment_id:
            found = client.get_experiment_by_name(self.experiment)
            experiment_id = (found.experiment_id if found is not None
                             else client.create_experiment(self.experiment))
        run = client.create_run(experiment_id, run_name=self.run_name or None)
        self.run_id, self.created = run.info.run_id, True

    def _call(self, what: str, action: Callable[[Any], Any]) -> None:
        if self._off:
            return
        try:
            action(self._connect())
        except Exception as exc:  # any failure of a server we do not own: warn once, go on
            self._off = True
            self._warn(f"MLflow at {redact(self.settings.tracking_uri)} failed to {what} "
                       f"({type(exc).__name__}: {_first_line(exc)}); training goes on without "
                       "MLflow.")

    def _connect(self) -> Any:
        if self._client is None:
            bound_mlflow(BOUND)  # the user's own MLFLOW_HTTP_REQUEST_* settings win
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # nothing else leaves
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.settings.tracking_uri)
        return self._client


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "no message")[:300]
