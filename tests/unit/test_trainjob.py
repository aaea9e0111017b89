"""The TrainJob launcher: its manifest against the Trainer v2.3.0 CRD, its wait against an API.

As in test_pytorchjob.py, the API tests run the real kubernetes ApiClient; only urllib3's pool
manager under its REST layer is replaced by a script that answers each request in order.
"""

from __future__ import annotations

import copy
import re

import pytest
from k8s_validation import K8S, crd_validator, kustomize, validate_core
from kube_fakes import (
    AFFINITY,
    NS,
    TOLERATIONS,
    full_settings,
    make_spec,
    render,
    status_error,
)
from trainjob_fakes import (
    COMPLETE,
    JOB,
    JOBS,
    NODE0,
    PODS,
    job_state,
    log_route,
    make_launcher,
    pods,
    settings,
)

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.launchers.cluster import ClusterSettings
from kfp_yolo.components.launchers.trainjob import PATCH_MANAGER, build_trainjob
from kfp_yolo.components.spec import TrainSpec


@pytest.fixture(scope="module")
def trainjob_schema():
    return crd_validator("trainer.kubeflow.org/v1alpha1", "TrainJob")


@pytest.fixture(scope="module")
def runtime() -> dict:
    (obj,) = kustomize(K8S / "trainer")
    return obj


def _merge(base: list[dict], patch: list[dict], key: str) -> list[dict]:
    merged = {item[key]: item for item in base}
    merged.update({item[key]: item for item in patch})
    return list(merged.values())


def node_pod_template(runtime: dict, job: dict) -> dict:
    """The pod template the trainer makes for `node` from the runtime, the job's trainer and our
    runtime patch (lists merged by their keys, as the strategic merge patch does)."""
    (rjob,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    template = copy.deepcopy(rjob["template"]["spec"]["template"])
    pod = template["spec"]
    (container,) = pod["containers"]
    trainer = job["spec"]["trainer"]
    container.update(image=trainer["image"], command=trainer["command"], args=trainer["args"])
    container["env"] = _merge(container.get("env", []), trainer["env"], "name")
    for part, values in trainer["resourcesPerNode"].items():
        container["resources"][part] = {**container["resources"].get(part, {}), **values}
    (patch,) = [p for p in job["spec"]["runtimePatches"] if p["manager"] == PATCH_MANAGER]
    (rpatch,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rpatch["name"] == rjob["name"]
    pod_patch = rpatch["template"]["spec"]["template"]
    template["metadata"]["labels"].update(pod_patch["metadata"]["labels"])
    spec_patch = pod_patch["spec"]
    for key in ("securityContext", "serviceAccountName", "affinity", "tolerations"):
        if key in spec_patch:
            pod[key] = spec_patch[key]
    pod["volumes"] = _merge(pod["volumes"], spec_patch["volumes"], "name")
    (container_patch,) = spec_patch["containers"]
    assert container_patch["name"] == container["name"] and "env" not in container_patch
    container["securityContext"] = container_patch["securityContext"]
    container["volumeMounts"] = _merge(container["volumeMounts"], container_patch["volumeMounts"],
                                       "mountPath")
    return template


# ---- the manifest ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec, cluster", [
    (make_spec(), settings()),
    (make_spec(nodes=1, procs_per_node=1, device="cpu"), ClusterSettings()),
], ids=["multi-node-queued", "single-cpu-defaults"])
def test_rendered_trainjob_validates_strictly(trainjob_schema, runtime, spec, cluster):
    job = build_trainjob(spec, cluster)
    errors = sorted(trainjob_schema.iter_errors(job), key=str)
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]
    validate_core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": job["metadata"]})
    # The pods the trainer makes from the runtime and this job are valid Job pods.
    template = node_pod_template(runtime, job)
    validate_core({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "exp-1-node-0"},
                   "spec": {"backoffLimit": 3, "template": template}})


def test_strict_validation_rejects_an_unknown_field(trainjob_schema):
    job = build_trainjob(make_spec(), settings())
    job["spec"]["trainer"]["gpus"] = 4
    assert any("gpus" in e.message for e in trainjob_schema.iter_errors(job))


