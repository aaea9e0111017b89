"""The PyTorchJob manifest (kubeflow.org/v1, Training Operator v1.9): a pure function.

`build_pytorchjob` turns a TrainSpec and ClusterSettings into a plain dict (what `kfp-yolo job
render --launcher pytorchjob` prints); `kfp_yolo.components.launchers.lifecycle` creates it and
owns it until it ends. Every pod runs `torchrun` with the values the training operator injects:
PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, MASTER_ADDR, MASTER_PORT; kubelet expands
`$(NAME)` in args.

restartPolicy ExitCode: a pod that exits 2 or 3 (training/node.py: bad input, out of GPU
memory) fails the job at once; 137, 138 and 143 (killed, retryable, evicted) recreate the pod,
which resumes from the checkpoint. The operator does not count those recreations against
backoffLimit (kubeflow/trainer#2045): activeDeadlineSeconds (job_timeout_s) bounds them.
"""

from __future__ import annotations

from typing import Any

from kfp_yolo.components.launchers.cluster import ClusterSettings
from kfp_yolo.components.launchers.pod import (
    TRAIN_COMMAND,
    build_env,
    build_metadata,
    build_resources,
    build_volumes,
    container_security_context,
    place,
    pod_labels,
    pod_security_context,
    torchrun_args,
    volume_mounts,
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
        "metadata": build_metadata(spec, cluster, job_spec),
        "spec": job_spec,
    }


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
        # a deterministic failure ends the job; a retryable one restarts the pod, which resumes
        # from the last checkpoint (see the module docstring)
        "restartPolicy": "ExitCode",
        "template": {"metadata": {"labels": pod_labels(spec)},
                     "spec": _build_pod(spec, cluster)},
    }


def _build_pod(spec: TrainSpec, cluster: ClusterSettings) -> dict:
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,  # training talks to object storage only
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [_build_container(spec, cluster)],
        "volumes": build_volumes(cluster),
    }
    if cluster.priority_class:
        pod["priorityClassName"] = cluster.priority_class
    return place(pod, cluster)


def _build_container(spec: TrainSpec, cluster: ClusterSettings) -> dict:
    return {
        "name": CONTAINER,
        "image": cluster.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(TRAIN_COMMAND),
        "args": torchrun_args(spec, master_addr="MASTER_ADDR", master_port="MASTER_PORT"),
        "ports": [{"name": "pytorchjob-port", "containerPort": MASTER_PORT, "protocol": "TCP"}],
        "env": build_env(cluster),
        "resources": build_resources(spec, cluster),
        "securityContext": container_security_context(),
        "volumeMounts": volume_mounts(),
    }
