"""k8s/: every kustomization renders with the real kubectl and every object validates strictly.

Core kinds go through kubernetes-validate's strict schemas; custom resources through the CRD
schemas in tests/data/schemas with `additionalProperties: false` added wherever a schema lists
`properties` without saying otherwise, as `kubectl --validate=strict` treats unknown fields.
CEL rules (x-kubernetes-validations) are not evaluated here.
"""

from __future__ import annotations

import filecmp

import pytest
import yaml
from k8s_validation import (
    K8S,
    ROOT,
    kustomize,
    validate_core,
    validate_object,
)

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.pools import Pool, default_pools_path, load_pools
from kfp_yolo.components.k8s.quotas import render_quotas
from kfp_yolo.pipelines.cli import main as cli_main

KUSTOMIZATIONS = sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


# ---- the kustomizations ---------------------------------------------------------------------


def test_the_expected_kustomizations_exist():
    names = {str(path.relative_to(K8S)) for path in KUSTOMIZATIONS}
    assert {".", "quotas", "quotas/without-kueue", "gitops", "gitops/argocd", "trainer"} <= names


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_kustomization_renders_and_validates_strictly(folder):
    objects = kustomize(folder)
    assert objects
    for obj in objects:
        validate_object(obj)
        # Secret values never live in git: the README says how to create the Secret.
        assert obj["kind"] != "Secret"


def test_base_holds_the_catalog_and_least_privilege_rbac():
    objects = {(o["kind"], o["metadata"]["name"]): o for o in kustomize(K8S)}
    catalog = objects[("ConfigMap", "kfp-yolo-node-pools")]
    assert catalog["data"]["node-pools.yaml"] == (K8S / "node-pools.yaml").read_text()
    rules = objects[("Role", "kfp-yolo-launcher")]["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    job_verbs = ("create", "get", "list", "watch", "delete", "patch")
    assert granted == {("kubeflow.org", "pytorchjobs", v) for v in job_verbs} | {
        ("trainer.kubeflow.org", "trainjobs", v) for v in job_verbs} | {
        ("", "pods", "get"), ("", "pods", "list"), ("", "pods/log", "get"),
        ("", "events", "list")}
    binding = objects[("RoleBinding", "kfp-yolo-launcher")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kfp-yolo-pipeline",
                                    "namespace": "kubeflow-user"}]


