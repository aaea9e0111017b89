"""publish and promote against a real `mlflow server` (sqlite, served artifacts) on loopback."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from kfp_yolo.components.errors import Fault
from kfp_yolo.components.registries import CHAMPION, RunSource
from kfp_yolo.components.registries.configured import open_registries
from kfp_yolo.components.registries.mlflow_registry import VERSION_TAG, MLflowRegistry
from kfp_yolo.components.release.publish import promote, publish, read_latest

pytestmark = pytest.mark.timeout(300)

METRICS = {"mAP50-95": 0.61, "mAP50": 0.9, "mAP50-95/circle": 0.7}


def _files(root: Path, tag: str) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    contents = {"best.pt": b"weights-" + tag.encode(), "model.onnx": b"onnx-" + tag.encode(),
                "data.yaml": b"names: [a]\n", "metrics.json": json.dumps(METRICS).encode()}
    for name, data in contents.items():
        (root / name).write_bytes(data)
    return {name: root / name for name in contents}


def _publish(tmp_path: Path, registry: str, tag: str, registries, version: str = "") -> str:
    return publish(registry_uri=registry, name="shapes", version=version,
                   files=_files(tmp_path / tag, tag), metadata={"metrics": METRICS},
                   registries=registries, dataset_hash="d" * 64,
                   source=RunSource(run_id="run-1", run_name="shapes-abc", namespace="team-a"))


def test_publish_registers_a_version_with_artifacts_tags_and_champion(mlflow_env, tmp_path):
    from mlflow.tracking import MlflowClient

    registries = open_registries(mlflow_tracking_uri=mlflow_env.uri)
    registry = str(tmp_path / "registry")
    first = _publish(tmp_path, registry, "a", registries, version="v1")
    second = _publish(tmp_path, registry, "b", registries, version="v2")

    client = MlflowClient(tracking_uri=mlflow_env.uri)
    versions = {v.tags[VERSION_TAG]: v for v in client.search_model_versions("name = 'shapes'")}
    assert set(versions) == {"v1", "v2"}
    v2 = versions["v2"]
    assert v2.tags["metric.mAP50-95"] == "0.61" and v2.tags["metric.mAP50-95/circle"] == "0.7"
    assert v2.tags["kfp_yolo.dataset_hash"] == "d" * 64 and v2.tags["kfp_yolo.uri"] == second
    assert v2.tags["kfp_yolo.format.onnx"] == "1" and v2.tags["kfp.namespace"] == "team-a"
    assert client.get_model_version_by_alias("shapes", CHAMPION).version == v2.version
    # The version's artifacts are the files themselves, downloadable from the server.
    import mlflow.artifacts

    fetched = Path(mlflow.artifacts.download_artifacts(artifact_uri=v2.source,
                                                       dst_path=str(tmp_path / "dl"),
                                                       tracking_uri=mlflow_env.uri))
    assert (fetched / "model.onnx").read_bytes() == b"onnx-b"
    assert (fetched / "best.pt").read_bytes() == b"weights-b"
    run = client.get_run(v2.run_id)
    assert run.data.metrics["mAP50-95"] == pytest.approx(0.61)

    promote(registry_uri=registry, name="shapes", version="v1", registries=registries)
    assert client.get_model_version_by_alias("shapes", CHAMPION).version == versions["v1"].version
    assert read_latest(registry, "shapes")["uri"] == first


def test_a_retried_registration_creates_no_second_version(mlflow_env, tmp_path):
    from mlflow.tracking import MlflowClient

    (mlflow,) = open_registries(mlflow_tracking_uri=mlflow_env.uri)
    registry = str(tmp_path / "registry")
    uri = _publish(tmp_path, registry, "c", [mlflow], version="r1")
    from kfp_yolo.components.release.publish import Release

    again = Release(name="shapes", version="r1", uri=uri, serving_uri="")
    mlflow.register(again, champion=True)
    client = MlflowClient(tracking_uri=mlflow_env.uri)
    found = client.search_model_versions(f"name = 'shapes' and tag.`{VERSION_TAG}` = 'r1'")
    assert len(found) == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mlflow_down_fails_the_publish_and_keeps_latest(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    registry = str(tmp_path / "registry")
    _publish(tmp_path, registry, "a", [], version="v1")
    down = MLflowRegistry(f"http://127.0.0.1:{_closed_port()}", run_id="")
    with pytest.raises(Fault, match=r"MLflow at http://127\.0\.0\.1:\d+ failed \(MlflowException: "
                                    r"cannot connect: Connection refused\); `latest` was "
                                    r"not moved"):
        _publish(tmp_path, registry, "b", [down])
    assert read_latest(registry, "shapes")["version"] == "v1"


def test_the_publish_step_registers_when_mlflow_tracking_uri_is_set(mlflow_env, tmp_path):
    from kfp.dsl import Dataset, Metrics, Model
    from mlflow.tracking import MlflowClient
    from triton_checks import export

    from kfp_yolo.components.steps import publish_component

    def artifact(kind, name, **metadata):
        (tmp_path / name).mkdir()
        return kind(name=name, uri=str(tmp_path / name), metadata=metadata)

    weights, onnx = artifact(Model, "weights"), artifact(Model, "onnx")
    engine = artifact(Model, "engine", status="skipped")
    dataset = artifact(Dataset, "dataset", content_hash="c" * 64)
    (tmp_path / "weights" / "best.pt").write_bytes(b"weights")
    export(tmp_path / "export").replace(tmp_path / "onnx" / "model.onnx")
    (tmp_path / "dataset" / "data.yaml").write_text("names: [a, b, c]\n")
    metrics = Metrics(name="metrics", uri=str(tmp_path / "m"), metadata={"mAP50-95": 0.7})

    uri = publish_component(weights, onnx, engine, dataset, metrics, str(tmp_path / "registry"),
                            "step-model", "", run_id="run-9", run_name="r", namespace="ns")

    client = MlflowClient(tracking_uri=mlflow_env.uri)
    champion = client.get_model_version_by_alias("step-model", CHAMPION)
    assert champion.tags[VERSION_TAG] == uri.rsplit("/", 1)[1]
    assert champion.tags["kfp_yolo.dataset_hash"] == "c" * 64
    assert champion.tags["kfp_yolo.serving_uri"] == f"{uri}/triton"
    assert champion.tags["kfp.run_id"] == "run-9"
