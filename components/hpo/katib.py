"""The search on a cluster: creates the Katib Experiment (experiment.py) through the Kubernetes
API, watches it with bounded waits, and deletes it with its trials when the step is stopped,
fails, times out or the budget is spent; a finished Experiment stays for Katib's UI.

Progress lines (trials done, best so far, GPU-hours estimated) go to the step's log. The
Experiment's trials are read back as TrialRecords: values from parameterAssignments, the
metric from status.observation (Katib keeps min, max and latest, not every epoch: a trial's
best mAP50-95 and its lowest validation loss, the tie-break when the best is picked), the
device-hours from each trial's start and completion times x the GPUs of a trial.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kfp_yolo.components.errors import JobFailed, Stopped, UserError
from kfp_yolo.components.hpo.budget import TrialCost
from kfp_yolo.components.hpo.experiment import (
    GROUP,
    LOSS_METRIC,
    METRIC,
    PLURAL,
    VERSION,
    build_experiment,
)
from kfp_yolo.components.hpo.result import SearchResult, TrialRecord, best_of
from kfp_yolo.components.hpo.space import SearchSpace
from kfp_yolo.components.k8s.api import default_api_client, status_message
from kfp_yolo.components.launchers.cluster import cluster_settings
from kfp_yolo.components.signals import stop_on_signals
from kfp_yolo.components.spec import TrainSpec

__all__ = ["KatibSearch", "run_katib_search"]

_STATES = {"Succeeded": "complete", "EarlyStopped": "pruned", "Failed": "failed",
           "Killed": "failed", "MetricsUnavailable": "failed"}


def _condition(obj: dict) -> str:
    """The latest condition whose status is True ('' when none)."""
    true = [c for c in (obj.get("status", {}).get("conditions") or [])
            if c.get("status") == "True"]
    return true[-1]["type"] if true else ""


def _observed(metrics: list[dict], name: str, which: str) -> float | None:
    """A trial's observed `which` (min, max, latest) of metric `name` (None: not observed)."""
    value = next((m.get(which) for m in metrics if m.get("name") == name), None)
    try:
        return float(value) if value not in (None, "unavailable") else None
    except (TypeError, ValueError):
        return None


def _seconds(status: dict) -> float:
    try:
        start = datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00"))
    except (KeyError, AttributeError, ValueError):
        return 0.0
    return max(0.0, (end - start).total_seconds())


