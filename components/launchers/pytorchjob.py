"""The cluster launcher: one Kubeflow PyTorchJob (kubeflow.org/v1), owned until it ends.

`build_pytorchjob` is pure: a TrainSpec and ClusterSettings in, a plain dict out (what
`kfp-yolo job render` prints); `kfp_yolo.components.launchers.lifecycle` creates it and owns it
until it ends. Every pod runs `torchrun` with the values the training operator (v1.9) injects:
PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, MASTER_ADDR, MASTER_PORT; kubelet expands
`$(NAME)` in args.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from kfp_yolo.components.launchers.cluster import (
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

__all__ = ["CONTAINER", "GROUP", "PLURAL", "VERSION", "build_pytorchjob"]

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
CONTAINER = "pytorch"  # the operator only wires a container of this name
MASTER_PORT = 23456  # the operator's default; named so the operator finds it


def build_pytorchjob(spec: TrainSpec, cluster: ClusterSettings) -> dict:
    """The PyTorchJob that trains `spec`: a Master and nodes-1 Workers, torchrun in each."""
    replica_specs = {"Master": _build_replica(spec, cluster, replicas=1)}
    if spec.nodes > 1:
        replica_specs["Worker"] = _build_replica(spec, cluster, replicas=spec.nodes - 1)
    job_spec = {
        "nprocPerNode": str(spec.procs_per_node),
        "runPolicy": _build_run_policy(cluster),
        "pytorchReplicaSpecs": replica_specs,
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PyTorchJob",
        "metadata": _build_metadata(spec, cluster, job_spec),
        "spec": job_spec,
    }


def _labels(spec: TrainSpec) -> dict[str, str]:
    run = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.run_id)[:63].strip("-_.") or "run"
    return {"app.kubernetes.io/name": "kfp-yolo", "app.kubernetes.io/component": "training",
            RUN_LABEL: run}


def _build_metadata(spec: TrainSpec, cluster: ClusterSettings, job_spec: dict) -> dict:
    labels = _labels(spec)
    if cluster.queue:
        labels[QUEUE_LABEL] = cluster.queue
        if cluster.workload_priority_class:
            labels[PRIORITY_LABEL] = cluster.workload_priority_class
    digest = hashlib.sha256(json.dumps(job_spec, sort_keys=True).encode()).hexdigest()
    metadata = {"name": job_name(spec.run_id), "namespace": cluster.namespace,
                "labels": labels, "annotations": {SPEC_ANNOTATION: digest}}
    owner = cluster.owner
    # The API server ignores a cross-namespace owner and the garbage collector then deletes
    # the job as orphaned, so only an owner in the job's namespace is named.
    if owner and owner.namespace == cluster.namespace:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return metadata


def _build_run_policy(cluster: ClusterSettings) -> dict:
    policy = {
        "cleanPodPolicy": "All",
        "ttlSecondsAfterFinished": cluster.ttl_after_finished_s,
        "activeDeadlineSeconds": cluster.active_deadline_s,
        "backoffLimit": cluster.backoff_limit,
    }
    if cluster.queue:
        policy["suspend"] = True  # Kueue resumes it on admission; never starts outside quota
    return policy


def _build_replica(spec: TrainSpec, cluster: ClusterSettings, *, replicas: int) -> dict:
    return {
        "replicas": replicas,
        "restartPolicy": "OnFailure",  # a restarted pod resumes from the last checkpoint
        "template": {"metadata": {"labels": _labels(spec)}, "spec": _build_pod(spec, cluster)},
    }


def _build_pod(spec: TrainSpec, cluster: ClusterSettings) -> dict:
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,  # training talks to object storage only
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                            "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_build_container(spec, cluster)],
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cluster.shm_size}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if cluster.service_account:
        pod["serviceAccountName"] = cluster.service_account
    if cluster.priority_class:
        pod["priorityClassName"] = cluster.priority_class
    if cluster.node_affinity:
        pod["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [dict(e) for e in cluster.node_affinity]}]}}}
    if cluster.tolerations:
        pod["tolerations"] = [dict(t) for t in cluster.tolerations]
    return pod


def _torchrun_args(spec: TrainSpec) -> list[str]:
    # `$$` keeps kubelet from expanding a `$(...)` that happens to be in the spec's JSON.
    return [
        "--nnodes=$(PET_NNODES)", "--nproc-per-node=$(PET_NPROC_PER_NODE)",
        "--node-rank=$(PET_NODE_RANK)", "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        # A pod that never joins fails the rendezvous in init_timeout_s instead of hanging.
        f"--rdzv-conf=timeout={spec.init_timeout_s}",
        "-m", "kfp_yolo.components.training.worker", "--spec", spec.to_json().replace("$", "$$"),
    ]


def _build_env(cluster: ClusterSettings) -> list[dict]:
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
    return env


def _build_container(spec: TrainSpec, cluster: ClusterSettings) -> dict:
    limits: dict[str, Any] = {"memory": cluster.memory}
    if spec.device != "cpu":
        limits["nvidia.com/gpu"] = spec.procs_per_node
    return {
        "name": CONTAINER,
        "image": cluster.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["torchrun"],
        "args": _torchrun_args(spec),
        "ports": [{"name": "pytorchjob-port", "containerPort": MASTER_PORT, "protocol": "TCP"}],
        "env": _build_env(cluster),
        "resources": {"requests": {"cpu": cluster.cpu, "memory": cluster.memory},
                      "limits": limits},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
