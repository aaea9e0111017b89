"""The cluster launcher: one Kubeflow PyTorchJob (kubeflow.org/v1), owned until it ends.

`build_pytorchjob` is pure: a TrainSpec and ClusterSettings in, a plain dict out (what
`kfp-yolo job render` prints). `PyTorchJobLauncher.launch` creates that job with the kubernetes
client and waits for it:

- time suspended by Kueue (not yet admitted) is counted apart from running time, and logged;
- the master pod's log is copied into this step's log;
- Failed raises JobFailed with the job's own reason and message;
- a timeout, SIGTERM (a terminated KFP run) or any other exit deletes the job, so no GPU is
  left held;
- a job of the same name made by an earlier try of this step (same spec) is adopted, not
  refused;
- a 403 becomes one sentence naming the verb, resource and namespace to grant.

Every pod runs `torchrun` with the values the training operator (v1.9) injects: PET_NNODES,
PET_NPROC_PER_NODE, PET_NODE_RANK, MASTER_ADDR, MASTER_PORT; kubelet expands `$(NAME)` in args.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

from components.errors import JobFailed, UserError
from components.train import TrainSpec

__all__ = [
    "ClusterSettings",
    "Owner",
    "PyTorchJobLauncher",
    "build_pytorchjob",
    "job_name",
    "owner_from_env",
]

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
CONTAINER = "pytorch"  # the operator only wires a container of this name
MASTER_PORT = 23456  # the operator's default; named so the operator finds it
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
RUN_LABEL = "kfp-yolo/run-id"
SPEC_ANNOTATION = "kfp-yolo/spec-sha256"
_SECRET_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


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

    def __post_init__(self) -> None:
        # Lists from callers become tuples: the settings are a frozen value.
        object.__setattr__(self, "node_affinity", tuple(self.node_affinity))
        object.__setattr__(self, "tolerations", tuple(self.tolerations))
        _check_name("namespace", self.namespace)
        for key in ("queue", "workload_priority_class", "priority_class", "service_account"):
            if getattr(self, key):
                _check_name(key, getattr(self, key))
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


def _check_name(key: str, value: str) -> None:
    if len(value) > 63 or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", value):
        raise UserError(f"{key}={value!r} is not a valid Kubernetes name; use lower-case "
                        "letters, digits and '-'.")


def job_name(run_id: str) -> str:
    """A DNS-1035 name for the run, short enough for the `<name>-worker-<i>` services."""
    name = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name) or "run"
    if len(name) > 40:  # a digest keeps long run ids that share a prefix apart
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
        name = f"{name[:31].rstrip('-')}-{digest}"
    return name


# ---- the manifest ---------------------------------------------------------------------------


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
        metadata["ownerReferences"] = [_owner_reference(owner)]
    return metadata


def _owner_reference(owner: Owner) -> dict:
    # Not a controller reference: Kueue would take a job controlled by a Pod for a child of a
    # pod workload and never admit it on its own.
    return {"apiVersion": "v1", "kind": "Pod", "name": owner.name, "uid": owner.uid}


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
        "-m", "components.worker", "--spec", spec.to_json().replace("$", "$$"),
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
    for key in _SECRET_KEYS:
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


# ---- the launcher ---------------------------------------------------------------------------


class _Terminated(BaseException):
    """SIGTERM arrived: a BaseException so no `except Exception` on the way swallows it."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; its owner handles them
        return

    def handler(signum: int, frame: object) -> None:
        # A second SIGTERM must not interrupt the deletion the first one started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _condition(job: dict, kind: str) -> dict | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _phase(job: dict) -> str:
    """queued | starting | running | succeeded | failed."""
    if _condition(job, "Succeeded"):
        return "succeeded"
    if _condition(job, "Failed"):
        return "failed"
    if (job.get("spec", {}).get("runPolicy") or {}).get("suspend") or _condition(job, "Suspended"):
        return "queued"
    return "running" if _condition(job, "Running") else "starting"


def _log_key(stamp: str) -> tuple[str, int]:
    # RFC3339Nano trims trailing zeros, so compare (seconds, nanoseconds), not strings.
    whole, _, frac = stamp.rstrip("Z").partition(".")
    return whole, int((frac or "0").ljust(9, "0")[:9])


