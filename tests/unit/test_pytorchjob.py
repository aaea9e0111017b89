"""The PyTorchJob launcher: the manifest against the CRD schema, the wait against a scripted API.

The API tests use a real kubernetes ApiClient and CustomObjectsApi/CoreV1Api; only the HTTP
transport under the client's REST layer (urllib3's pool manager) is replaced by a script that
answers each request in order and records it.
"""

from __future__ import annotations

import re

import pytest
from k8s_validation import crd_validator, validate_core
from kube_fakes import (
    AFFINITY,
    NS,
    TOLERATIONS,
    full_settings,
    make_spec,
    render,
    status_error,
)
from pytorchjob_fakes import (
    CREATED,
    JOB,
    JOBS,
    LOG,
    RUNNING,
    SUCCEEDED,
    job_state,
    make_launcher,
)

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.launchers.cluster import (
    ClusterSettings,
    Owner,
    job_name,
    owner_from_env,
)
from kfp_yolo.components.launchers.lifecycle import PyTorchJobLauncher
from kfp_yolo.components.launchers.pytorchjob import build_pytorchjob
from kfp_yolo.components.spec import TrainSpec

# ---- the manifest ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pytorchjob_schema():
    return crd_validator("kubeflow.org/v1", "PyTorchJob")


@pytest.mark.parametrize("spec, cluster", [
    (make_spec(), full_settings()),
    (make_spec(nodes=1, procs_per_node=1, device="cpu"), ClusterSettings()),
], ids=["multi-node-queued", "single-cpu-defaults"])
def test_rendered_job_validates_strictly(pytorchjob_schema, spec, cluster):
    job = build_pytorchjob(spec, cluster)
    errors = sorted(pytorchjob_schema.iter_errors(job), key=str)
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]
    # The CRD leaves metadata open; the API server checks it as ObjectMeta, and so do we.
    validate_core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": job["metadata"]})
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        validate_core({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                       "template": replica["template"]})


def test_strict_validation_rejects_an_unknown_field(pytorchjob_schema):
    job = build_pytorchjob(make_spec(), full_settings())
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["gpus"] = 1
    assert any("gpus" in e.message for e in pytorchjob_schema.iter_errors(job))


