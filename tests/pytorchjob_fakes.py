"""The PyTorchJob API of one run (exp-1 in team-a), scripted: routes, job states, a launcher.
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

from kfp_yolo.components.launchers.cluster import (
    Owner,
)
from kfp_yolo.components.launchers.lifecycle import PyTorchJobLauncher
from kfp_yolo.components.launchers.pytorchjob import build_pytorchjob

JOBS = rf"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs"


JOB = JOBS + "/exp-1"


LOG = rf"/api/v1/namespaces/{NS}/pods/exp-1-master-0/log"


EVENTS = rf"/api/v1/namespaces/{NS}/events"


def job_state(*conditions: tuple[str, str, str], suspend: bool = False) -> tuple[int, dict]:
    job = copy.deepcopy(build_pytorchjob(make_spec(), full_settings()))
    job["spec"]["runPolicy"]["suspend"] = suspend
    job["metadata"]["uid"] = "job-uid"
    job["status"] = {"conditions": [
        {"type": kind, "status": "True", "reason": reason, "message": message}
        for kind, reason, message in conditions]}
    return 200, job


CREATED = ("Created", "PyTorchJobCreated", "created")


RUNNING = ("Running", "PyTorchJobRunning", "running")


SUCCEEDED = ("Succeeded", "PyTorchJobSucceeded", "succeeded")


QUEUED = ("Suspended", "PyTorchJobSuspended", "suspended by Kueue")


def make_launcher(routes: dict, **changes):
    from kubernetes import client

    http = ScriptedHTTP({("GET", EVENTS): [(200, {"kind": "EventList", "items": []})],
                         ("DELETE", JOB): [(200, {"kind": "Status", "status": "Success"})],
                         **routes})
    api = client.ApiClient(client.Configuration(host="http://kube.test"))
    api.rest_client.pool_manager = http
    clock, lines = FakeClock(), []
    settings = dict(namespace=NS, queue="kfp-yolo", workload_priority_class="kfp-yolo-retraining",
                    priority_class="high", node_affinity=AFFINITY, tolerations=TOLERATIONS,
                    owner=Owner(name="step-pod", uid="1234-abcd", namespace=NS),
                    poll_interval_s=10)
    settings.update(changes)
    launcher = PyTorchJobLauncher(api_client=api, out=lines.append, clock=clock,
                                  sleep=clock.sleep, **settings)
    return launcher, http, lines
