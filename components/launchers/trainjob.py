"""The TrainJob manifest (trainer.kubeflow.org/v1alpha1, Kubeflow Trainer v2.3): a pure function.

`build_trainjob` turns a TrainSpec and ClusterSettings into a plain dict (what `kfp-yolo job
render --launcher trainjob` prints); `kfp_yolo.components.launchers.lifecycle` creates it and
owns it until it ends.

The TrainJob refers to the ClusterTrainingRuntime `kfp-yolo` (k8s/trainer/runtime.yaml): a
JobSet with one replicated job `node` whose container `node` the torch ML policy gives
PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT; kubelet
expands them in torchrun's args. What is per run goes into the TrainJob itself:

- `trainer`: image, torchrun command and args, env (storage credentials as Secret references
  only), numNodes, numProcPerNode, resourcesPerNode (the GPUs);
- one `runtimePatches` entry, manager `kfp-yolo/launcher`, on the `node` pods: the planner's
  required node affinity, the pool's tolerations, the sized /dev/shm and /tmp volumes, the
  non-root security contexts, the service account and the run's labels. Kueue adds its own
  entry (manager `kueue.x-k8s.io/manager`) with the admitted flavor's node selector and
  tolerations; a list patch replaces tolerations, so the flavors carry the pools' tolerations
  (`kfp-yolo quotas` renders them so);
- `suspend: true` when a Kueue queue is set (Kueue resumes it on admission) and
  `activeDeadlineSeconds`, which restarts counting on every resume.

Failures: the runtime's Job has restartPolicy Never and a podFailurePolicy that fails it on
the exit codes training/node.py gives a deterministic failure (2 bad input, 3 out of GPU
memory), so no GPU pod is restarted for those; other exits count against its backoffLimit
(runtimePatches cannot set either in v2.3.0: they live in k8s/trainer/runtime.yaml).

Settings a TrainJob cannot carry: `priority_class` (runtimePatches have no priorityClassName in
v2.3.0: set it in the runtime instead; refused here rather than silently dropped),
`backoff_limit` and `ttl_after_finished_s` (the runtime's Job and JobSet fields apply).

Why not the Kubeflow SDK (`kubeflow` 0.5.0, TrainerClient; checked in its source): it installs
beside kubernetes 30.x, but `TrainerClient.train()` cannot build or own this job.
CustomTrainerContainer's env takes plain values only (the storage credentials would be written
into the TrainJob instead of referenced from a Secret) and has no numProcPerNode; no option sets
ownerReferences or `suspend`; its RuntimePatch option fixes the manager to the SDK's own; every
API error comes back as a RuntimeError, so a 409 is not told apart (to adopt) and a 403 loses
its verb; it first reads the ClusterTrainingRuntime (a cluster-scope `get` the step's Role would
need); `wait_for_job_status` knows no suspension (Kueue's queue time); and it builds its own
ApiClient from a kubeconfig. The typed kubeflow-trainer-api models drop unknown fields silently;
the strict CRD-schema tests catch those instead. So the job is a plain dict, like the PyTorchJob.
"""

from __future__ import annotations

from typing import Any

from kfp_yolo.components.errors import UserError
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

__all__ = ["CONTAINER", "GROUP", "PATCH_MANAGER", "PLURAL", "REPLICATED_JOB", "VERSION",
           "build_trainjob"]

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
REPLICATED_JOB = CONTAINER = "node"  # the torch runtime's trainer job and container
PATCH_MANAGER = "kfp-yolo/launcher"
"""Our runtimePatches key: the trainer's webhook wants a domain-prefixed path."""


def build_trainjob(spec: TrainSpec, cluster: ClusterSettings) -> dict:
    """The TrainJob for `spec`: `nodes` pods of the runtime's node job, torchrun in each."""
    if cluster.priority_class:
        raise UserError(
            f"priority_class={cluster.priority_class!r} cannot be set on a TrainJob (Trainer "
            "v2.3 runtimePatches have no priorityClassName); set priorityClassName in the "
            "ClusterTrainingRuntime (k8s/trainer/runtime.yaml) and leave priority_class empty, "
            "or use launcher: pytorchjob.")
    job_spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime",
                       "name": cluster.training_runtime},
        "trainer": _build_trainer(spec, cluster),
        "runtimePatches": [_build_runtime_patch(spec, cluster)],
    }
    if cluster.queue:
        job_spec["suspend"] = True  # Kueue resumes it on admission; never starts outside quota
    if cluster.active_deadline_s:
        job_spec["activeDeadlineSeconds"] = cluster.active_deadline_s
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": build_metadata(spec, cluster, job_spec),
        "spec": job_spec,
    }


def _build_trainer(spec: TrainSpec, cluster: ClusterSettings) -> dict:
    return {
        "image": cluster.image,
        "command": list(TRAIN_COMMAND),
        "args": torchrun_args(spec, master_addr="PET_MASTER_ADDR", master_port="PET_MASTER_PORT"),
        # Merged into the `node` container's env; runtimePatches may not set env there.
        "env": build_env(cluster),
        "numNodes": spec.nodes,
        "numProcPerNode": spec.procs_per_node,
        "resourcesPerNode": build_resources(spec, cluster),
    }


def _build_runtime_patch(spec: TrainSpec, cluster: ClusterSettings) -> dict:
    pod: dict[str, Any] = {
        "securityContext": pod_security_context(),
        # Repeats what k8s/trainer/runtime.yaml sets, so the job stays non-root and gets its
        # /dev/shm size even on a runtime an admin changed; volumes merge by name.
        "containers": [{"name": CONTAINER, "securityContext": container_security_context(),
                        "volumeMounts": volume_mounts()}],
        "volumes": build_volumes(cluster),
    }
    place(pod, cluster)
    template = {"metadata": {"labels": pod_labels(spec)}, "spec": pod}
    return {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
            {"name": REPLICATED_JOB, "template": {"spec": {"template": template}}}]}}},
    }
