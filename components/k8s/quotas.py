"""Kueue objects (kueue.x-k8s.io/v1beta2) from the node-pool catalog: one GPU memory class each.

- a ResourceFlavor per memory class, whose nodeLabels carry nvidia.com/gpu.memory (Kueue puts
  them on admitted pods as a node selector, and skips a flavor whose labels the planner's
  `Gt` affinity rules out) and whose tolerations are the pool's;
- one ClusterQueue in a cohort, with each flavor's nominal GPU quota = gpus_per_node x
  max_nodes, smallest memory first (Kueue tries flavors in order), and CPU and memory in a
  resource group of their own (every requested resource must be covered by the queue);
- a LocalQueue in the team namespace, WorkloadPriorityClasses for interactive runs and
  retraining (interactive runs may preempt retraining);
- a plain ResourceQuota on GPUs for clusters without Kueue.
"""

from __future__ import annotations

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.names import DNS_LABEL
from kfp_yolo.components.k8s.pools import GPU_MEMORY_LABEL, Pool, check_flavors

__all__ = ["CPU_FLAVOR", "PRIORITY_CLASSES", "render_quotas"]

KUEUE = "kueue.x-k8s.io/v1beta2"
GPU = "nvidia.com/gpu"
CPU_FLAVOR = "cpu-memory"
"""The flavor of CPU and memory: no node labels, so it fits every GPU node."""
PRIORITY_CLASSES = {
    "kfp-yolo-interactive": (1000, "Runs started by a person from the Kubeflow UI."),
    "kfp-yolo-retraining": (100, "Scheduled or GitOps retraining; may be preempted."),
}


def render_quotas(pools: list[Pool], *, namespace: str, cohort: str = "kfp-yolo",
                  queue: str = "kfp-yolo", cpu_per_gpu: int = 8,
                  memory_per_gpu_gi: int = 64) -> list[dict]:
    """The Kueue objects and a fallback ResourceQuota for `pools`, in apply order.

    Args:
        pools: the catalog (any order; flavors come out smallest GPU memory first).
        namespace: the team namespace of the LocalQueue and the ResourceQuota.
        cohort: Kueue cohort of the ClusterQueue (queues in a cohort borrow unused quota).
        queue: name of the ClusterQueue and the LocalQueue.
        cpu_per_gpu, memory_per_gpu_gi: CPU and memory quota per GPU of quota.
    """
    for what, value in (("namespace", namespace), ("cohort", cohort), ("queue", queue)):
        if problem := DNS_LABEL.problem(value):
            raise UserError(f"{what} {value!r} is invalid: {problem} (e.g. team-a).")
    classes = _memory_classes(pools)
    total_gpus = sum(gpus for _, gpus, _ in classes.values())
    objects: list[dict] = [_flavor(name, mib, tolerations)
                           for name, (mib, _, tolerations) in classes.items()]
    objects.append({"apiVersion": KUEUE, "kind": "ResourceFlavor",
                    "metadata": {"name": CPU_FLAVOR}, "spec": {}})
    objects.append(_cluster_queue(classes, cohort=cohort, queue=queue, namespace=namespace,
                                  cpu=total_gpus * cpu_per_gpu,
                                  memory_gi=total_gpus * memory_per_gpu_gi))
    objects.append({"apiVersion": KUEUE, "kind": "LocalQueue",
                    "metadata": {"name": queue, "namespace": namespace},
                    "spec": {"clusterQueue": queue}})
    objects.extend({"apiVersion": KUEUE, "kind": "WorkloadPriorityClass",
                    "metadata": {"name": name}, "value": value, "description": text}
                   for name, (value, text) in PRIORITY_CLASSES.items())
    objects.append({"apiVersion": "v1", "kind": "ResourceQuota",
                    "metadata": {"name": f"{queue}-gpus", "namespace": namespace},
                    "spec": {"hard": {f"requests.{GPU}": str(total_gpus)}}})
    return objects


def _memory_classes(pools: list[Pool]) -> dict[str, tuple[int, int, tuple[dict, ...]]]:
    """flavor -> (GPU memory MiB, GPUs of quota, tolerations); pools of one class add up."""
    check_flavors(pools)  # a catalog read by load_pools was checked already; a list may not be
    classes: dict[str, tuple[int, int, tuple[dict, ...]]] = {}
    for pool in sorted(pools, key=lambda p: (p.gpu_memory_mib, p.name)):
        gpus = pool.gpus_per_node * pool.max_nodes
        if pool.flavor not in classes:
            classes[pool.flavor] = (pool.gpu_memory_mib, gpus, tuple(pool.tolerations))
            continue
        mib, quota, tolerations = classes[pool.flavor]
        extra = tuple(t for t in pool.tolerations if t not in tolerations)
        classes[pool.flavor] = (mib, quota + gpus, tolerations + extra)
    if not classes:
        raise UserError("the node-pool catalog is empty; add at least one pool.")
    return classes


def _flavor(name: str, mib: int, tolerations: tuple[dict, ...]) -> dict:
    spec: dict = {"nodeLabels": {GPU_MEMORY_LABEL: str(mib)}}
    if tolerations:
        spec["tolerations"] = [dict(t) for t in tolerations]
    return {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": name},
            "spec": spec}


def _cluster_queue(classes: dict, *, cohort: str, queue: str, namespace: str, cpu: int,
                   memory_gi: int) -> dict:
    gpu_flavors = [{"name": name, "resources": [{"name": GPU, "nominalQuota": gpus}]}
                   for name, (_, gpus, _) in classes.items()]
    cpu_flavor = {"name": CPU_FLAVOR, "resources": [
        {"name": "cpu", "nominalQuota": cpu},
        {"name": "memory", "nominalQuota": f"{memory_gi}Gi"}]}
    return {
        "apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": queue},
        "spec": {
            "cohortName": cohort,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "queueingStrategy": "BestEffortFIFO",
            "preemption": {"withinClusterQueue": "LowerPriority",
                           "reclaimWithinCohort": "Any"},
            "resourceGroups": [
                {"coveredResources": ["cpu", "memory"], "flavors": [cpu_flavor]},
                {"coveredResources": [GPU], "flavors": gpu_flavors},
            ],
        },
    }