def test_trainer_runs_torchrun_on_the_torch_runtimes_variables():
    spec = make_spec(nodes=3, procs_per_node=4)
    job = build_trainjob(spec, settings())
    trainer = job["spec"]["trainer"]
    assert job["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org",
                                         "kind": "ClusterTrainingRuntime", "name": "kfp-yolo"}
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 4)
    assert trainer["command"] == ["python", "-m", "kfp_yolo.components.training.node"]
    args = trainer["args"]
    for flag in ("--nnodes=$(PET_NNODES)", "--nproc-per-node=$(PET_NPROC_PER_NODE)",
                 "--node-rank=$(PET_NODE_RANK)", "--master-addr=$(PET_MASTER_ADDR)",
                 "--master-port=$(PET_MASTER_PORT)"):
        assert flag in args
    assert TrainSpec.from_json(args[args.index("--spec") + 1].replace("$$", "$")) == spec
    assert trainer["resourcesPerNode"] == {"requests": {"cpu": "4", "memory": "32Gi"},
                                           "limits": {"memory": "32Gi", "nvidia.com/gpu": 4}}
    env = {e["name"]: e for e in trainer["env"]}
    # The trainer refuses PET_* in trainer.env: it sets them itself.
    assert not [name for name in env if name.startswith("PET_")]
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "kfp-yolo-storage"