class KatibSearch:
    """One Experiment, from creation to its end (or its deletion)."""

    def __init__(self, experiment: dict, *, world_size: int, budget_gpu_h: float = 0.0,
                 cost: TrialCost | None = None, timeout_s: float = 7 * 86400,
                 poll_s: float = 30.0, api_client: Any = None,
                 out: Callable[[str], None] = lambda line: print(line, flush=True),
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.experiment = experiment
        self.name = experiment["metadata"]["name"]
        self.namespace = experiment["metadata"]["namespace"]
        self.world_size, self.budget_gpu_h, self.cost = world_size, budget_gpu_h, cost
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self._api_client, self._out, self._clock, self._sleep = api_client, out, clock, sleep
        self.budget_reached = False

    def _api(self) -> Any:
        from kubernetes import client

        if self._api_client is None:
            self._api_client = default_api_client()
        return client.CustomObjectsApi(self._api_client)

    def _denied(self, verb: str, resource: str, exc: Any) -> UserError:
        return UserError(f"permission denied: this step's service account may not {verb} "
                         f"{resource} in namespace {self.namespace!r}; grant it (the Role "
                         f"kfp-yolo-search in k8s/base/rbac.yaml does). API server: "
                         f"{status_message(exc)}")

    def run(self) -> list[TrialRecord]:
        """Creates the Experiment and waits for its end; returns its trials."""
        ended = created = False
        try:
            with stop_on_signals():  # the one SIGTERM policy: the deletion below finishes
                self._create()
                created = True
                self._wait()
                ended = not self.budget_reached
                return self.trials()
        except Stopped as stopped:
            # the step ends with 143, without a traceback, as a terminated process does
            raise SystemExit(stopped.exit_code) from None
        finally:
            if created and not ended:
                self.delete()

    def _create(self) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._api().create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                        self.experiment)
        except ApiException as exc:
            if exc.status == 403:
                raise self._denied("create", "experiments.kubeflow.org", exc) from None
            if exc.status == 404:
                raise UserError(f"the API server answered 404 to creating Experiment "
                                f"{self.namespace}/{self.name}: install Katib 0.19 "
                                "(k8s/README.md) or set hpo_trials=0.") from None
            if exc.status in (400, 409, 422):
                raise UserError(f"the API server refused Experiment {self.namespace}/"
                                f"{self.name}: {status_message(exc)}") from None
            raise
        self._out(f"search: created Experiment {self.namespace}/{self.name} (kubectl -n "
                  f"{self.namespace} get experiment {self.name})")

    def _wait(self) -> None:
        deadline = self._clock() + self.timeout_s
        shown = ""
        while True:
            exp = self._get()
            status = exp.get("status", {})
            condition = _condition(exp)
            done = sum(int(status.get(k) or 0) for k in
                       ("trialsSucceeded", "trialsFailed", "trialsEarlyStopped", "trialsKilled"))
            line = self._progress(status, done)
            if line != shown:
                self._out(line)
                shown = line
            if condition == "Succeeded":
                return
            if condition == "Failed":
                message = next((c.get("message", "") for c in status.get("conditions", [])
                                if c.get("type") == "Failed"), "")
                raise JobFailed(f"Experiment {self.namespace}/{self.name} failed: {message}")
            if self.budget_gpu_h and self.cost and self.cost.gpu_h and \
                    done * self.cost.gpu_h >= self.budget_gpu_h:
                self.budget_reached = True
                self._out(f"search: budget of {self.budget_gpu_h:g} GPU-h spent after {done} "
                          "trials; stopping the Experiment")
                return
            if self._clock() >= deadline:
                raise JobFailed(f"Experiment {self.namespace}/{self.name} did not finish within "
                                f"{self.timeout_s:.0f} s (job_timeout_s); it was deleted.")
            self._sleep(self.poll_s)

    def _progress(self, status: dict, done: int) -> str:
        best = (status.get("currentOptimalTrial") or {}).get("observation") or {}
        value = next((m.get("max") for m in best.get("metrics") or []
                      if m.get("name") == METRIC), None)
        spent = (f", about {done * self.cost.gpu_h:.3g} GPU-h"
                 if self.cost and self.cost.gpu_h else "")
        return (f"search: {done} trials done ({status.get('trialsSucceeded', 0) or 0} "
                f"succeeded, {status.get('trialsEarlyStopped', 0) or 0} stopped early, "
                f"{status.get('trialsFailed', 0) or 0} failed), "
                f"{status.get('trialsRunning', 0) or 0} running; best {METRIC} "
                f"{value if value is not None else '-'}{spent}")

    def _get(self) -> dict:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._api().get_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                            PLURAL, self.name)
        except ApiException as exc:
            if exc.status == 403:
                raise self._denied("get", "experiments.kubeflow.org", exc) from None
            if exc.status == 404:
                raise JobFailed(f"Experiment {self.namespace}/{self.name} was deleted while "
                                "this step waited for it.") from None
            raise

    def trials(self) -> list[TrialRecord]:
        """The Experiment's trials, in creation order."""
        listed = self._api().list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "trials",
            label_selector=f"katib.kubeflow.org/experiment={self.name}")
        items = sorted(listed.get("items", []),
                       key=lambda t: (t["metadata"].get("creationTimestamp", ""),
                                      t["metadata"]["name"]))
        records = []
        for number, trial in enumerate(items):
            status = trial.get("status", {})
            values = {a["name"]: float(a["value"])
                      for a in trial.get("spec", {}).get("parameterAssignments", [])}
            observed = (status.get("observation") or {}).get("metrics") or []
            metric = _observed(observed, METRIC, "max")
            loss = _observed(observed, LOSS_METRIC, "min")
            seconds = _seconds(status)
            records.append(TrialRecord(
                number=number, values=values, state=_STATES.get(_condition(trial), "running"),
                metrics=(metric,) if metric is not None else (),
                val_losses=(loss,) if metric is not None and loss is not None else (),
                seconds=seconds,
                measured_gpu_h=seconds * self.world_size / 3600,
                estimated_gpu_h=self.cost.gpu_h if self.cost else None,
                name=trial["metadata"]["name"]))
        return records

    def delete(self) -> None:
        """Deletes the Experiment; Katib's trials and their TrainJobs go with it."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._api().delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                        self.name,
                                                        propagation_policy="Foreground")
            self._out(f"search: deleted Experiment {self.namespace}/{self.name} and its trials")
        except ApiException as exc:
            if exc.status != 404:
                self._out(f"search: error: could not delete Experiment {self.namespace}/"
                          f"{self.name} ({status_message(exc)}); delete it by hand: kubectl -n "
                          f"{self.namespace} delete experiment {self.name}")


def run_katib_search(config: dict[str, Any], space: SearchSpace, dataset_uri: str,
                     cost: TrialCost | None, **kwargs: Any) -> SearchResult:
    """The search step's cluster path: the Experiment for config, run to its end."""
    from kfp_yolo.components.hpo.trial import base_spec

    spec: TrainSpec = base_spec(config, dataset_uri, config["output_uri"])
    experiment = build_experiment(spec, experiment_cluster(config), space,
                                  trials=int(config["hpo_trials"]),
                                  parallel=int(config["hpo_parallel"]),
                                  algorithm=config["hpo_algorithm"])
    search = KatibSearch(experiment, world_size=spec.world_size,
                         budget_gpu_h=float(config["hpo_budget_gpu_h"]), cost=cost,
                         timeout_s=float(config.get("job_timeout_s") or 7 * 86400), **kwargs)
    records = search.run()
    best = best_of(records)
    if best is None:
        raise JobFailed(f"no trial of Experiment {search.namespace}/{search.name} succeeded.")
    return SearchResult(trials=tuple(records), best=best.number,
                        algorithm=config["hpo_algorithm"], epochs=int(config["hpo_epochs"]),
                        budget_gpu_h=float(config["hpo_budget_gpu_h"]), cost=cost,
                        budget_reached=search.budget_reached,
                        where=f"Katib Experiment {search.namespace}/{search.name}")


def experiment_cluster(config: dict[str, Any]) -> Any:
    """The trials' ClusterSettings: the training job's (config keys and the plan's placement)."""
    from kfp_yolo.components.k8s.pools import node_affinity

    return cluster_settings(
        "trainjob", image=config["image"], namespace=config["namespace"],
        queue=config.get("queue", ""), storage_secret=config["storage_secret"],
        workload_priority_class=config.get("workload_priority_class", ""),
        service_account=config.get("service_account", ""),
        active_deadline_s=int(config.get("job_timeout_s") or 7 * 86400),
        node_affinity=tuple(node_affinity(int(config.get("min_gpu_memory_mib") or 0)))
        if config.get("min_gpu_memory_mib") else (),
        tolerations=tuple(config.get("tolerations") or ()))
