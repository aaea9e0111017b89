"""What every cluster launcher shares: the settings, names, labels and owner.

Plain values and small functions; the API client and its error sentences are k8s/api.py's.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.names import DNS_LABEL, DNS_SUBDOMAIN, LABEL_VALUE, check
from kfp_yolo.components.spec import as_field_types
from kfp_yolo.components.tracking.mlflow_log import CREDENTIAL_KEYS as MLFLOW_CREDENTIAL_KEYS

__all__ = ["MLFLOW_CREDENTIAL_KEYS", "PRIORITY_LABEL", "QUEUE_LABEL", "RUN_LABEL", "SECRET_KEYS",
           "SPEC_ANNOTATION", "ClusterSettings", "Owner", "check_name", "cluster_settings",
           "cluster_settings_from", "job_name", "owner_from_env", "owner_reference"]

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
RUN_LABEL = "kfp-yolo/run-id"
SPEC_ANNOTATION = "kfp-yolo/spec-sha256"
SECRET_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""Keys of the storage Secret every training pod gets as environment variables."""


@dataclass(frozen=True, kw_only=True)
class Owner:
    """The launcher's own pod, which the job is tied to for garbage collection."""

    name: str
    uid: str
    namespace: str


def owner_from_env(environ: Mapping[str, str] | None = None) -> Owner | None:
    """The launcher pod from POD_NAME/POD_UID/POD_NAMESPACE (the downward API), or None.

    This is the one place the launcher reads its environment.
    """
    environ = os.environ if environ is None else environ
    name, uid = environ.get("POD_NAME", ""), environ.get("POD_UID", "")
    if not (name and uid):
        return None
    return Owner(name=name, uid=uid, namespace=environ.get("POD_NAMESPACE", ""))


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    """Where and how the job runs; everything that is not the training itself."""

    image: str = "ghcr.io/kfp-yolo/kfp-yolo:0.1.0"
    """Project image of every training pod."""
    training_runtime: str = "kfp-yolo"
    """ClusterTrainingRuntime a TrainJob refers to (k8s/trainer/runtime.yaml); TrainJob only."""
    namespace: str = "kubeflow-user"
    queue: str = ""
    """Kueue LocalQueue; empty = the job is not queued by Kueue."""
    workload_priority_class: str = ""
    """Kueue WorkloadPriorityClass (e.g. kfp-yolo-retraining); empty = none."""
    priority_class: str = ""
    """Kubernetes PriorityClass of the pods; empty = the cluster default."""
    storage_secret: str = "kfp-yolo-storage"
    """Secret with AWS_ENDPOINT_URL (optional), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY."""
    service_account: str = ""
    """Service account of the training pods (they need no API access); empty = default."""
    node_affinity: tuple[dict, ...] = ()
    """Required node-affinity match expressions, from the memory planner."""
    tolerations: tuple[dict, ...] = ()
    """Tolerations of the chosen pool's taints."""
    cpu: str = "4"
    """CPU request of every pod."""
    memory: str = "32Gi"
    """Memory request and limit of every pod (the /dev/shm volume counts against it)."""
    shm_size: str = "8Gi"
    """Size of /dev/shm (dataloader workers pass batches through it)."""
    active_deadline_s: int = 7 * 24 * 3600
    ttl_after_finished_s: int = 24 * 3600
    """Finished jobs stay this long for inspection, then the operator deletes them."""
    backoff_limit: int = 3
    """Pod restarts allowed before the job fails (a restart resumes from the checkpoint)."""
    owner: Owner | None = None
    poll_interval_s: float = 10.0
    queue_timeout_s: float = 0
    """Longest wait for Kueue admission; 0 = wait as long as the queue takes."""
    run_timeout_s: float = 0
    """Longest wait once admitted; 0 = activeDeadlineSeconds plus five minutes, so the
    operator's own DeadlineExceeded is what gets reported."""
    forward_env: tuple[tuple[str, str], ...] = ()
    """Plain (name, value) variables every training pod gets as values: MLflow's tracking URI,
    run and experiment ids. Never credentials: those come from `mlflow_secret`."""
    mlflow_secret: str = ""
    """Secret holding MLflow credentials (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD; every key optional), referenced by the pods; empty = none."""

    def __post_init__(self) -> None:
        # Lists from callers become tuples: the settings are a frozen value.
        object.__setattr__(self, "node_affinity", tuple(self.node_affinity))
        object.__setattr__(self, "tolerations", tuple(self.tolerations))
        object.__setattr__(self, "forward_env", tuple(tuple(kv) for kv in self.forward_env))
        for name, _ in self.forward_env:
            if name in MLFLOW_CREDENTIAL_KEYS or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise UserError(f"forward_env may not carry {name!r}: credentials reach the pods "
                                "only from a Secret (mlflow_secret), and names are "
                                "[A-Za-z_][A-Za-z0-9_]*.")
        if self.mlflow_secret:
            check_name("mlflow_secret", self.mlflow_secret)
        check_name("namespace", self.namespace)
        check_name("training_runtime", self.training_runtime)
        for key in ("queue", "workload_priority_class", "priority_class", "service_account"):
            if getattr(self, key):
                check_name(key, getattr(self, key))
        if not self.storage_secret:
            raise UserError("storage_secret is empty; name the Secret with the storage "
                            "credentials (see k8s/README.md).")
        for expr in self.node_affinity:
            if not {"key", "operator"} <= set(expr):
                raise UserError(f"node_affinity entry {expr!r} needs 'key' and 'operator'.")
        for key in ("active_deadline_s", "ttl_after_finished_s", "backoff_limit"):
            if getattr(self, key) < 0:
                raise UserError(f"{key} must be >= 0, got {getattr(self, key)!r}.")

    @property
    def wait_timeout_s(self) -> float:
        return self.run_timeout_s or self.active_deadline_s + 300