def test_placement_shm_and_security_go_through_one_runtime_patch(runtime):
    job = build_trainjob(make_spec(), settings(shm_size="16Gi", service_account="trainer"))
    (patch,) = job["spec"]["runtimePatches"]
    # The trainer's webhook wants a domain-prefixed path (k8s IsDomainPrefixedPath).
    host, _, path = patch["manager"].partition("/")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", host)
    assert re.fullmatch(r"[a-zA-Z0-9/\-._~%!$&'()*+,;=:]+", path)
    template = node_pod_template(runtime, job)
    pod = template["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == list(AFFINITY)
    assert pod["tolerations"] == list(TOLERATIONS)
    assert pod["serviceAccountName"] == "trainer"
    assert pod["securityContext"]["runAsNonRoot"] and not pod["automountServiceAccountToken"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert template["metadata"]["labels"]["kfp-yolo/run-id"] == "exp-1"


def test_trainjob_metadata_queue_suspend_deadline_and_owner():
    job = build_trainjob(make_spec(), settings())
    labels = job["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "kfp-yolo"
    assert labels["kueue.x-k8s.io/priority-class"] == "kfp-yolo-retraining"
    assert job["spec"]["suspend"] is True and job["spec"]["activeDeadlineSeconds"] == 604800
    (ref,) = job["metadata"]["ownerReferences"]
    assert ref == {"apiVersion": "v1", "kind": "Pod", "name": "step-pod", "uid": "1234-abcd"}
    plain = build_trainjob(make_spec(), ClusterSettings(namespace=NS, active_deadline_s=0))
    assert "suspend" not in plain["spec"] and "activeDeadlineSeconds" not in plain["spec"]
    assert "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"]


def test_cpu_job_asks_for_no_gpu():
    job = build_trainjob(make_spec(device="cpu", nodes=1, procs_per_node=2), ClusterSettings())
    assert "nvidia.com/gpu" not in job["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert job["spec"]["trainer"]["numProcPerNode"] == 2


def test_priority_class_is_refused_with_the_fix():
    with pytest.raises(UserError, match=r"priority_class='high' cannot be set on a TrainJob.*"
                                        r"k8s/trainer/runtime.yaml"):
        build_trainjob(make_spec(), full_settings())


def test_the_shipped_runtime_is_the_one_the_job_names(runtime):
    job = build_trainjob(make_spec(), settings())
    assert runtime["metadata"]["name"] == job["spec"]["runtimeRef"]["name"]
    assert "torch" in runtime["spec"]["mlPolicy"]
    (rjob,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == "node"
    labels = rjob["template"]["metadata"]["labels"]
    assert labels["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    assert [c["name"] for c in rjob["template"]["spec"]["template"]["spec"]["containers"]] == [
        "node"]


# ---- the launcher against a scripted API ----------------------------------------------------














def test_success_streams_node0_logs_and_deletes_nothing(trainjob_schema):
    launcher, http, lines = make_launcher({
        ("POST", JOBS): [(201, job_state()[1])],
        ("GET", JOB): [job_state(), job_state(ready=1), job_state(ready=1),
                       job_state(COMPLETE)],
        ("GET", PODS): [pods(), pods("exp-1-node-0-0-old", NODE0)],
        log_route(): [(200, "2026-11-02T10:00:00.5Z epoch 1\n2026-11-02T10:00:01Z epoch 2\n"),
                      (200, "2026-11-02T10:00:01Z epoch 2\n2026-11-02T10:00:01.25Z epoch 3\n")],
    })
    launcher.launch(make_spec())
    assert [line for line in lines if line.startswith("epoch")] == ["epoch 1", "epoch 2",
                                                                     "epoch 3"]
    (post,) = http.methods("POST")
    assert post[3]["kind"] == "TrainJob" and post[3]["metadata"]["name"] == "exp-1"
    assert not list(trainjob_schema.iter_errors(post[3]))
    assert not http.methods("DELETE")
    assert any("TrainJob team-a/exp-1 succeeded" in line for line in lines)
    selector = [c[2]["labelSelector"] for c in http.calls if c[1] == PODS][0]
    assert set(selector.split(",")) == {
        "jobset.sigs.k8s.io/jobset-name=exp-1", "jobset.sigs.k8s.io/replicatedjob-name=node",
        "jobset.sigs.k8s.io/job-index=0", "batch.kubernetes.io/job-completion-index=0"}
    log_queries = [c[2] for c in http.calls if c[1].endswith("/log")]
    assert log_queries and all(q["container"] == "node" for q in log_queries)


def test_the_log_follows_node0_to_its_new_pod():
    new = "exp-1-node-0-0-r3stx"
    launcher, http, lines = make_launcher({
        ("POST", JOBS): [(201, {})],
        ("GET", JOB): [job_state(ready=1)] * 3 + [job_state(COMPLETE)],
        ("GET", PODS): [pods(NODE0), pods(NODE0, new)],
        log_route(): [(200, "2026-11-02T10:00:00Z epoch 1\n"),
                      status_error(404, "NotFound", f'pods "{NODE0}" not found')],
        log_route(new): [(200, "2026-11-02T10:05:00Z epoch 2 (resumed)\n")],
    })
    launcher.launch(make_spec())
    assert [line for line in lines if line.startswith("epoch")] == ["epoch 1",
                                                                     "epoch 2 (resumed)"]


def test_a_missing_runtime_is_one_sentence():
    message = ('admission webhook "validator.trainjob.trainer.kubeflow.org" denied the request: '
               'spec.runtimeRef: Invalid value: ...: clustertrainingruntimes.trainer.kubeflow.org '
               '"kfp-yolo" not found: specified clusterTrainingRuntime must be created before the '
               'TrainJob is created')
    launcher, http, _ = make_launcher({("POST", JOBS): [status_error(422, "Invalid", message)]})
    with pytest.raises(UserError, match=r"the API server refused TrainJob team-a/exp-1: .*"
                                        r"must be created before the TrainJob"):
        launcher.launch(make_spec())
    assert not http.methods("DELETE")


def test_an_api_without_trainjobs_says_what_to_install():
    launcher, _, _ = make_launcher({("POST", JOBS): [
        status_error(404, "NotFound", "the server could not find the requested resource")]})
    with pytest.raises(UserError, match=r"answered 404 to creating TrainJob team-a/exp-1 .*"
                                        r"Kubeflow Trainer v2.3"):
        launcher.launch(make_spec())


# ---- kfp-yolo job render --launcher trainjob ------------------------------------------------


def test_job_render_prints_an_appliable_trainjob(capsys, trainjob_schema, runtime):
    out, job = render(capsys, "--launcher", "trainjob", "--set", "nodes=2", "--set",
                      "procs_per_node=4", "--set", "batch=32", "--set", "queue=kfp-yolo",
                      "--set", "namespace=team-a")
    first, _, third = out.splitlines()[:3]
    assert first.startswith("# TrainJob for config (built-in defaults); planned for pool ")
    assert third == "# Needs the ClusterTrainingRuntime 'kfp-yolo' (kubectl apply -k k8s/trainer)."
    assert not list(trainjob_schema.iter_errors(job))
    assert (job["metadata"]["name"], job["metadata"]["namespace"]) == ("demo", "team-a")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "kfp-yolo"
    spec = TrainSpec.from_json(job["spec"]["trainer"]["args"][-1].replace("$$", "$"))
    assert spec.run_id == "demo" and spec.nodes == 2 and spec.batch == 32
    assert job["spec"]["trainer"]["numNodes"] == 2
    pod = node_pod_template(runtime, job)["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["operator"] == "Gt"


def test_job_render_defaults_to_the_configs_kind_else_trainjob(capsys):
    _, job = render(capsys)
    assert job["kind"] == "TrainJob"  # the config's launcher is local: what auto prefers
    _, job = render(capsys, "--set", "launcher=pytorchjob")
    assert job["kind"] == "PyTorchJob"