class PyTorchJobLauncher:
    """Launches a TrainSpec as a PyTorchJob and owns it until it ends (see the module doc)."""

    def __init__(self, *, api_client: Any = None, pool: str = "", pools_path: str | None = None,
                 out: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, **settings: Any) -> None:
        """Args:
            api_client: a kubernetes ApiClient; default: in-cluster config, else kubeconfig.
            pool: a node-pool name from the catalog; gives the tolerations, and the affinity
                (at least that pool's GPU memory) when node_affinity is not passed.
            pools_path: the catalog file (default k8s/node-pools.yaml).
            out: where status and log lines go (default: this process's stdout).
            clock, sleep: time sources, replaceable in tests.
            **settings: ClusterSettings fields; `owner` defaults to owner_from_env().
        """
        known = {f.name for f in fields(ClusterSettings)}
        unknown = set(settings) - known
        if unknown:
            raise UserError(f"unknown pytorchjob launcher setting(s) {sorted(unknown)}; known "
                            f"are {sorted(known)}.")
        if pool:
            placement = _pool_placement(pool, pools_path)
            settings.setdefault("tolerations", placement["tolerations"])
            settings.setdefault("node_affinity", placement["node_affinity"])
        settings.setdefault("owner", owner_from_env())
        self.cluster = ClusterSettings(**settings)
        self._api_client = api_client
        self._out = out or (lambda line: print(line, flush=True))
        self._clock, self._sleep = clock, sleep
        self._last_log: tuple[str, int] | None = None
        self._last_read = 0.0
        self._logs_denied = False

    # -- public --------------------------------------------------------------------------------

    def launch(self, spec: TrainSpec) -> None:
        """Creates the job and blocks until it succeeds; raises JobFailed otherwise."""
        manifest = build_pytorchjob(spec, self.cluster)
        name = manifest["metadata"]["name"]
        created = ended = False
        with _sigterm_raises():
            try:
                self._create_or_adopt(manifest)
                created = True
                failure = self._wait(name)
                ended = True
            except _Terminated:
                self._say(f"SIGTERM (the run was terminated): deleting {self._where(name)}")
                created = True  # the create request may have reached the API server
                raise SystemExit(128 + signal.SIGTERM) from None
            finally:
                # Anything but the job's own end (a timeout, SIGTERM, an API or local error)
                # must not leave pods holding GPUs.
                if created and not ended:
                    self._delete(name)
        if failure:
            raise JobFailed(failure)

    # -- API calls -----------------------------------------------------------------------------

    def _apis(self) -> tuple[Any, Any]:
        from kubernetes import client

        if self._api_client is None:
            self._api_client = _default_api_client()
        return (client.CustomObjectsApi(self._api_client), client.CoreV1Api(self._api_client))

    def _where(self, name: str) -> str:
        return f"{self.cluster.namespace}/{name}"

    def _denied(self, verb: str, resource: str, exc: Any) -> UserError:
        return UserError(
            f"permission denied: this step's service account may not {verb} {resource} in "
            f"namespace {self.cluster.namespace!r}; grant '{verb}' on {resource} there (the Role "
            f"in k8s/base/rbac.yaml does). API server: {_status_message(exc)}")

    def _create_or_adopt(self, manifest: dict) -> None:
        from kubernetes.client.exceptions import ApiException

        custom, _ = self._apis()
        name = manifest["metadata"]["name"]
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, self.cluster.namespace, PLURAL,
                                                   manifest)
            self._say(f"created PyTorchJob {self._where(name)} (kubectl -n "
                      f"{self.cluster.namespace} get pytorchjob {name})")
            return
        except ApiException as exc:
            if exc.status == 403:
                raise self._denied("create", "pytorchjobs.kubeflow.org", exc) from None
            if exc.status != 409:
                raise
        existing = self._get(name)
        ours = manifest["metadata"]["annotations"][SPEC_ANNOTATION]
        theirs = (existing.get("metadata", {}).get("annotations") or {}).get(SPEC_ANNOTATION)
        if theirs != ours:
            raise UserError(f"a different PyTorchJob named {name!r} already exists in namespace "
                            f"{self.cluster.namespace!r}; delete it (kubectl -n "
                            f"{self.cluster.namespace} delete pytorchjob {name}) or use another "
                            "run name.")
        self._say(f"adopting PyTorchJob {self._where(name)} (same spec; an earlier try of this "
                  "step created it)")
        self._add_owner(existing)

    def _add_owner(self, existing: dict) -> None:
        """Adds this pod as a second owner, so losing the first try's pod keeps the job."""
        from kubernetes.client.exceptions import ApiException

        owner = self.cluster.owner
        if not owner or owner.namespace != self.cluster.namespace:
            return
        refs = list(existing.get("metadata", {}).get("ownerReferences") or [])
        if any(ref.get("uid") == owner.uid for ref in refs):
            return
        custom, _ = self._apis()
        patch = {"metadata": {"ownerReferences": [*refs, _owner_reference(owner)]}}
        try:
            custom.patch_namespaced_custom_object(GROUP, VERSION, self.cluster.namespace, PLURAL,
                                                  existing["metadata"]["name"], patch)
        except ApiException as exc:
            if exc.status != 403:
                raise
            self._say(f"warning: {self._denied('patch', 'pytorchjobs.kubeflow.org', exc)} "
                      "The adopted job stays tied to the earlier pod only.")

    def _get(self, name: str) -> dict:
        from kubernetes.client.exceptions import ApiException

        custom, _ = self._apis()
        try:
            return custom.get_namespaced_custom_object(GROUP, VERSION, self.cluster.namespace,
                                                       PLURAL, name)
        except ApiException as exc:
            if exc.status == 403:
                raise self._denied("get", "pytorchjobs.kubeflow.org", exc) from None
            if exc.status == 404:
                raise JobFailed(f"PyTorchJob {self._where(name)} was deleted while this step "
                                "waited for it.") from None
            raise

    def _delete(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        custom, _ = self._apis()
        try:
            # Foreground: the job object goes only after its pods, so GPUs are really free.
            custom.delete_namespaced_custom_object(GROUP, VERSION, self.cluster.namespace,
                                                   PLURAL, name,
                                                   propagation_policy="Foreground")
            self._say(f"deleted PyTorchJob {self._where(name)}")
        except ApiException as exc:
            if exc.status == 404:
                return
            if exc.status == 403:
                self._say(f"error: {self._denied('delete', 'pytorchjobs.kubeflow.org', exc)} "
                          f"Delete it by hand: kubectl -n {self.cluster.namespace} delete "
                          f"pytorchjob {name}")
                return
            self._say(f"error: could not delete PyTorchJob {self._where(name)}: {exc.reason}")

    # -- waiting -------------------------------------------------------------------------------

    def _wait(self, name: str) -> str:
        """Polls the job to its end: '' when it succeeded, else why it failed."""
        spent = {"queued": 0.0, "starting": 0.0, "running": 0.0}
        phase, since = "", self._clock()
        errors = 0
        while True:
            try:
                job = self._get(name)
                errors = 0
            except (UserError, JobFailed):
                raise
            except Exception as exc:  # an API server restart must not kill a week-long run
                errors += 1
                if errors > 5:
                    raise
                self._say(f"warning: reading the job failed ({exc}); retrying")
                self._sleep(self.cluster.poll_interval_s)
                continue
            now = self._clock()
            if phase in spent:
                spent[phase] += now - since
            since, previous, phase = now, phase, _phase(job)
            if phase != previous:
                self._report(name, phase, spent)
            if phase in ("starting", "running", "succeeded", "failed"):
                self._copy_logs(name)
            if phase == "succeeded":
                return ""
            if phase == "failed":
                return self._failure(name, job)
            self._check_timeouts(name, phase, spent)
            self._sleep(self.cluster.poll_interval_s)

    def _report(self, name: str, phase: str, spent: dict[str, float]) -> None:
        where = self._where(name)
        queued = _fmt(spent["queued"])
        active = _fmt(spent["starting"] + spent["running"])
        messages = {
            "queued": f"PyTorchJob {where} is waiting for Kueue admission (queue "
                      f"{self.cluster.queue or '-'}); queued time is not run time",
            "starting": f"PyTorchJob {where} admitted after {queued} queued; pods starting",
            "running": f"PyTorchJob {where} running (queued {queued})",
            "succeeded": f"PyTorchJob {where} succeeded: {active} admitted, {queued} queued",
            "failed": f"PyTorchJob {where} failed: {active} admitted, {queued} queued",
        }
        self._say(messages[phase])

    def _check_timeouts(self, name: str, phase: str, spent: dict[str, float]) -> None:
        limit = self.cluster.queue_timeout_s
        if phase == "queued" and limit and spent["queued"] > limit:
            raise JobFailed(f"PyTorchJob {self._where(name)} was not admitted by Kueue within "
                            f"{_fmt(limit)} (queue {self.cluster.queue!r}); deleted it. Check "
                            "the ClusterQueue's quota (kubectl get clusterqueue).")
        active = spent["starting"] + spent["running"]
        if active > self.cluster.wait_timeout_s:
            raise JobFailed(f"PyTorchJob {self._where(name)} did not finish within "
                            f"{_fmt(self.cluster.wait_timeout_s)} of admitted time; deleted it.")

    def _failure(self, name: str, job: dict) -> str:
        cond = _condition(job, "Failed") or {}
        text = (f"PyTorchJob {self._where(name)} failed: {cond.get('reason') or 'unknown reason'}"
                f": {cond.get('message') or 'no message'}")
        events = self._warning_events(name)
        return f"{text} (events: {'; '.join(events)})" if events else text

    def _warning_events(self, name: str) -> list[str]:
        from kubernetes.client.exceptions import ApiException

        _, core = self._apis()
        try:
            listed = core.list_namespaced_event(self.cluster.namespace,
                                                field_selector=f"involvedObject.name={name}")
        except ApiException:
            return []  # the reason above is enough; events only add detail
        return [f"{e.reason}: {e.message}" for e in listed.items if e.type == "Warning"][-3:]

    def _copy_logs(self, name: str) -> None:
        """Copies the master pod's new log lines (polled; lines deduplicated by timestamp)."""
        from kubernetes.client.exceptions import ApiException

        if self._logs_denied:
            return
        _, core = self._apis()
        kwargs: dict[str, Any] = {"container": CONTAINER, "timestamps": True,
                                  "limit_bytes": 4 << 20}
        now = self._clock()
        if self._last_log is not None:
            # A margin over the time since the last read: lines seen twice are dropped below.
            kwargs["since_seconds"] = int(now - self._last_read) + 30
        try:
            text = core.read_namespaced_pod_log(f"{name}-master-0", self.cluster.namespace,
                                                **kwargs)
            self._last_read = now
        except ApiException as exc:
            if exc.status == 403:
                self._logs_denied = True
                self._say(f"warning: {self._denied('get', 'pods/log', exc)} Training goes on "
                          "without its log here.")
            return  # 400/404: the container is not there yet, or already cleaned up
        for line in (text or "").splitlines():
            stamp, _, rest = line.partition(" ")
            key = _log_key(stamp)
            if self._last_log is None or key > self._last_log:
                self._last_log = key
                self._out(rest)

    def _say(self, line: str) -> None:
        self._out(f"[pytorchjob] {line}")


def _pool_placement(pool: str, pools_path: str | None) -> dict:
    from components.pools import GPU_MEMORY_LABEL, load_pools

    pools = {p.name: p for p in load_pools(pools_path)}
    if pool not in pools:
        raise UserError(f"pool {pool!r} is not in the node-pool catalog; known pools are "
                        f"{sorted(pools)}.")
    chosen = pools[pool]
    # Gt is strict: at least this pool's memory, so a larger pool may run it too.
    affinity = {"key": GPU_MEMORY_LABEL, "operator": "Gt",
                "values": [str(chosen.gpu_memory_mib - 1)]}
    return {"node_affinity": (affinity,), "tolerations": chosen.tolerations}


def _status_message(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(getattr(exc, "reason", exc))


def _default_api_client() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()

