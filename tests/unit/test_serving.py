"""KServe: the InferenceService against KServe v0.20's CRD, `serve render`, the deploy step's
create/update/wait against a scripted API server, `promote`, and the RBAC that allows it.

As in test_pytorchjob.py, the API tests run the real kubernetes ApiClient; only urllib3's pool
manager under its REST layer answers from a script.
"""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from k8s_validation import K8S, crd_validator, kustomize, validate_core
from kube_fakes import FakeClock, ScriptedHTTP, status_error

from kfp_yolo.components.errors import JobFailed, UserError
from kfp_yolo.components.release.deploy import deploy_inferenceservice
from kfp_yolo.components.release.kserve import RUNTIME, ServingSettings, build_inferenceservice
from kfp_yolo.components.release.publish import publish, read_latest
from kfp_yolo.pipelines.cli import main

NS = "team-a"
URI = "s3://models/kfp-yolo/shapes/20261202T000000Z-1a2b3c4d/triton"
GPU_SETTINGS = ServingSettings(namespace=NS, runtime_version="25.08-py3",
                               service_account="kfp-yolo-serving", gpu_memory_mib=15360,
                               tolerations=({"key": "nvidia.com/gpu", "operator": "Exists",
                                             "effect": "NoSchedule"},))


@pytest.fixture(scope="module")
def isvc_schema():
    return crd_validator("serving.kserve.io/v1beta1", "InferenceService")


def _errors(schema, obj) -> list[str]:
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in schema.iter_errors(obj)]


# ---- the manifest ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [GPU_SETTINGS, ServingSettings(gpu_memory_mib=0)],
                         ids=["gpu", "cpu"])
def test_inferenceservice_validates_strictly(isvc_schema, settings):
    service = build_inferenceservice("shapes", "v1", URI, settings)
    assert not _errors(isvc_schema, service)
    validate_core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": service["metadata"]})
    predictor = service["spec"]["predictor"]
    # The CRD embeds a simplified pod; the pod KServe makes from it must be a valid one.
    container = {"name": "kserve-container", "image": "nvcr.io/nvidia/tritonserver:x",
                 "resources": predictor["model"]["resources"]}
    pod = {k: v for k, v in predictor.items() if k in ("serviceAccountName", "affinity",
                                                        "tolerations")}
    validate_core({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {**pod, "containers": [container]}})


def test_strict_validation_rejects_an_unknown_field(isvc_schema):
    service = build_inferenceservice("shapes", "v1", URI, GPU_SETTINGS)
    service["spec"]["predictor"]["model"]["gpus"] = 1
    assert any("gpus" in error for error in _errors(isvc_schema, service))


