"""Owning a cluster job until it ends: create or adopt, watch, report, delete.

`ClusterJobLauncher.launch` creates the job its `JobKind` (kinds.py) builds, with the
kubernetes client, and waits for it; `PyTorchJobLauncher` and `TrainJobLauncher` are it for one
kind each. For either kind:

- time suspended by Kueue (not yet admitted) is counted apart from running time, and logged;
- the log of the first node's pod (PyTorchJob's master, TrainJob's node rank 0) is copied into
  this step's log;
- Failed raises JobFailed with the job's own reason and message; when the first node's
  training container ended with a permanent exit code (training/node.py), its termination
  message is the verdict: a worker's UserError stays a UserError (exit 2), as it is locally;
- a timeout, SIGTERM (a terminated KFP run) or any other exit deletes the job, so no GPU is
  left held;
- a job of the same name made by an earlier try of this step (same spec) is adopted, not
  refused;
- a 403 becomes one sentence naming the verb, resource and namespace to grant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from kfp_yolo.components.errors import Fault, JobFailed, Stopped, UserError
from kfp_yolo.components.k8s.api import default_api_client, status_message
from kfp_yolo.components.launchers.cluster import SPEC_ANNOTATION, cluster_settings, owner_reference
from kfp_yolo.components.launchers.kinds import (
    PYTORCHJOB,
    TRAINJOB,
    JobKind,
    condition,
    ended_container,
)
from kfp_yolo.components.progress import duration
from kfp_yolo.components.signals import stop_on_signals
from kfp_yolo.components.spec import TrainSpec
from kfp_yolo.components.training.node import EXIT_BAD_INPUT, EXIT_OUT_OF_MEMORY

__all__ = ["ClusterJobLauncher", "PyTorchJobLauncher", "TrainJobLauncher"]


def _log_key(stamp: str) -> tuple[str, int]:
    # RFC3339Nano trims trailing zeros, so compare (seconds, nanoseconds), not strings.
    whole, _, frac = stamp.rstrip("Z").partition(".")
    return whole, int((frac or "0").ljust(9, "0")[:9])


class ClusterJobLauncher:
    """Launches a TrainSpec as one cluster job and owns it until it ends (see the module doc)."""

    job_kind: ClassVar[JobKind]

    def __init__(self, *, api_client: Any = None, out: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, **settings: Any) -> None:
        """Args:
            api_client: a kubernetes ApiClient; default: in-cluster config, else kubeconfig.
            out: where status and log lines go (default: this process's stdout).
            clock, sleep: time sources, replaceable in tests.
            **settings: ClusterSettings fields; `owner` defaults to owner_from_env().
        """
        self.cluster = cluster_settings(self.job_kind.kind.lower(), **settings)
        self._api_client = api_client
        self._out = out or (lambda line: print(line, flush=True))
        self._clock, self._sleep = clock, sleep
        self._last_log: tuple[str, int] | None = None
        self._last_read = 0.0
        self._logs_denied = False
        self._log_pod: str | None = None
        self._progress_at: str | None = None

    # -- public --------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """The kind of job this launcher creates (PyTorchJob or TrainJob)."""
        return self.job_kind.kind

    def launch(self, spec: TrainSpec) -> None:
        """Creates the job and blocks until it succeeds; raises JobFailed otherwise."""
        manifest = self.job_kind.build(spec, self.cluster)
        name = manifest["metadata"]["name"]
        created = ended = False
        with stop_on_signals():
            try:
                self._create_or_adopt(manifest)
                created = True
                failure = self._wait(name)
                ended = True
            except Stopped as stopped:
                self._say(f"SIGTERM (the run was terminated): deleting {self._where(name)}")
                created = True  # the create request may have reached the API server
                # the step ends with 143, without a traceback, as a terminated process does
                raise SystemExit(stopped.exit_code) from None
            finally:
                # Anything but the job's own end (a timeout, SIGTERM, an API or local error)
                # must not leave pods holding GPUs.
                if created and not ended:
                    self._delete(name)
        if failure:
            ended_with = self._terminated()
            if ended_with is not None and ended_with[0] == EXIT_BAD_INPUT and ended_with[1]:
                raise UserError(ended_with[1])
            if ended_with is not None and ended_with[0] == EXIT_OUT_OF_MEMORY:
                failure += f"; its training ran out of GPU memory ({ended_with[1]})"
            raise JobFailed(failure)

    def _terminated(self) -> tuple[int, str] | None:
        """How the first node's training container ended (kinds.ended_container)."""
        if self._log_pod is None:
            return None
        return ended_container(self._apis()[1], self.cluster.namespace, self._log_pod,
                               self.job_kind.container)

    # -- API calls -----------------------------------------------------------------------------

    def _apis(self) -> tuple[Any, Any]:
        from kubernetes import client

        if self._api_client is None:
            self._api_client = default_api_client()
        return (client.CustomObjectsApi(self._api_client), client.CoreV1Api(self._api_client))

    def _custom(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A CustomObjectsApi call on this kind in the namespace."""
        custom, _ = self._apis()
        k = self.job_kind
        return getattr(custom, method)(k.group, k.version, self.cluster.namespace, k.plural,
                                       *args, **kwargs)

    def _where(self, name: str) -> str:
        return f"{self.job_kind.kind} {self.cluster.namespace}/{name}"

    def _kubectl(self, verb: str, name: str) -> str:
        return f"kubectl -n {self.cluster.namespace} {verb} {self.job_kind.kind.lower()} {name}"

    def _denied(self, verb: str, resource: str, exc: Any) -> UserError:
        return UserError(
            f"permission denied: this step's service account may not {verb} {resource} in "
            f"namespace {self.cluster.namespace!r}; grant '{verb}' on {resource} there (the Role "
            f"in k8s/base/rbac.yaml does). API server: {status_message(exc)}")

    def _create_or_adopt(self, manifest: dict) -> None:
        from kubernetes.client.exceptions import ApiException

        name = manifest["metadata"]["name"]
        try:
            self._custom("create_namespaced_custom_object", manifest)
            self._say(f"created {self._where(name)} ({self._kubectl('get', name)})")
            return
        except ApiException as exc:
            if exc.status == 403:
                raise self._denied("create", self.job_kind.resource, exc) from None
            if exc.status == 404:
                raise UserError(
                    f"the API server answered 404 to creating {self._where(name)} "
                    f"({status_message(exc)}); check that namespace {self.cluster.namespace!r} "
                    f"exists and that {self.job_kind.install_hint} is installed (k8s/README.md), "
                    "or set launcher: auto.") from None
            if exc.status in (400, 422):  # the schema or an admission webhook refused it
                raise UserError(f"the API server refused {self._where(name)}: "
                                f"{status_message(exc)}") from None
            if exc.status != 409:
                raise
        existing = self._get(name)
        ours = manifest["metadata"]["annotations"][SPEC_ANNOTATION]
        theirs = (existing.get("metadata", {}).get("annotations") or {}).get(SPEC_ANNOTATION)
        if theirs != ours:
            raise UserError(f"a different {self.job_kind.kind} named {name!r} already exists in "
                            f"namespace {self.cluster.namespace!r}; delete it "
                            f"({self._kubectl('delete', name)}) or use another run name.")
        self._say(f"adopting {self._where(name)} (same spec; an earlier try of this step "
                  "created it)")
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
        patch = {"metadata": {"ownerReferences": [*refs, owner_reference(owner)]}}
        try:
            self._custom("patch_namespaced_custom_object", existing["metadata"]["name"], patch)
        except ApiException as exc:
            if exc.status != 403:
                raise
            self._say(f"warning: {self._denied('patch', self.job_kind.resource, exc)} "
                      "The adopted job stays tied to the earlier pod only.")

    def _get(self, name: str) -> dict:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._custom("get_namespaced_custom_object", name)
        except ApiException as exc:
            if exc.status == 403:
                raise self._denied("get", self.job_kind.resource, exc) from None
            if exc.status == 404:
                raise JobFailed(f"{self._where(name)} was deleted while this step waited for "
                                "it.") from None
            raise

    def _delete(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            # Foreground: the job object goes only after its pods, so GPUs are really free.
            self._custom("delete_namespaced_custom_object", name,
                         propagation_policy="Foreground")
            self._say(f"deleted {self._where(name)}")
        except ApiException as exc:
            if exc.status == 404:
                return
            if exc.status == 403:
                self._say(f"error: {self._denied('delete', self.job_kind.resource, exc)} "
                          f"Delete it by hand: {self._kubectl('delete', name)}")
                return
            self._say(f"error: could not delete {self._where(name)}: {exc.reason}")

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
            except (UserError, JobFailed, Fault):
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
            since, previous, phase = now, phase, self.job_kind.phase(job)
            if phase != previous:
                self._report(name, phase, spent)
            if phase in ("starting", "running", "succeeded", "failed"):
                self._copy_logs(name)
                self._report_progress(job)
            if phase == "succeeded":
                return ""
            if phase == "failed":
                return self._failure(name, job)
            self._check_timeouts(name, phase, spent)
            self._sleep(self.cluster.poll_interval_s)

    def _report(self, name: str, phase: str, spent: dict[str, float]) -> None:
        where = self._where(name)
        queued = duration(spent["queued"])
        active = duration(spent["starting"] + spent["running"])
        messages = {
            "queued": f"{where} is waiting for Kueue admission (queue "
                      f"{self.cluster.queue or '-'}); queued time is not run time",
            "starting": f"{where} admitted after {queued} queued; pods starting",
            "running": f"{where} running (queued {queued})",
            "succeeded": f"{where} succeeded: {active} admitted, {queued} queued",
            "failed": f"{where} failed: {active} admitted, {queued} queued",
        }
        self._say(messages[phase])

    def _report_progress(self, job: dict) -> None:
        """The progress the training posted to the job's status, once per update."""
        found = self.job_kind.progress(job)
        if found is not None and found[0] != self._progress_at:
            self._progress_at = found[0]
            self._say(found[1])

    def _check_timeouts(self, name: str, phase: str, spent: dict[str, float]) -> None:
        limit = self.cluster.queue_timeout_s
        if phase == "queued" and limit and spent["queued"] > limit:
            raise JobFailed(f"{self._where(name)} was not admitted by Kueue within "
                            f"{duration(limit)} (queue {self.cluster.queue!r}); deleted it. Check "
                            "the ClusterQueue's quota (kubectl get clusterqueue).")
        active = spent["starting"] + spent["running"]
        if active > self.cluster.wait_timeout_s:
            raise JobFailed(f"{self._where(name)} did not finish within "
                            f"{duration(self.cluster.wait_timeout_s)} of admitted time; "
                            "deleted it.")

    def _failure(self, name: str, job: dict) -> str:
        cond = condition(job, "Failed") or {}
        text = (f"{self._where(name)} failed: {cond.get('reason') or 'unknown reason'}"
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
        """Copies the first node's new log lines (polled; lines deduplicated by timestamp)."""
        from kubernetes.client.exceptions import ApiException

        if self._logs_denied:
            return
        _, core = self._apis()
        try:
            self._log_pod = self._log_pod or self.job_kind.log_pod(core, self.cluster.namespace,
                                                                   name)
        except ApiException as exc:
            if exc.status == 403:
                self._logs_denied = True
                self._say(f"warning: {self._denied('list', 'pods', exc)} Training goes on "
                          "without its log here.")
            return
        if self._log_pod is None:
            return  # no pod yet
        kwargs: dict[str, Any] = {"container": self.job_kind.container, "timestamps": True,
                                  "limit_bytes": 4 << 20}
        now = self._clock()
        if self._last_log is not None:
            # A margin over the time since the last read: lines seen twice are dropped below.
            kwargs["since_seconds"] = int(now - self._last_read) + 30
        try:
            text = core.read_namespaced_pod_log(self._log_pod, self.cluster.namespace, **kwargs)
            self._last_read = now
        except ApiException as exc:
            if exc.status == 403:
                self._logs_denied = True
                self._say(f"warning: {self._denied('get', 'pods/log', exc)} Training goes on "
                          "without its log here.")
            elif exc.status == 404:
                self._log_pod = None  # replaced (a restarted JobSet): find the new one
            return  # 400: the container is not there yet
        for line in (text or "").splitlines():
            stamp, _, rest = line.partition(" ")
            key = _log_key(stamp)
            if self._last_log is None or key > self._last_log:
                self._last_log = key
                self._out(rest)

    def _say(self, line: str) -> None:
        self._out(f"[{self.job_kind.kind.lower()}] {line}")


class PyTorchJobLauncher(ClusterJobLauncher):
    """A Kubeflow PyTorchJob (kubeflow.org/v1, Training Operator v1.9)."""

    job_kind = PYTORCHJOB


class TrainJobLauncher(ClusterJobLauncher):
    """A Kubeflow TrainJob (trainer.kubeflow.org/v1alpha1, Trainer v2.3)."""

    job_kind = TRAINJOB