def test_job_has_master_workers_torchrun_and_gpus():
    spec = make_spec(nodes=3, procs_per_node=4)
    job = build_pytorchjob(spec, full_settings())
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 2
    assert job["spec"]["nprocPerNode"] == "4"
    pod = replicas["Worker"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "pytorch"
    assert container["command"] == ["python", "-m", "kfp_yolo.components.training.node"]
    args = container["args"]
    for flag in ("--nnodes=$(PET_NNODES)", "--nproc-per-node=$(PET_NPROC_PER_NODE)",
                 "--node-rank=$(PET_NODE_RANK)", "--master-addr=$(MASTER_ADDR)",
                 "--master-port=$(MASTER_PORT)"):
        assert flag in args
    assert args[args.index("-m") + 1] == "kfp_yolo.components.training.worker"
    assert TrainSpec.from_json(args[args.index("--spec") + 1].replace("$$", "$")) == spec
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "32Gi"}
    env = {e["name"]: e for e in container["env"]}
    assert env["YOLO_OFFLINE"]["value"] == "true" and env["YOLO_AUTOINSTALL"]["value"] == "false"
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "kfp-yolo-storage"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert env["YOLO_CONFIG_DIR"]["value"].startswith("/tmp/") and "/tmp" in mounts
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]} and pod["securityContext"]["runAsNonRoot"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == list(AFFINITY)
    assert pod["tolerations"] == list(TOLERATIONS) and pod["priorityClassName"] == "high"
    assert {r["restartPolicy"] for r in replicas.values()} == {"ExitCode"}


def test_job_metadata_queue_run_policy_and_owner():
    job = build_pytorchjob(make_spec(), full_settings())
    labels = job["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "kfp-yolo"
    assert labels["kueue.x-k8s.io/priority-class"] == "kfp-yolo-retraining"
    assert job["spec"]["runPolicy"] == {"cleanPodPolicy": "All", "ttlSecondsAfterFinished": 86400,
                                        "activeDeadlineSeconds": 604800, "backoffLimit": 3,
                                        "suspend": True}
    (ref,) = job["metadata"]["ownerReferences"]
    assert ref == {"apiVersion": "v1", "kind": "Pod", "name": "step-pod", "uid": "1234-abcd"}

    plain = build_pytorchjob(make_spec(), ClusterSettings(namespace=NS))
    assert "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"]
    assert "suspend" not in plain["spec"]["runPolicy"]


def test_owner_in_another_namespace_is_left_out():
    # The garbage collector would delete a job whose owner is in another namespace.
    cluster = full_settings(owner=Owner(name="p", uid="u", namespace="kubeflow"))
    assert "ownerReferences" not in build_pytorchjob(make_spec(), cluster)["metadata"]


def test_cpu_job_asks_for_no_gpu_and_escapes_dollars():
    job = build_pytorchjob(make_spec(device="cpu", nodes=1, run_id="a$(b)"), ClusterSettings())
    (container,) = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "Worker" not in job["spec"]["pytorchReplicaSpecs"]
    assert '"a$$(b)"' in container["args"][-1]


@pytest.mark.parametrize("run_id", ["exp-1", "Exp_1.final", "2026-retrain", "x" * 90])
def test_job_name_is_a_short_dns_label(run_id):
    name = job_name(run_id)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 40
    assert job_name("x" * 90) != job_name("x" * 91)


def test_settings_reject_a_bad_namespace_with_the_value():
    with pytest.raises(UserError, match=r"namespace='Team A' is invalid: a Kubernetes name"):
        ClusterSettings(namespace="Team A")


def test_owner_from_env_reads_the_downward_api():
    env = {"POD_NAME": "p", "POD_UID": "u", "POD_NAMESPACE": NS}
    assert owner_from_env(env) == Owner(name="p", uid="u", namespace=NS)
    assert owner_from_env({"POD_NAME": "p"}) is None


def test_the_plan_steps_placement_reaches_the_settings():
    from kfp_yolo.components.k8s.pools import node_affinity

    # What train_component passes: the plan's need (12,645 MiB for yolov5l amp) and the pool's
    # tolerations.
    launcher = PyTorchJobLauncher(api_client=object(), namespace=NS, owner=None,
                                  node_affinity=tuple(node_affinity(12645)),
                                  tolerations=TOLERATIONS)
    assert launcher.cluster.node_affinity == (
        {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["12644"]},)
    assert launcher.cluster.tolerations == TOLERATIONS


# ---- the launcher against a scripted API ----------------------------------------------------
















def test_success_streams_master_logs_and_deletes_nothing():
    launcher, http, lines = make_launcher({
        ("POST", JOBS): [(201, job_state()[1])],
        ("GET", JOB): [job_state(CREATED), job_state(CREATED, RUNNING),
                       job_state(CREATED, RUNNING), job_state(CREATED, SUCCEEDED)],
        ("GET", LOG): [status_error(400, "BadRequest", "container is waiting to start"),
                       (200, "2026-11-02T10:00:00.5Z epoch 1\n2026-11-02T10:00:01Z epoch 2\n"),
                       (200, "2026-11-02T10:00:01Z epoch 2\n2026-11-02T10:00:01.25Z epoch 3\n")],
    })
    launcher.launch(make_spec())
    assert [line for line in lines if line.startswith("epoch")] == ["epoch 1", "epoch 2",
                                                                     "epoch 3"]
    (post,) = http.methods("POST")
    assert post[3]["metadata"]["name"] == "exp-1" and post[3]["kind"] == "PyTorchJob"
    assert not http.methods("DELETE")
    assert any("succeeded" in line for line in lines)
    log_query = [call[2] for call in http.calls if call[1].endswith("/log")][0]
    assert log_query["container"] == "pytorch"


# ---- kfp-yolo job render --------------------------------------------------------------------




def test_job_render_prints_an_appliable_job(capsys, pytorchjob_schema):
    out, job = render(capsys, "--launcher", "pytorchjob", "--set", "nodes=2", "--set",
                      "procs_per_node=4", "--set", "batch=32", "--set", "queue=kfp-yolo",
                      "--set", "namespace=team-a")
    assert out.startswith("# PyTorchJob for config (built-in defaults); planned for pool ")
    assert not list(pytorchjob_schema.iter_errors(job))
    assert (job["metadata"]["name"], job["metadata"]["namespace"]) == ("demo", "team-a")
    args = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
    spec = TrainSpec.from_json(args[-1].replace("$$", "$"))
    assert spec.run_id == "demo" and spec.nodes == 2 and spec.batch == 32
    assert spec.dataset_uri == "minio://mlpipeline/v2/artifacts/demo/prepare-dataset/dataset"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "kfp-yolo"
    assert "&id" not in out and "*id" not in out  # Master and Worker spelled out, no aliases


@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_job_render_sets_the_configs_job_timeout(capsys, launcher):
    # the train step passes job_timeout_s as the job's deadline; the rendered job does too
    _, job = render(capsys, "--launcher", launcher, "--set", "job_timeout_s=3600")
    deadline = (job["spec"]["runPolicy"]["activeDeadlineSeconds"] if launcher == "pytorchjob"
                else job["spec"]["activeDeadlineSeconds"])
    assert deadline == 3600


def test_job_render_reports_a_bad_config_as_usage_error(capsys):
    from kfp_yolo.pipelines.cli import main

    assert main(["job", "render", "--set", "namespace=Team A"]) == 2
    assert "a Kubernetes name is 1-63 lower-case letters" in capsys.readouterr().err


