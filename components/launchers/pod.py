"""The training pod every cluster kind runs: labels, metadata, env, security, volumes, torchrun.

PyTorchJob (`pytorchjob.py`) and TrainJob (`trainjob.py`) place these parts in different spots
of their manifests; the parts themselves are built once, here. Every function returns fresh
dicts, so a caller may change what it gets.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kfp_yolo.components.k8s.names import label_value
from kfp_yolo.components.k8s.pools import required_node_affinity
from kfp_yolo.components.launchers.cluster import (
    MLFLOW_CREDENTIAL_KEYS,
    PRIORITY_LABEL,
    QUEUE_LABEL,
    RUN_LABEL,
    SECRET_KEYS,
    SPEC_ANNOTATION,
    ClusterSettings,
    job_name,
    owner_reference,
)
from kfp_yolo.components.spec import TrainSpec

__all__ = ["TRAIN_COMMAND", "build_env", "build_metadata", "build_resources", "build_volumes",
           "container_security_context", "pod_labels", "pod_security_context",
           "place", "torchrun_args", "volume_mounts"]

UID = 10001  # the image's user (Dockerfile); not root
TRAIN_COMMAND = ["python", "-m", "kfp_yolo.components.training.node"]
"""torchrun, ending with an exit code the job's failure policy reads (training/node.py)."""


def pod_labels(spec: TrainSpec) -> dict[str, str]:
    """Labels of the job and its pods: the app, the component and the run (a valid label)."""
    run = label_value(spec.run_id)
    return {"app.kubernetes.io/name": "kfp-yolo", "app.kubernetes.io/component": "training",
            RUN_LABEL: run}


def build_metadata(spec: TrainSpec, cluster: ClusterSettings, job_spec: dict) -> dict:
    """The job's metadata: name, labels (Kueue's queue and priority), spec digest, owner."""
    labels = pod_labels(spec)
    if cluster.queue:
        labels[QUEUE_LABEL] = cluster.queue
        if cluster.workload_priority_class:
            labels[PRIORITY_LABEL] = cluster.workload_priority_class
    # The digest tells a retried step whether a job of the same name is its own (adopt it).
    digest = hashlib.sha256(json.dumps(job_spec, sort_keys=True).encode()).hexdigest()
    metadata = {"name": job_name(spec.run_id), "namespace": cluster.namespace,
                "labels": labels, "annotations": {SPEC_ANNOTATION: digest}}
    owner = cluster.owner
    # The API server ignores a cross-namespace owner and the garbage collector then deletes
    # the job as orphaned, so only an owner in the job's namespace is named.
    if owner and owner.namespace == cluster.namespace:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return metadata


def pod_security_context() -> dict:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def build_volumes(cluster: ClusterSettings) -> list[dict]:
    """/dev/shm sized for the dataloader workers, and /tmp: the root filesystem is read-only."""
    return [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cluster.shm_size}},
            {"name": "tmp", "emptyDir": {}}]


def volume_mounts() -> list[dict]:
    return [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]


def build_env(cluster: ClusterSettings) -> list[dict]:
    """Plain settings as values (with the forwarded MLflow run); the storage and MLflow
    credentials only as Secret references."""
    env = [
        # The root filesystem is read-only: everything that writes goes to /tmp.
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "YOLO_OFFLINE", "value": "true"},
        {"name": "YOLO_AUTOINSTALL", "value": "false"},
        {"name": "YOLO_CONFIG_DIR", "value": "/tmp/ultralytics"},
        {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
    ]
    for key in SECRET_KEYS:
        ref = {"name": cluster.storage_secret, "key": key}
        if key == "AWS_ENDPOINT_URL":
            ref["optional"] = True  # absent for AWS S3 itself
        env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    env += [{"name": name, "value": value} for name, value in cluster.forward_env]
    if cluster.mlflow_secret:
        # A token or a user name and password: whichever the Secret holds.
        env += [{"name": key, "valueFrom": {"secretKeyRef": {
            "name": cluster.mlflow_secret, "key": key, "optional": True}}}
            for key in MLFLOW_CREDENTIAL_KEYS]
    return env


def build_resources(spec: TrainSpec, cluster: ClusterSettings) -> dict:
    """Requests and limits of one training pod (one node): its GPUs unless on CPU."""
    limits: dict[str, Any] = {"memory": cluster.memory}
    if spec.device != "cpu":
        limits["nvidia.com/gpu"] = spec.procs_per_node
    return {"requests": {"cpu": cluster.cpu, "memory": cluster.memory}, "limits": limits}


def place(pod: dict, cluster: ClusterSettings) -> dict:
    """Adds the service account, the planner's node affinity and the pool's tolerations to a
    pod spec (or a TrainJob's pod patch); returns it."""
    if cluster.service_account:
        pod["serviceAccountName"] = cluster.service_account
    if cluster.node_affinity:
        pod["affinity"] = {"nodeAffinity": required_node_affinity(cluster.node_affinity)}
    if cluster.tolerations:
        pod["tolerations"] = [dict(t) for t in cluster.tolerations]
    return pod


def torchrun_args(spec: TrainSpec, *, master_addr: str, master_port: str) -> list[str]:
    """torchrun's arguments (TRAIN_COMMAND's); kubelet expands the `$(NAME)`s from the
    operator's variables."""
    # `$$` keeps kubelet from expanding a `$(...)` that happens to be in the spec's JSON.
    return [
        "--nnodes=$(PET_NNODES)", "--nproc-per-node=$(PET_NPROC_PER_NODE)",
        "--node-rank=$(PET_NODE_RANK)", f"--master-addr=$({master_addr})",
        f"--master-port=$({master_port})",
        # A pod that never joins fails the rendezvous in init_timeout_s instead of hanging.
        f"--rdzv-conf=timeout={spec.init_timeout_s}",
        "-m", "kfp_yolo.components.training.worker", "--spec", spec.to_json().replace("$", "$$"),
    ]