def test_retraining_hook_submits_the_config_in_git_with_a_kfp_token():
    objects = {(o["kind"], o["metadata"]["name"].split("-train-config")[0]): o
               for o in kustomize(K8S / "gitops")}
    job = objects[("Job", "kfp-yolo-retrain")]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PostSync"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:4] == ["kfp-yolo", "submit", "--config", "/config/train.yaml"]
    assert "--retry-failed" in container["command"]  # a sync retries a config whose run failed
    env = {e["name"]: e.get("value") for e in container["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    token = volumes["kfp-token"]["projected"]["sources"][0]["serviceAccountToken"]
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["kfp-token"]
    assert env["KF_PIPELINES_SA_TOKEN_PATH"] == f"{mount}/{token['path']}"
    assert token["audience"] == "pipelines.kubeflow.org"
    config_map = objects[("ConfigMap", "kfp-yolo")]
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    # The config in git is one `kfp-yolo run --config` accepts.
    load_config(K8S / "gitops" / "train.yaml")
    assert config_map["data"]["train.yaml"] == (K8S / "gitops" / "train.yaml").read_text()


def pod_specs(obj: dict) -> list[dict]:
    """The pod specs of a workload: a Job's or Deployment's template, a training runtime's."""
    template = obj.get("spec", {}).get("template", {})
    if obj["kind"] == "ClusterTrainingRuntime":
        return [job["template"]["spec"]["template"]["spec"]
                for job in template["spec"]["replicatedJobs"]]
    return [template["spec"]] if "containers" in template.get("spec", {}) else []


def test_every_pod_runs_as_non_root_without_privilege():
    checked = set()
    for folder in KUSTOMIZATIONS:
        for obj in kustomize(folder):
            for pod in pod_specs(obj):
                checked.add(obj["kind"])
                _assert_non_root(pod)
    assert {"Job", "ClusterTrainingRuntime"} <= checked


def _assert_non_root(pod: dict) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert security["readOnlyRootFilesystem"] is True


def test_training_runtime_pods_are_valid_job_pods_with_a_memory_shm():
    (runtime,) = kustomize(K8S / "trainer")
    for job in runtime["spec"]["template"]["spec"]["replicatedJobs"]:
        # The CRD embeds a simplified pod schema; the API server checks the JobSet's Jobs fully.
        validate_core({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job["name"]},
                       "spec": job["template"]["spec"]})
        pod = job["template"]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        # A TrainJob's resourcesPerNode is merged over these key by key: a CPU limit here could
        # end up below the job's CPU request.
        assert "cpu" not in container["resources"].get("limits", {})


# Every framework name Kueue v0.19 knows (apis/config/v1beta2 Integrations.Frameworks, v0.19.2).
KUEUE_FRAMEWORKS = {
    "batch/job", "kubeflow.org/mpijob", "ray.io/rayjob", "ray.io/rayservice", "ray.io/raycluster",
    "jobset.x-k8s.io/jobset", "kubeflow.org/paddlejob", "kubeflow.org/pytorchjob",
    "kubeflow.org/tfjob", "kubeflow.org/xgboostjob", "kubeflow.org/jaxjob",
    "trainer.kubeflow.org/trainjob", "workload.codeflare.dev/appwrapper",
    "sparkoperator.k8s.io/sparkapplication", "pod", "deployment", "statefulset",
    "leaderworkerset.x-k8s.io/leaderworkerset"}


def test_kueue_configuration_example_admits_both_job_kinds():
    config = yaml.safe_load((K8S / "examples" / "kueue-configuration.yaml").read_text())
    assert (config["apiVersion"], config["kind"]) == ("config.kueue.x-k8s.io/v1beta2",
                                                      "Configuration")
    assert set(config) == {"apiVersion", "kind", "integrations"}
    frameworks = config["integrations"]["frameworks"]
    assert len(frameworks) == len(set(frameworks)) and set(frameworks) <= KUEUE_FRAMEWORKS
    assert {"trainer.kubeflow.org/trainjob", "kubeflow.org/pytorchjob"} <= set(frameworks)
    # TrainJob runs a JobSet; Kueue skips a JobSet a managed TrainJob owns, but needs the kind.
    assert "jobset.x-k8s.io/jobset" in frameworks


def test_argocd_application_syncs_the_base_and_the_overlay():
    (app,) = kustomize(K8S / "gitops" / "argocd")
    assert [s["path"] for s in app["spec"]["sources"]] == ["k8s", "k8s/gitops"]


# ---- quotas ---------------------------------------------------------------------------------


def test_k8s_quotas_is_what_the_command_renders_now(tmp_path):
    """Golden: after a catalog change, run `kfp-yolo quotas -o k8s/quotas`."""
    assert cli_main(["quotas", "-o", str(tmp_path)]) == 0
    ours = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    checked_in = sorted(p.relative_to(K8S / "quotas")
                        for p in (K8S / "quotas").rglob("*") if p.is_file())
    assert ours == checked_in
    stale = [str(p) for p in ours if not filecmp.cmp(tmp_path / p, K8S / "quotas" / p,
                                                     shallow=False)]
    assert not stale, f"k8s/quotas is stale ({stale}); run `kfp-yolo quotas -o k8s/quotas`"


def test_quotas_printed_are_the_same_objects(capsys):
    assert cli_main(["quotas", "--namespace", "team-a"]) == 0
    objects = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert objects == render_quotas(load_pools(), namespace="team-a")


def test_one_flavor_per_memory_class_with_its_label_and_quota():
    pools = load_pools()
    objects = render_quotas(pools, namespace="team-a")
    flavors = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ResourceFlavor"}
    (queue,) = [o for o in objects if o["kind"] == "ClusterQueue"]
    gpu_group = queue["spec"]["resourceGroups"][1]
    quotas = {f["name"]: f["resources"][0]["nominalQuota"] for f in gpu_group["flavors"]}
    for pool in pools:
        labels = flavors[pool.flavor]["spec"]["nodeLabels"]
        assert labels == {"nvidia.com/gpu.memory": str(pool.gpu_memory_mib)}
        assert quotas[pool.flavor] == pool.gpus_per_node * pool.max_nodes
    assert list(quotas) == [p.flavor for p in pools]  # smallest memory first
    assert queue["spec"]["cohortName"] == "kfp-yolo"
    (local,) = [o for o in objects if o["kind"] == "LocalQueue"]
    assert local["metadata"]["namespace"] == "team-a"
    (quota,) = [o for o in objects if o["kind"] == "ResourceQuota"]
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == str(sum(quotas.values()))
    for obj in objects:
        validate_object(obj)


def test_a_new_pool_gets_its_flavor_and_a_shared_class_adds_up():
    extra = [Pool(name="h200", gpu_product="NVIDIA-H200", gpu_memory_mib=143771, gpus_per_node=8,
                  max_nodes=1, flavor="gpu-141g"),
             Pool(name="t4-spot", gpu_product="Tesla-T4", gpu_memory_mib=15360, gpus_per_node=1,
                  max_nodes=4, flavor="gpu-16g")]
    objects = render_quotas([*load_pools(), *extra], namespace="team-a")
    (queue,) = [o for o in objects if o["kind"] == "ClusterQueue"]
    quotas = {f["name"]: f["resources"][0]["nominalQuota"]
              for f in queue["spec"]["resourceGroups"][1]["flavors"]}
    assert quotas["gpu-141g"] == 8 and quotas["gpu-16g"] == 8 + 4
    assert list(quotas)[-1] == "gpu-141g"


def test_a_flavor_with_two_memory_sizes_is_refused():
    pools = [Pool(name="a", gpu_product="x", gpu_memory_mib=1000, gpus_per_node=1, max_nodes=1,
                  flavor="f"),
             Pool(name="b", gpu_product="y", gpu_memory_mib=2000, gpus_per_node=1, max_nodes=1,
                  flavor="f")]
    with pytest.raises(UserError, match="pools sharing flavor 'f' must have one GPU memory size"):
        render_quotas(pools, namespace="team-a")


@pytest.mark.parametrize("command", [["plan", "--model", "yolov5n", "--imgsz", "128"],
                                     ["compile", "-o", "pipeline.yaml"], ["quotas"]])
def test_one_flavor_rule_for_plan_compile_and_quotas(tmp_path, capsys, monkeypatch, command):
    """Two pools sharing a flavor with different memory (issue #26): refused alike by all three,
    before anything is written, naming both pools."""
    from kfp_yolo.pipelines.cli import main

    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(default_pools_path().read_text())
    data["pools"][1]["flavor"] = data["pools"][0]["flavor"]
    data["pools"][1]["gpu_memory_mib"] = data["pools"][0]["gpu_memory_mib"] + 1024
    catalog = tmp_path / "pools.yaml"
    catalog.write_text(yaml.safe_dump(data))
    first, second = data["pools"][0], data["pools"][1]
    assert main([*command, "--pools", str(catalog)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"pools sharing flavor {first['flavor']!r} must have one GPU memory size" in line
    assert repr(first["name"]) in line and repr(second["name"]) in line
    assert not (tmp_path / "pipeline.yaml").exists()
