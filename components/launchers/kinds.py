"""What the watch loop needs to know about each cluster job kind, and nothing more.

A `JobKind` names the API resource, builds the manifest, reads a job's phase and failure from
its status, and finds the pod whose log the train step copies. `lifecycle.ClusterJobLauncher`
owns any kind through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kfp_yolo.components.launchers import pytorchjob, trainjob
from kfp_yolo.components.launchers.cluster import ClusterSettings
from kfp_yolo.components.progress import duration
from kfp_yolo.components.spec import TrainSpec

__all__ = ["KINDS", "PYTORCHJOB", "TRAINJOB", "JobKind", "condition", "ended_container",
           "trainer_progress"]

@dataclass(frozen=True, kw_only=True)
class JobKind:
    """One custom resource kind the cluster launcher can create and follow."""

    kind: str
    """The resource's kind, e.g. TrainJob; also what `launcher.kind` reports."""
    group: str
    version: str
    plural: str
    container: str
    """The container whose log is copied into the step's log."""
    build: Callable[[TrainSpec, ClusterSettings], dict]
    """The manifest for a spec (pure)."""
    phase: Callable[[dict], str]
    """queued | starting | running | succeeded | failed, from the job object."""
    log_pod: Callable[[Any, str, str], str | None]
    """(CoreV1Api, namespace, job name) -> the pod to copy the log of, None while there is none."""
    install_hint: str
    """What to install when the API server does not serve the kind."""
    progress: Callable[[dict], tuple[str, str] | None] = lambda job: None
    """(when, one line) of the progress the training reported in the job's status, if any."""

    @property
    def resource(self) -> str:
        """plural.group, as RBAC rules and the API server's messages name it."""
        return f"{self.plural}.{self.group}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


def condition(job: dict, kind: str) -> dict | None:
    """The job's condition of this type when its status is True, else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _pytorchjob_phase(job: dict) -> str:
    if condition(job, "Succeeded"):
        return "succeeded"
    if condition(job, "Failed"):
        return "failed"
    if (job.get("spec", {}).get("runPolicy") or {}).get("suspend") or condition(job, "Suspended"):
        return "queued"
    return "running" if condition(job, "Running") else "starting"


def _trainjob_phase(job: dict) -> str:
    # Trainer v2.3 sets only Suspended, Complete and Failed; a child Job with ready pods is the
    # nearest it has to PyTorchJob's Running.
    if condition(job, "Complete"):
        return "succeeded"
    if condition(job, "Failed"):
        return "failed"
    if job.get("spec", {}).get("suspend") or condition(job, "Suspended"):
        return "queued"
    jobs = (job.get("status") or {}).get("jobsStatus") or []
    running = any((entry.get("ready") or 0) + (entry.get("succeeded") or 0) > 0
                  for entry in jobs)
    return "running" if running else "starting"


def ended_container(core: Any, namespace: str, pod: str, container: str
                    ) -> tuple[int, str] | None:
    """(exit code, termination message) of a pod's container that ended with a failure, now
    or before its last restart; None when it did not, or the pod cannot be read."""
    try:
        statuses = core.read_namespaced_pod(pod, namespace).status.container_statuses or []
    except Exception:  # noqa: BLE001 - a detail of a failure report, never why it fails
        return None
    for status in statuses:
        if status.name != container:
            continue
        for state in (status.state, status.last_state):
            ended = state.terminated if state is not None else None
            if ended is not None and ended.exit_code:
                return int(ended.exit_code), " ".join((ended.message or "").split())
    return None


def trainer_progress(job: dict) -> tuple[str, str] | None:
    """`status.trainerStatus` of a TrainJob (Trainer v2.3, TrainJobStatus gate) as (its
    lastUpdatedTime, 'progress 67%: epoch 2/3, mAP50-95 0.412, ..., ETA 1m05s'); None before
    the training posts any."""
    status = (job.get("status") or {}).get("trainerStatus")
    if not status:
        return None
    metrics = {m.get("name"): m.get("value") for m in status.get("metrics") or []}
    parts = [f"progress {status['progressPercentage']}%" if "progressPercentage" in status
             else "progress"]
    details = [f"epoch {metrics.pop('epoch')}"] if "epoch" in metrics else []
    details += [f"{name} {value}" for name, value in metrics.items()][:6]
    if "estimatedRemainingSeconds" in status:
        details.append(f"ETA {duration(status['estimatedRemainingSeconds'])}")
    line = parts[0] + (": " + ", ".join(details) if details else "")
    return str(status.get("lastUpdatedTime", "")), line


def _pytorchjob_log_pod(core: Any, namespace: str, name: str) -> str | None:
    return f"{name}-master-0"  # the operator's fixed name; no API call needed


def _trainjob_log_pod(core: Any, namespace: str, name: str) -> str | None:
    # JobSet names pods <job>-node-0-<index>-<random>: find node rank 0 by its labels; a JobSet
    # restart makes a new one, so the newest wins.
    selector = (f"jobset.sigs.k8s.io/jobset-name={name},"
                f"jobset.sigs.k8s.io/replicatedjob-name={trainjob.REPLICATED_JOB},"
                "jobset.sigs.k8s.io/job-index=0,batch.kubernetes.io/job-completion-index=0")
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    if not pods:
        return None
    newest = max(pods, key=lambda pod: str(pod.metadata.creation_timestamp or ""))
    return newest.metadata.name


PYTORCHJOB = JobKind(
    kind="PyTorchJob", group=pytorchjob.GROUP, version=pytorchjob.VERSION,
    plural=pytorchjob.PLURAL, container=pytorchjob.CONTAINER, build=pytorchjob.build_pytorchjob,
    phase=_pytorchjob_phase, log_pod=_pytorchjob_log_pod,
    install_hint="the Kubeflow Training Operator v1.9")
TRAINJOB = JobKind(
    kind="TrainJob", group=trainjob.GROUP, version=trainjob.VERSION, plural=trainjob.PLURAL,
    container=trainjob.CONTAINER, build=trainjob.build_trainjob, phase=_trainjob_phase,
    log_pod=_trainjob_log_pod, progress=trainer_progress,
    install_hint="Kubeflow Trainer v2.3 and the ClusterTrainingRuntime in k8s/trainer")
KINDS = {"pytorchjob": PYTORCHJOB, "trainjob": TRAINJOB}
"""By launcher name."""