def test_triton_runtime_is_named_and_pinned_and_placed_by_gpu_memory():
    service = build_inferenceservice("shapes", "v7", URI, GPU_SETTINGS)
    predictor = service["spec"]["predictor"]
    model = predictor["model"]
    assert (model["runtime"], model["runtimeVersion"]) == (RUNTIME, "25.08-py3")
    assert model["storageUri"] == URI and model["protocolVersion"] == "v2"
    assert predictor["serviceAccountName"] == "kfp-yolo-serving"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    (term,) = predictor["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "nvidia.com/gpu.memory", "operator": "Gt",
                                         "values": ["15359"]}]
    assert predictor["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert service["metadata"]["annotations"]["kfp-yolo.io/version"] == "v7"
    # Only the chosen detector loads (a plan of another TensorRT must not stop the ONNX model),
    # with the end-to-end model that calls it.
    assert model["args"] == ["--model-control-mode=explicit", "--load-model=shapes-onnx",
                             "--load-model=shapes"]
    trt = build_inferenceservice("shapes", "v7", URI, ServingSettings(model_format="tensorrt"))
    assert trt["spec"]["predictor"]["model"]["args"][1:3] == ["--load-model=shapes-trt",
                                                              "--load-model=shapes"]
    cpu = build_inferenceservice("shapes", "v7", URI, ServingSettings(gpu_memory_mib=0))
    assert "affinity" not in cpu["spec"]["predictor"]
    assert "nvidia.com/gpu" not in json.dumps(cpu)


# ---- serve render ---------------------------------------------------------------------------


def _render(capsys, *argv: str) -> tuple[str, dict]:
    assert main(["serve", "render", *argv]) == 0
    out = capsys.readouterr().out
    return out, yaml.safe_load(out)


def test_serve_render_of_the_gitops_config(capsys, isvc_schema, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    out, service = _render(capsys, "--config", str(K8S / "gitops" / "train.yaml"))
    assert not _errors(isvc_schema, service)
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == "kserve-tritonserver" and model["runtimeVersion"]
    assert model["storageUri"] == "s3://models/kfp-yolo/retrain-shapes/VERSION/triton"
    assert "pass --version" in out.splitlines()[0]
    _, pinned = _render(capsys, "--config", str(K8S / "gitops" / "train.yaml"), "--version",
                        "v3", "--set", "serving_runtime_version=26.01-py3")
    assert pinned["spec"]["predictor"]["model"]["storageUri"].endswith("/retrain-shapes/v3/triton")
    assert pinned["spec"]["predictor"]["model"]["runtimeVersion"] == "26.01-py3"


def test_serve_render_follows_latest_of_a_readable_registry(capsys, tmp_path):
    registry = tmp_path / "registry"
    (tmp_path / "f").write_bytes(b"x")
    publish(registry_uri=str(registry), name="shapes", version="v5",
            files={"best.pt": tmp_path / "f"}, metadata={})
    _, service = _render(capsys, "--set", "registry_uri=minio://bucket/x", "--set",
                         "name=shapes", "--version", "v1")
    assert service["spec"]["predictor"]["model"]["storageUri"] == \
        "s3://bucket/x/shapes/v1/triton"  # KServe reads s3://, minio:// is our alias
    _, service = _render(capsys, "--set", f"registry_uri={registry}", "--set", "name=shapes")
    assert service["spec"]["predictor"]["model"]["storageUri"] == f"{registry}/shapes/v5/triton"
    # a version this registry does not have: one sentence, not a manifest that cannot load
    assert main(["serve", "render", "--set", f"registry_uri={registry}", "--set", "name=shapes",
                 "--version", "v4"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "shapes/v4 is not a finished published version; `kfp-yolo serve render --version` " \
           "takes one of the versions under" in line


def test_serve_render_without_a_registry_is_a_user_error(capsys):
    assert main(["serve", "render"]) == 2
    assert "registry_uri is empty" in capsys.readouterr().err


# ---- deploy against a scripted API server ---------------------------------------------------

ISVCS = rf"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"
ISVC = ISVCS + "/shapes"


def _state(generation: int = 1, observed: int = 1, ready: str = "True", **model_status) -> tuple:
    service = copy.deepcopy(build_inferenceservice("shapes", "v1", URI, GPU_SETTINGS))
    service["metadata"].update(generation=generation, resourceVersion="42")
    service["status"] = {"observedGeneration": observed, "url": "http://shapes.team-a.example",
                         "conditions": [{"type": "Ready", "status": ready,
                                         "reason": "" if ready == "True" else "RevisionMissing",
                                         "message": ""}]}
    if model_status:
        service["status"]["modelStatus"] = model_status
    return 200, service


def _deploy(routes: dict, timeout_s: float = 600):
    from kubernetes import client

    http = ScriptedHTTP(routes)
    api = client.ApiClient(client.Configuration(host="http://kube.test"))
    api.rest_client.pool_manager = http
    clock, lines = FakeClock(), []
    service = build_inferenceservice("shapes", "v1", URI, GPU_SETTINGS)
    try:
        url = deploy_inferenceservice(service, api_client=api, timeout_s=timeout_s, poll_s=5,
                                      clock=clock, sleep=clock.sleep, out=lines.append)
    except Exception as exc:  # noqa: BLE001 - the test inspects both outcomes
        return exc, http, lines
    return url, http, lines


NOT_FOUND = status_error(404, "NotFound", 'inferenceservices "shapes" not found')


def test_deploy_creates_and_waits_until_ready():
    url, http, lines = _deploy({
        ("GET", ISVC): [NOT_FOUND, _state(ready="False", observed=0), _state(ready="Unknown"),
                        _state()],
        ("POST", ISVCS): [_state(ready="Unknown", observed=0)]})
    assert url == "http://shapes.team-a.example"
    (create,) = http.methods("POST")
    assert create[3]["spec"]["predictor"]["model"]["storageUri"] == URI
    assert any("waiting" in line for line in lines) and "is Ready" in lines[-1]


def test_deploy_replaces_an_existing_service_with_its_resource_version():
    url, http, _ = _deploy({
        ("GET", ISVC): [_state(), _state(generation=2, observed=1), _state(generation=2,
                                                                          observed=2)],
        ("PUT", ISVC): [_state(generation=2, observed=1)]})
    assert url.startswith("http://")
    (replace,) = http.methods("PUT")
    assert replace[3]["metadata"]["resourceVersion"] == "42"
    assert not http.methods("POST")


def test_deploy_reads_again_when_the_service_changed_or_vanished_meanwhile():
    conflict = status_error(409, "Conflict", "the object has been modified")
    url, http, _ = _deploy({
        ("GET", ISVC): [_state(), _state(), NOT_FOUND, _state()],
        ("PUT", ISVC): [conflict, status_error(404, "NotFound", "gone")],
        ("POST", ISVCS): [_state()]})
    assert url.startswith("http://")
    assert len(http.methods("PUT")) == 2 and len(http.methods("POST")) == 1


def test_deploy_fails_with_the_models_own_reason():
    exc, _, _ = _deploy({
        ("GET", ISVC): [NOT_FOUND, _state(ready="False", transitionStatus="BlockedByFailedLoad",
                                          lastFailureInfo={"reason": "ModelLoadFailed",
                                                           "message": "plan built by TRT 11"})],
        ("POST", ISVCS): [_state(ready="Unknown", observed=0)]})
    assert isinstance(exc, JobFailed)
    assert "BlockedByFailedLoad: plan built by TRT 11" in str(exc)


def test_deploy_gives_up_at_its_deadline():
    exc, http, _ = _deploy({("GET", ISVC): [NOT_FOUND, _state(ready="False")],
                            ("POST", ISVCS): [_state(ready="Unknown", observed=0)]},
                           timeout_s=60)
    assert isinstance(exc, JobFailed) and "not Ready within 60 s" in str(exc)
    assert "RevisionMissing" in str(exc) and len(http.methods("GET")) < 20


def test_deploy_names_the_rbac_rule_and_a_missing_kserve():
    forbidden = status_error(403, "Forbidden", "cannot create inferenceservices")
    exc, _, _ = _deploy({("GET", ISVC): [NOT_FOUND], ("POST", ISVCS): [forbidden]})
    assert isinstance(exc, UserError) and "may not create" in str(exc)
    assert "kfp-yolo-deploy" in str(exc)
    missing = status_error(404, "NotFound", "the server could not find the requested resource")
    exc, _, _ = _deploy({("GET", ISVC): [missing], ("POST", ISVCS): [missing]})
    assert isinstance(exc, UserError) and "install KServe" in str(exc)


def test_the_step_service_account_may_deploy():
    objects = {(o["kind"], o["metadata"]["name"]): o for o in kustomize(K8S)}
    rules = objects[("Role", "kfp-yolo-deploy")]["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("serving.kserve.io", "inferenceservices", v)
                       for v in ("get", "create", "update")}
    binding = objects[("RoleBinding", "kfp-yolo-deploy")]
    assert binding["subjects"][0]["name"] == "kfp-yolo-pipeline"


# ---- promote --------------------------------------------------------------------------------


def test_promote_points_latest_at_an_earlier_version(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry = tmp_path / "registry"
    (tmp_path / "f").write_bytes(b"x")
    for version in ("v1", "v2"):
        publish(registry_uri=str(registry), name="shapes", version=version,
                files={"best.pt": tmp_path / "f"}, metadata={"metrics": {"mAP50-95": 0.5}})
    args = ["promote", "--set", f"registry_uri={registry}", "--set", "name=shapes"]
    assert main([*args, "v1"]) == 0
    assert "latest -> v1" in capsys.readouterr().out
    assert read_latest(str(registry), "shapes")["version"] == "v1"
    assert main([*args, "v3"]) == 2
    assert "is not a finished published version" in capsys.readouterr().err
    assert read_latest(str(registry), "shapes")["version"] == "v1"
    # a wrong version is named before any registry is asked: a dead one is not the error
    dead = ["--set", "model_registry_address=http://127.0.0.1:9"]
    assert main([*args, *dead, "v3"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("kfp-yolo: error: ") and "shapes/v3 is not a finished" in line


def test_deploy_step_refuses_a_tensorrt_model_that_was_not_built(tmp_path):
    from kfp_yolo.components.k8s.pools import catalog_json
    from kfp_yolo.components.steps import deploy_component

    triton = tmp_path / "triton" / "shapes"
    triton.mkdir(parents=True)
    (triton / "config.pbtxt").write_text('name: "shapes"')
    (tmp_path / "f").write_bytes(b"x")
    version = publish(registry_uri=str(tmp_path / "registry"), name="shapes", version="v1",
                      files={"best.pt": tmp_path / "f"}, folders={"triton": tmp_path / "triton"},
                      metadata={})
    with pytest.raises(UserError, match="has no tensorrt model .* set serving_format: onnx"):
        deploy_component(str(version), "shapes", NS, "25.08-py3", "tensorrt", "sa", 15360, 60,
                         catalog_json())
    assert deploy_component("", "shapes", NS, "25.08-py3", "onnx", "sa", 0, 60,
                            catalog_json()) == ""


def test_deploy_without_a_cluster_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    service = build_inferenceservice("shapes", "v1", URI, GPU_SETTINGS)
    with pytest.raises(UserError, match="needs a Kubernetes API server .* set deploy: none"):
        deploy_inferenceservice(service, timeout_s=1)


@pytest.mark.parametrize("item, says", [
    ("model_registry_address=model-registry:8080", "give the Model Registry's URL"),
    ("model_registry_address=http://mr:8080/api/model_registry/v1alpha3", "only scheme, host"),
    ("model_registry_token_path=token.txt", "absolute path of a mounted token file"),
    ("serving_runtime_version=24.08 py3", "Triton image tag"),
    ("serving_format=openvino", "'onnx' or 'tensorrt'"),
    ("serving_service_account=Serving_SA", "Kubernetes name"),
    ("serving_gpu_memory_mib=-1", "greater than or equal to 0"),
    ("deploy=seldon", "'none' or 'kserve'"),
])
def test_bad_serving_keys_are_one_sentence(capsys, item, says):
    assert main(["serve", "render", "--set", "registry_uri=/tmp/r", "--set", item]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"kfp-yolo: error: --set: {item.split('=')[0]}=") and says in line


def test_good_serving_keys_are_kept():
    from kfp_yolo.components.config.file import load_config

    cfg = load_config(None, ["model_registry_address=https://mr.example:8443/",
                             "deploy=kserve", "serving_format=tensorrt", "registry_uri=/tmp/r",
                             "serving_runtime_version=26.10-py3"])  # a tag not known to refuse
    assert cfg.model_registry_address == "https://mr.example:8443"
    assert (cfg.deploy, cfg.serving_format, cfg.deploy_timeout_s) == ("kserve", "tensorrt", 900)


@pytest.mark.parametrize("item, says", [
    ("deploy=kserve", "it serves the version publish writes, and publish needs registry_uri"),
    ("model_registry_address=http://mr:8080", "it registers the version publish writes"),
])
def test_release_keys_without_a_registry_uri_are_refused_at_load(item, says):
    """publish is skipped without registry_uri: deploy and the Model Registry would be too."""
    from kfp_yolo.components.config.file import load_config

    key = item.split("=")[0]
    with pytest.raises(UserError, match=rf"^--set: {key}=.* is invalid: {says}"):
        load_config(None, [item])
    assert load_config(None, [item, "registry_uri=s3://models/r"])
