"""deploy: create or update the InferenceService of a published version; wait until Ready.

Through the kubernetes client's CustomObjectsApi, as the launchers do: a GET decides between
create and replace (replace carries the resourceVersion read, and a conflict re-reads and tries
again), then the object is polled until KServe has seen this generation
(status.observedGeneration) and its Ready condition is True, or a model failed to load
(modelStatus.transitionStatus BlockedByFailedLoad / InvalidSpec), or the deadline passes. A
403 names the RBAC rule to grant (k8s/base/rbac.yaml, Role kfp-yolo-deploy), a 404 on the
kind says KServe is not installed.

(No `from __future__ import annotations` in component modules: KFP reads the annotations.)
"""

import time
from collections.abc import Callable
from typing import Any

from kfp_yolo.components.bounded import Bound, request_timeout
from kfp_yolo.components.errors import Fault, JobFailed, UserError
from kfp_yolo.components.k8s.api import cluster_config_problem, default_api_client, status_message
from kfp_yolo.components.release.kserve import GROUP, KIND, PLURAL, VERSION

__all__ = ["POLL_S", "deploy_inferenceservice", "ready_state"]

POLL_S = 5.0
_FAILED_TRANSITIONS = ("BlockedByFailedLoad", "InvalidSpec")
_CONFLICT_RETRIES = 3
BOUND = Bound(timeout_s=30)
"""Each API call; the wait for Ready is bounded by deploy_timeout_s (the user's setting)."""


def ready_state(service: dict, generation: int) -> tuple[str, str]:
    """('ready' | 'failed' | 'waiting', why) for an InferenceService read back from the API."""
    status = service.get("status") or {}
    model = status.get("modelStatus") or {}
    if model.get("transitionStatus") in _FAILED_TRANSITIONS:
        failure = model.get("lastFailureInfo") or {}
        why = failure.get("message") or failure.get("reason") or model["transitionStatus"]
        return "failed", f"{model['transitionStatus']}: {why}"
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready", {})
    if int(status.get("observedGeneration") or 0) < generation:
        return "waiting", f"KServe has not seen generation {generation} yet"
    if ready.get("status") == "True":
        return "ready", str(status.get("url") or "")
    false = [c for c in conditions.values() if c.get("status") == "False"]
    shown = false[0] if false else ready
    reason = shown.get("reason") or "no Ready condition yet"
    return "waiting", f"{shown.get('type', 'Ready')}: {reason}: {shown.get('message', '')}".rstrip(
        ": ")


class _Api:
    """The four calls deploy makes, each turning the API server's refusals into one sentence."""

    def __init__(self, api_client: Any, namespace: str, name: str):
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.namespace, self.name = namespace, name
        self.where = f"{PLURAL}.{GROUP} {namespace}/{name}"

    def call(self, verb: str, method: str, *args: Any) -> Any:
        from kubernetes.client.rest import ApiException

        try:
            return getattr(self.custom, method)(GROUP, VERSION, self.namespace, PLURAL, *args,
                                                _request_timeout=request_timeout(BOUND))
        except ApiException as exc:
            if exc.status == 403:
                raise UserError(f"the step's service account may not {verb} {PLURAL}.{GROUP} in "
                                f"namespace {self.namespace!r} ({status_message(exc)}); apply "
                                "the Role kfp-yolo-deploy of k8s/base/rbac.yaml.") from None
            if exc.status == 404 and verb == "create":
                raise UserError(f"the API server does not serve {KIND} "
                                f"({GROUP}/{VERSION}): install KServe v0.20 or set deploy: "
                                "none.") from None
            if exc.status >= 500:
                raise Fault(f"the API server failed to {verb} {self.where} ({exc.status}: "
                            f"{status_message(exc)}); run the step again.") from None
            raise

    def get(self) -> dict | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.call("get", "get_namespaced_custom_object", self.name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def _apply(api: _Api, service: dict, out: Callable[[str], None]) -> dict:
    from kubernetes.client.rest import ApiException

    for _ in range(_CONFLICT_RETRIES):
        existing = api.get()
        try:
            if existing is None:
                out(f"deploy: creating {api.where}")
                return api.call("create", "create_namespaced_custom_object", service)
            body = {**service, "metadata": {**service["metadata"], "resourceVersion":
                                            existing["metadata"]["resourceVersion"]}}
            out(f"deploy: updating {api.where}")
            return api.call("update", "replace_namespaced_custom_object", api.name, body)
        except ApiException as exc:
            # 409: created meanwhile, or changed since we read it; 404: deleted since we read
            # it. Either way: read it again.
            if exc.status not in (404, 409):
                raise Fault(f"the API server refused {api.where} ({exc.status}: "
                            f"{status_message(exc)}).") from None
    raise Fault(f"{api.where} kept changing while being updated ({_CONFLICT_RETRIES} conflicts); "
                "run the step again.")


def deploy_inferenceservice(service: dict, *, api_client: Any = None, timeout_s: float = 900,
                            poll_s: float = POLL_S, clock: Callable[[], float] = time.monotonic,
                            sleep: Callable[[float], None] = time.sleep,
                            out: Callable[[str], None] = print) -> str:
    """Creates or replaces service, waits until it is Ready; returns its URL.

    Raises:
        JobFailed: a model failed to load, or it was not Ready within timeout_s.
        UserError: RBAC forbids it or KServe is not installed.
    """
    if api_client is None:
        if cluster_config_problem():
            raise UserError("deploy: kserve needs a Kubernetes API server and found none (no "
                            "in-cluster service account and no kubeconfig); run on a cluster "
                            "or set deploy: none.")
        api_client = default_api_client()
    api = _Api(api_client, service["metadata"]["namespace"], service["metadata"]["name"])
    applied = _apply(api, service, out)
    generation = int(applied.get("metadata", {}).get("generation") or 1)
    deadline, last = clock() + timeout_s, ""
    while True:
        current = api.get() or {}
        state, why = ready_state(current, generation)
        if state == "ready":
            out(f"deploy: {api.where} is Ready at {why or '(no URL reported)'}")
            return why
        if state == "failed":
            raise JobFailed(f"{api.where} failed: {why}; see `kubectl describe inferenceservice "
                            f"-n {api.namespace} {api.name}`.")
        if why != last:
            out(f"deploy: waiting: {why}")
            last = why
        if clock() >= deadline:
            raise JobFailed(f"{api.where} was not Ready within {timeout_s:.0f} s (last: {why}); "
                            "raise deploy_timeout_s or see `kubectl describe inferenceservice "
                            f"-n {api.namespace} {api.name}`.")
        sleep(min(poll_s, max(0.0, deadline - clock())))