def cluster_settings(launcher: str, **settings: Any) -> ClusterSettings:
    """ClusterSettings from a launcher's keyword settings (placement: the plan step's).

    Unknown keys are refused in one sentence naming them; `owner` defaults to owner_from_env().
    """
    known = {f.name for f in fields(ClusterSettings)}
    unknown = set(settings) - known
    if unknown:
        raise UserError(f"unknown {launcher} launcher setting(s) {sorted(unknown)}; known are "
                        f"{sorted(known)}.")
    settings.setdefault("owner", owner_from_env())
    return ClusterSettings(**settings)


RENAMED = {"active_deadline_s": "job_timeout_s"}
"""ClusterSettings fields whose config key has another name: {field: config key}."""
_PLACEMENT = frozenset({"node_affinity", "tolerations", "owner"})
"""Fields the plan step's outputs (or the step's own pod) decide, never a config key."""


def cluster_settings_from(values: Mapping[str, Any], **given: Any) -> dict[str, Any]:
    """The cluster launcher's settings from checked config values: the one place config keys
    become ClusterSettings fields (by name; RENAMED names the exceptions), plus `given`
    (placement, forwarded variables), for get_launcher / ClusterSettings."""
    settings = {f.name: values[RENAMED.get(f.name, f.name)] for f in fields(ClusterSettings)
                if f.name not in _PLACEMENT and RENAMED.get(f.name, f.name) in values}
    return {**as_field_types(ClusterSettings, settings), **given}


def check_name(key: str, value: str) -> None:
    """Refuses a value the API server would refuse for key (one sentence stating the rule)."""
    if key == "namespace":
        check(DNS_LABEL, key, value)
    else:  # a LocalQueue, a service account, a runtime, a priority class: object names
        check(DNS_SUBDOMAIN, key, value)
    if key in ("queue", "workload_priority_class"):  # also the value of kueue's labels
        check(LABEL_VALUE, key, value)


def job_name(run_id: str) -> str:
    """A DNS-1035 name for the run, short enough for the `<name>-worker-<i>` services."""
    name = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name) or "run"
    if len(name) > 40:  # a digest keeps long run ids that share a prefix apart
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
        name = f"{name[:31].rstrip('-')}-{digest}"
    return name


def owner_reference(owner: Owner) -> dict:
    """The ownerReference that ties a job to the launcher's pod (garbage collection)."""
    # Not a controller reference: Kueue would take a job controlled by a Pod for a child of a
    # pod workload and never admit it on its own.
    return {"apiVersion": "v1", "kind": "Pod", "name": owner.name, "uid": owner.uid}
