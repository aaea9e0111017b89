"""Kubeflow Model Registry through the real `model-registry` client, against a loopback stand-in
that checks every request (path, method, query, token, body) against the OpenAPI spec.

The real server (Go + a database) does not run here: tests/modelregistry_standin.py says what
the stand-in checks and what it cannot.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from modelregistry_standin import SPEC_PATH, ModelRegistryStandIn

from kfp_yolo.components.errors import Fault, UserError
from kfp_yolo.components.registries import CHAMPION, RunSource
from kfp_yolo.components.registries.configured import open_registries
from kfp_yolo.components.release.publish import promote, publish, read_latest

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not SPEC_PATH.is_file(), reason=f"{SPEC_PATH} is absent")]

TOKEN = "test-token"
METRICS = {"mAP50-95": 0.61, "mAP50": 0.9}
SOURCE = RunSource(run_id="3f2c-run-id", run_name="retrain-shapes-x7k2p", namespace="team-a")


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def standin():
    with ModelRegistryStandIn(token=TOKEN) as server:
        yield server
    assert not server.violations, server.violations  # every request matched the spec


def _files(root: Path, tag: str, engine: bool = False) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    contents = {"best.pt": b"w-" + tag.encode(), "model.onnx": b"o-" + tag.encode(),
                "metrics.json": json.dumps(METRICS).encode()}
    if engine:
        contents["model.engine"] = b"plan-" + tag.encode()
    for name, data in contents.items():
        (root / name).write_bytes(data)
    return {name: root / name for name in contents}


def _triton(root: Path) -> Path:
    (root / "m" / "1").mkdir(parents=True, exist_ok=True)
    (root / "m" / "config.pbtxt").write_text('name: "m"\n')
    return root


def _publish(tmp_path, registry, registries, tag="a", version="", engine=False):
    return publish(registry_uri=registry, name="shapes", version=version,
                   files=_files(tmp_path / tag, tag, engine), metadata={"metrics": METRICS},
                   folders={"triton": _triton(tmp_path / f"triton-{tag}")},
                   registries=registries, source=SOURCE, dataset_hash="d" * 16,
                   tensorrt_version="11.4.0")


def _registries(standin, token_file, **kw):
    return open_registries(model_registry_address=standin.url,
                           model_registry_token_path=str(token_file),
                           storage_key="kfp-yolo-storage", **kw)


def test_publish_registers_model_version_and_artifacts(standin, token_file, tmp_path):
    registry = str(tmp_path / "registry")
    uri = _publish(tmp_path, registry, _registries(standin, token_file), engine=True)

    (model,) = standin.store["registered_models"].values()
    (version,) = standin.store["model_versions"].values()
    artifacts = {a["name"]: a for a in standin.store["model_artifacts"].values()}
    assert model["name"] == "shapes" and version["name"] == uri.rsplit("/", 1)[1]
    assert version["registeredModelId"] == model["id"]
    props = version["customProperties"]
    assert props["mAP50-95"] == {"double_value": 0.61, "metadataType": "MetadataDoubleValue"}
    assert props["dataset_hash"]["string_value"] == "d" * 16
    onnx, trt = artifacts["shapes"], artifacts["shapes-trt"]
    assert onnx["uri"] == trt["uri"] == f"{uri}/triton"
    assert (onnx["modelFormatName"], onnx["modelFormatVersion"]) == ("onnx", "1")
    assert (trt["modelFormatName"], trt["modelFormatVersion"]) == ("tensorrt", "11.4.0")
    assert onnx["storageKey"] == "kfp-yolo-storage"
    assert (onnx["modelSourceKind"], onnx["modelSourceClass"], onnx["modelSourceId"],
            onnx["modelSourceName"], onnx["modelSourceGroup"]) == (
        "kfp", "pipelinerun", SOURCE.run_id, SOURCE.run_name, "team-a")
    assert model["customProperties"][CHAMPION]["string_value"] == version["name"]
    assert read_latest(registry, "shapes")["uri"] == uri
    # The client really talked HTTP to it with the bearer token (the stand-in refuses others).
    assert "POST /api/model_registry/v1/registered_models" in standin.operations()


def test_a_retry_after_a_failure_midway_finishes_without_a_second_version(standin, token_file,
                                                                         tmp_path):
    registry = str(tmp_path / "registry")
    _publish(tmp_path, registry, [], tag="old", version="v0")
    standin.fail["upsertModelVersionArtifact"] = 503  # the version exists, its artifact not
    with pytest.raises(Fault, match=r"Kubeflow Model Registry at http://127.0.0.1:\d+ failed "
                                    r"\(ServiceException: HTTP 503 Service Unavailable: "
                                    r"injected failure\); `latest` was not moved"):
        _publish(tmp_path, registry, _registries(standin, token_file))
    assert read_latest(registry, "shapes")["version"] == "v0"
    assert len(standin.store["model_versions"]) == 1 and not standin.store["model_artifacts"]

    # The same files again (a KFP retry): the finished folder is resumed, not uploaded again.
    uri = _publish(tmp_path, registry, _registries(standin, token_file))

    assert len(standin.store["model_versions"]) == 1
    assert [a["name"] for a in standin.store["model_artifacts"].values()] == ["shapes"]
    assert read_latest(registry, "shapes")["uri"] == uri
    assert sorted(p.name for p in (tmp_path / "registry" / "shapes").iterdir()) == sorted([
        "latest", "v0", uri.rsplit("/", 1)[1]])
    _publish(tmp_path, registry, _registries(standin, token_file))  # a third time: a no-op
    assert len(standin.store["model_versions"]) == 1
    assert len(standin.store["model_artifacts"]) == 1


def test_promote_moves_the_champion_and_latest(standin, token_file, tmp_path):
    registry = str(tmp_path / "registry")
    registries = _registries(standin, token_file)
    _publish(tmp_path, registry, registries, tag="a", version="v1")
    _publish(tmp_path, registry, registries, tag="b", version="v2")
    (model,) = standin.store["registered_models"].values()
    assert model["customProperties"][CHAMPION]["string_value"] == "v2"

    pointer = promote(registry_uri=registry, name="shapes", version="v1", registries=registries)

    assert pointer["version"] == "v1" and read_latest(registry, "shapes")["version"] == "v1"
    assert model["customProperties"][CHAMPION]["string_value"] == "v1"
    with pytest.raises(UserError, match="not a finished published version"):
        promote(registry_uri=registry, name="shapes", version="v9", registries=registries)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_registry_down_is_one_sentence_and_latest_stays(tmp_path, token_file):
    registry = str(tmp_path / "registry")
    _publish(tmp_path, registry, [], version="v1")
    with pytest.raises(Fault) as caught:
        open_registries(model_registry_address=f"http://127.0.0.1:{_closed_port()}",
                        model_registry_token_path=str(token_file))
    assert "Kubeflow Model Registry at http://127.0.0.1:" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert read_latest(registry, "shapes")["version"] == "v1"


def test_a_hanging_registry_fails_in_bounded_time(standin, token_file):
    standin.hang_s = 3.0
    started = time.monotonic()
    with pytest.raises(Fault, match="TimeoutError"):
        _registries(standin, token_file, timeout_s=0.5)
    assert time.monotonic() - started < 3.0


def test_a_wrong_token_or_an_old_server_is_a_user_error(token_file, tmp_path):
    with ModelRegistryStandIn(token="another-token") as server:
        with pytest.raises(UserError, match="refused the token .*model_registry_token_path"):
            _registries(server, token_file)
    with ModelRegistryStandIn(token=TOKEN, serve_v1=False) as server:
        with pytest.raises(UserError, match="does not serve /api/model_registry/v1"):
            _registries(server, token_file)
    with pytest.raises(UserError, match="model_registry_token_path '/nonexistent/token'"):
        open_registries(model_registry_address="http://127.0.0.1:1",
                        model_registry_token_path="/nonexistent/token")


def test_the_standin_refuses_what_the_spec_does_not_allow():
    with ModelRegistryStandIn(token=TOKEN) as server:
        def call(method: str, path: str, body: dict | None = None) -> int:
            request = urllib.request.Request(
                server.url + path, method=method,
                data=json.dumps(body).encode() if body is not None else None,
                headers={"Authorization": f"Bearer {TOKEN}",
                         "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return answer.status
            except urllib.error.HTTPError as err:
                return err.code

        base = "/api/model_registry/v1alpha3"
        assert call("POST", f"{base}/registered_models", {"name": "ok"}) == 201
        assert call("POST", f"{base}/registered_models", {"nmae": "typo"}) == 400
        assert call("POST", f"{base}/model_versions", {"name": "v1",
                                                      "registeredModelId": "x"}) == 400
        assert call("GET", f"{base}/registered_model?colour=red") == 400
        assert call("DELETE", f"{base}/registered_models/1") == 400
        assert call("POST", f"{base}/model_versions/1/artifacts",
                    {"artifactType": "no-such-type", "name": "a"}) == 400
        assert len(server.violations) == 5


def test_no_token_at_all_is_one_logged_line_not_the_clients_warning(monkeypatch, caplog,
                                                                      recwarn):
    from model_registry._client import DEFAULT_K8S_SA_TOKEN_PATH

    from kfp_yolo.components.registries.kubeflow_registry import KubeflowModelRegistry

    if Path(DEFAULT_K8S_SA_TOKEN_PATH).exists():
        pytest.skip("this machine is a pod: the client finds its service-account token")
    monkeypatch.delenv("KF_PIPELINES_SA_TOKEN_PATH", raising=False)
    with ModelRegistryStandIn(token=None) as open_server:  # a registry that asks for none
        KubeflowModelRegistry(open_server.url)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
    (line,) = [r.getMessage() for r in caplog.records if "bearer token" in r.getMessage()]
    assert "model_registry_token_path is empty" in line
