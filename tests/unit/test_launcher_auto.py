"""`launcher: auto` asks the API server (discovery) which job kind it serves, TrainJob first.

The real kubernetes client over a scripted API (test_pytorchjob.ScriptedHTTP), for each answer
the API server may give: TrainJob served, only PyTorchJob served, neither, discovery forbidden.
"""

from __future__ import annotations

import pytest
from kube_fakes import NS, FakeClock, ScriptedHTTP, make_spec, status_error
from pytorchjob_fakes import job_state as pytorchjob_state
from trainjob_fakes import COMPLETE
from trainjob_fakes import job_state as trainjob_state

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.launchers import get_launcher
from kfp_yolo.components.launchers.auto import AutoLauncher
from kfp_yolo.components.launchers.cluster import Owner

TRAINER_API = "/apis/trainer.kubeflow.org/v1alpha1"
KUBEFLOW_API = "/apis/kubeflow.org/v1"
NOT_FOUND = status_error(404, "NotFound", "the server could not find the requested resource")


def resources(group_version: str, *entries: tuple[str, str, bool]) -> tuple[int, dict]:
    return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                 "resources": [{"name": name, "singularName": "", "namespaced": namespaced,
                                "kind": kind, "verbs": ["create", "delete", "get", "list"]}
                               for name, kind, namespaced in entries]}


TRAINER_SERVED = resources("trainer.kubeflow.org/v1alpha1",
                           ("clustertrainingruntimes", "ClusterTrainingRuntime", False),
                           ("trainjobs", "TrainJob", True), ("trainjobs/status", "TrainJob", True))
PYTORCH_SERVED = resources("kubeflow.org/v1", ("pytorchjobs", "PyTorchJob", True),
                           ("pytorchjobs/status", "PyTorchJob", True))


def make_auto(routes: dict, **changes):
    from kubernetes import client

    http = ScriptedHTTP({
        ("GET", rf"/api/v1/namespaces/{NS}/events"): [(200, {"kind": "EventList", "items": []})],
        ("GET", rf"/api/v1/namespaces/{NS}/pods"): [(200, {"kind": "PodList", "items": []})],
        ("GET", rf"/api/v1/namespaces/{NS}/pods/[^/]+/log"): [(200, "")],
        **routes})
    api = client.ApiClient(client.Configuration(host="http://kube.test"))
    api.rest_client.pool_manager = http
    clock, lines = FakeClock(), []
    values = dict(namespace=NS, queue="kfp-yolo", poll_interval_s=10,
                  tolerations=({"key": "nvidia.com/gpu", "operator": "Exists",
                                "effect": "NoSchedule"},),
                  owner=Owner(name="step-pod", uid="1234-abcd", namespace=NS))
    values.update(changes)
    launcher = get_launcher("auto", api_client=api, out=lines.append, clock=clock,
                            sleep=clock.sleep, **values)
    assert isinstance(launcher, AutoLauncher)
    return launcher, http, lines


def discovery_calls(http: ScriptedHTTP) -> list[str]:
    return [path for method, path, _, _ in http.calls if path in (TRAINER_API, KUBEFLOW_API)]


