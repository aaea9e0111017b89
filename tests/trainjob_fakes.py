"""The TrainJob API of one run (exp-1 in team-a), scripted: routes, pods, job states, a launcher.
"""

from __future__ import annotations

import copy

from kube_fakes import (
    AFFINITY,
    NS,
    TOLERATIONS,
    FakeClock,
    ScriptedHTTP,
    full_settings,
    make_spec,
)

from kfp_yolo.components.launchers import get_launcher
from kfp_yolo.components.launchers.cluster import ClusterSettings, Owner
from kfp_yolo.components.launchers.lifecycle import TrainJobLauncher
from kfp_yolo.components.launchers.trainjob import build_trainjob


def settings(**changes) -> ClusterSettings:
    # A TrainJob cannot carry a pod PriorityClass (see test_priority_class_is_refused).
    return full_settings(**{"priority_class": "", **changes})


JOBS = rf"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NS}/trainjobs"


JOB = JOBS + "/exp-1"


PODS = rf"/api/v1/namespaces/{NS}/pods"


EVENTS = rf"/api/v1/namespaces/{NS}/events"


NODE0 = "exp-1-node-0-0-x7k2p"


def log_route(pod: str = NODE0) -> tuple[str, str]:
    return ("GET", rf"{PODS}/{pod}/log")


def pods(*names: str) -> tuple[int, dict]:
    return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
        {"metadata": {"name": name, "namespace": NS,
                      "creationTimestamp": f"2026-11-02T10:00:0{i}Z"}}
        for i, name in enumerate(names)]}


def job_state(*conditions: tuple[str, str, str, str], suspend: bool = False,
              ready: int = 0) -> tuple[int, dict]:
    job = copy.deepcopy(build_trainjob(make_spec(), settings()))
    job["spec"]["suspend"] = suspend
    job["metadata"]["uid"] = "job-uid"
    job["status"] = {
        "conditions": [{"type": kind, "status": status, "reason": reason, "message": message,
                        "lastTransitionTime": "2026-11-02T10:00:00Z"}
                       for kind, status, reason, message in conditions],
        "jobsStatus": [{"name": "node", "active": 1 if ready else 0, "ready": ready,
                        "succeeded": 0, "failed": 0, "suspended": 1 if suspend else 0}],
    }
    return 200, job


QUEUED = ("Suspended", "True", "Suspended", "TrainJob is suspended")


RESUMED = ("Suspended", "False", "Resumed", "TrainJob is resumed")


COMPLETE = ("Complete", "True", "JobSetCompleted", "jobset completed successfully")


def make_launcher(routes: dict, **changes):
    from kubernetes import client

    http = ScriptedHTTP({("GET", EVENTS): [(200, {"kind": "EventList", "items": []})],
                         ("DELETE", JOB): [(200, {"kind": "Status", "status": "Success"})],
                         ("GET", PODS): [pods(NODE0)],
                         log_route(): [(200, "")],
                         **routes})
    api = client.ApiClient(client.Configuration(host="http://kube.test"))
    api.rest_client.pool_manager = http
    clock, lines = FakeClock(), []
    values = dict(namespace=NS, queue="kfp-yolo", workload_priority_class="kfp-yolo-retraining",
                  node_affinity=AFFINITY, tolerations=TOLERATIONS,
                  owner=Owner(name="step-pod", uid="1234-abcd", namespace=NS), poll_interval_s=10)
    values.update(changes)
    launcher = get_launcher("trainjob", api_client=api, out=lines.append, clock=clock,
                            sleep=clock.sleep, **values)
    assert isinstance(launcher, TrainJobLauncher) and launcher.kind == "TrainJob"
    return launcher, http, lines