def test_a_cluster_that_serves_trainjob_gets_a_trainjob():
    jobs = rf"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NS}/trainjobs"
    launcher, http, lines = make_auto({
        ("GET", TRAINER_API): [TRAINER_SERVED],
        ("GET", KUBEFLOW_API): [PYTORCH_SERVED],
        ("POST", jobs): [(201, {})],
        ("GET", jobs + "/exp-1"): [trainjob_state(COMPLETE)],
    })
    launcher.launch(make_spec())
    assert launcher.kind == "TrainJob"
    chosen = [line for line in lines if line.startswith("launcher auto")]
    assert chosen == ["launcher auto: the API server serves TrainJob "
                      "(trainer.kubeflow.org/v1alpha1); using TrainJob"]
    (post,) = http.methods("POST")
    assert post[1] == jobs and post[3]["kind"] == "TrainJob"
    # The plan step's placement reached the job.
    (patch,) = post[3]["spec"]["runtimePatches"]
    pod = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]
    assert pod["spec"]["template"]["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert discovery_calls(http) == [TRAINER_API]  # the preferred kind answered: asked once


def test_a_cluster_with_only_the_training_operator_gets_a_pytorchjob():
    jobs = rf"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs"
    launcher, http, lines = make_auto({
        ("GET", TRAINER_API): [NOT_FOUND],
        ("GET", KUBEFLOW_API): [PYTORCH_SERVED],
        ("POST", jobs): [(201, {})],
        ("GET", jobs + "/exp-1"): [pytorchjob_state(("Succeeded", "PyTorchJobSucceeded", "ok"))],
    }, priority_class="high")  # allowed on a PyTorchJob
    assert launcher.kind == "PyTorchJob"
    launcher.launch(make_spec())
    chosen = [line for line in lines if line.startswith("launcher auto")]
    assert chosen == ["launcher auto: the API server serves PyTorchJob (kubeflow.org/v1), not "
                      "TrainJob (trainer.kubeflow.org/v1alpha1); using PyTorchJob"]
    (post,) = http.methods("POST")
    assert post[1] == jobs and post[3]["kind"] == "PyTorchJob"
    assert discovery_calls(http) == [TRAINER_API, KUBEFLOW_API]  # kind was asked once


def test_a_trainer_group_without_trainjobs_does_not_count():
    jobs = rf"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs"
    launcher, http, _ = make_auto({
        ("GET", TRAINER_API): [resources("trainer.kubeflow.org/v1alpha1",
                                         ("trainingruntimes", "TrainingRuntime", True))],
        ("GET", KUBEFLOW_API): [PYTORCH_SERVED],
        ("POST", jobs): [(201, {})],
        ("GET", jobs + "/exp-1"): [pytorchjob_state(("Succeeded", "PyTorchJobSucceeded", "ok"))],
    })
    launcher.launch(make_spec())
    assert launcher.kind == "PyTorchJob"


def test_neither_kind_served_is_one_sentence_and_exit_2():
    launcher, http, lines = make_auto({("GET", TRAINER_API): [NOT_FOUND],
                                       ("GET", KUBEFLOW_API): [NOT_FOUND]})
    with pytest.raises(UserError) as err:
        launcher.launch(make_spec())
    assert err.value.exit_code == 2
    assert str(err.value) == (
        "launcher auto: the API server at http://kube.test serves neither TrainJob "
        "(trainer.kubeflow.org/v1alpha1 trainjobs) nor PyTorchJob (kubeflow.org/v1 pytorchjobs); "
        "install Kubeflow Trainer v2.3 (k8s/README.md) or set launcher: local.")
    assert not http.methods("POST") and not lines


def test_forbidden_discovery_names_the_clusterrole():
    launcher, http, _ = make_auto({("GET", TRAINER_API): [status_error(
        403, "Forbidden", 'forbidden: User "system:anonymous" cannot get path '
                          '"/apis/trainer.kubeflow.org/v1alpha1"')]})
    with pytest.raises(UserError, match=r"may not get /apis/trainer.kubeflow.org/v1alpha1 \(API "
                                        r"discovery, which the built-in ClusterRole "
                                        r"system:discovery grants"):
        launcher.launch(make_spec())
    assert not http.methods("POST")


def test_bad_settings_fail_before_the_api_server_is_asked():
    http = ScriptedHTTP({})
    with pytest.raises(UserError, match=r"unknown auto launcher setting\(s\) \['gpus'\]"):
        get_launcher("auto", api_client=http, gpus=4)
    with pytest.raises(UserError, match=r"unknown auto launcher setting\(s\) \['pool'\]"):
        get_launcher("auto", api_client=http, pool="l4-24g")  # placement is the plan step's
    assert not http.calls


def test_every_launcher_says_its_kind():
    assert get_launcher("local").kind == "local"
    assert get_launcher("pytorchjob", api_client=object(), owner=None).kind == "PyTorchJob"
    assert get_launcher("trainjob", api_client=object(), owner=None).kind == "TrainJob"
    with pytest.raises(ValueError, match="use one of local, pytorchjob, trainjob, auto"):
        get_launcher("mpijob")
