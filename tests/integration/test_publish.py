"""publish: the registry layout, `latest` written last, and a failed publish leaving it alone."""

from __future__ import annotations

import datetime
import json
import re
import threading
import time
from pathlib import Path

import pytest

from kfp_yolo.components import storage
from kfp_yolo.components.atomic import PART_SUFFIX
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.release.publish import LATEST, default_version, publish, read_latest
from kfp_yolo.components.steps import publish_component


def _inputs(root: Path, tag: str = "a", engine: bool = True) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = {"best.pt": b"weights-" + tag.encode(), "model.onnx": b"onnx-" + tag.encode(),
             "metrics.json": b'{"mAP50-95": 0.61}', "data.yaml": b"names: [a, b]\n"}
    if engine:
        files["model.engine"] = b"plan-" + tag.encode()
    for name, data in files.items():
        (root / name).write_bytes(data)
    return {name: root / name for name in files}


METADATA = {"metrics": {"mAP50-95": 0.612345, "mAP50": 0.9}, "model": "yolov5n.yaml",
            "training": {"epochs": 20, "imgsz": 128}}


def test_layout_and_model_card(tmp_path):
    registry = tmp_path / "registry"
    uri = publish(registry_uri=str(registry), name="shapes", version="v1",
                  files=_inputs(tmp_path / "in"), metadata=METADATA)

    assert uri == f"{registry}/shapes/v1"
    version_dir = registry / "shapes" / "v1"
    assert sorted(p.name for p in version_dir.iterdir()) == [
        "README.md", "best.pt", "complete.json", "data.yaml", "metrics.json", "model.engine",
        "model.onnx"]
    assert (version_dir / "best.pt").read_bytes() == b"weights-a"
    card = (version_dir / "README.md").read_text()
    assert card.startswith("# shapes v1\n")
    assert "| mAP50-95 | 0.6123 |" in card and "## Training" in card
    assert re.search(r"\| best.pt \| 9 \| `[0-9a-f]{64}` \|", card)
    latest = json.loads((registry / "shapes" / "latest").read_text())
    assert latest["version"] == "v1" and latest["uri"] == uri
    assert latest["metrics"]["mAP50-95"] == 0.612345
    assert read_latest(str(registry), "shapes") == latest
    assert not list((registry / "shapes").rglob(f"*{PART_SUFFIX}*"))  # no temporary file is left


def test_latest_is_written_last(tmp_path, monkeypatch):
    calls: list[str] = []
    real_upload, real_write = storage.upload, storage.write_bytes

    def upload(source, uri, **kwargs):
        calls.append(f"upload {uri}")
        return real_upload(source, uri, **kwargs)

    def write_bytes(uri, data, **kwargs):
        calls.append(f"write {uri}")
        return real_write(uri, data, **kwargs)

    monkeypatch.setattr(storage, "upload", upload)
    monkeypatch.setattr(storage, "write_bytes", write_bytes)
    registry = str(tmp_path / "registry")
    publish(registry_uri=registry, name="m", version="v1", files=_inputs(tmp_path / "in"),
            metadata=METADATA)

    assert calls == [f"upload {registry}/m/v1", f"write {registry}/m/latest"]


def test_failure_midway_keeps_latest_on_previous_version(tmp_path, monkeypatch):
    registry = str(tmp_path / "registry")
    publish(registry_uri=registry, name="m", version="v1", files=_inputs(tmp_path / "a"),
            metadata=METADATA)

    def broken_upload(source, uri, **kwargs):
        # Part of the version reaches the store, then the connection drops.
        target = storage.local_path(uri)
        target.mkdir(parents=True)
        (target / "best.pt").write_bytes(b"half")
        raise UserError(f"{uri}: talking to the store failed (ProtocolError).")

    monkeypatch.setattr(storage, "upload", broken_upload)
    with pytest.raises(UserError, match="talking to the store failed"):
        publish(registry_uri=registry, name="m", version="v2",
                files=_inputs(tmp_path / "b", tag="b"), metadata=METADATA)

    assert read_latest(registry, "m")["version"] == "v1"


def test_versions_are_never_overwritten(tmp_path):
    registry = str(tmp_path / "registry")
    files = _inputs(tmp_path / "in")
    publish(registry_uri=registry, name="m", version="v1", files=files, metadata={})
    with pytest.raises(UserError, match="already published"):
        publish(registry_uri=registry, name="m", version="v1",
                files=_inputs(tmp_path / "other", tag="b"), metadata={})
    with pytest.raises(UserError, match="already published"):
        publish(registry_uri=registry, name="m", version="v1", files=files,
                metadata={"metrics": {"mAP50-95": 0.1}})
    assert (Path(registry) / "m" / "v1" / "best.pt").read_bytes() == b"weights-a"


def test_the_same_publish_again_resumes_its_version(tmp_path, monkeypatch):
    # What a retry after a registry failure does: the same files and metadata, so the finished
    # version is registered and pointed at, and nothing is uploaded twice.
    registry = str(tmp_path / "registry")
    files = _inputs(tmp_path / "in")
    first = publish(registry_uri=registry, name="m", version="", files=files,
                    metadata=METADATA, champion=False)
    assert read_latest(registry, "m") is None  # not the champion: `latest` did not move
    uploads: list[str] = []
    monkeypatch.setattr(storage, "upload", lambda source, uri, **kw: uploads.append(uri))
    assert publish(registry_uri=registry, name="m", version="", files=files,
                   metadata=METADATA) == first
    assert publish(registry_uri=registry, name="m", version=first.rsplit("/", 1)[1],
                   files=files, metadata=METADATA) == first
    assert uploads == [] and read_latest(registry, "m")["uri"] == first
    # The same files with other metadata are another publish: a new version, no refusal.
    monkeypatch.undo()
    time.sleep(1.1)  # default names have a one-second clock: same files, same second, same name
    other = publish(registry_uri=registry, name="m", version="", files=files,
                    metadata={"metrics": {"mAP50-95": 0.2}})
    assert other != first and read_latest(registry, "m")["uri"] == other


def test_default_version_is_time_and_content_hash(tmp_path):
    registry = tmp_path / "registry"
    uri = publish(registry_uri=str(registry), name="m", version="", files=_inputs(tmp_path / "in"),
                  metadata={})
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", uri.rsplit("/", 1)[1])
    when = datetime.datetime(2026, 11, 4, 9, 30, 12, tzinfo=datetime.UTC)
    assert default_version({"best.pt": "00"}, when).startswith("20261104T093012Z-")
    assert default_version({"best.pt": "00"}, when) != default_version({"best.pt": "01"}, when)


def test_read_latest_none_when_nothing_published(tmp_path):
    assert read_latest(str(tmp_path / "registry"), "m") is None


@pytest.mark.parametrize("bad", [{"name": "a/b"}, {"version": "latest"}, {"registry_uri": ""}])
def test_bad_arguments_are_user_errors(tmp_path, bad):
    kwargs = {"registry_uri": str(tmp_path / "r"), "name": "m", "version": "v1",
              "files": _inputs(tmp_path / "in"), "metadata": {}, **bad}
    with pytest.raises(UserError):
        publish(**kwargs)


def _artifact(kind, path: Path, **metadata):
    artifact = kind(name=path.name, uri=str(path), metadata=metadata)
    path.mkdir(parents=True, exist_ok=True)
    return artifact


def test_component_collects_artifacts_and_skips_unbuilt_engine(tmp_path, monkeypatch):
    from kfp.dsl import Dataset, Metrics, Model
    from triton_checks import export, parse_config

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    inputs = _inputs(tmp_path / "src", engine=False)
    inputs["model.onnx"] = export(tmp_path / "export")  # the Triton config reads the real graph
    weights = _artifact(Model, tmp_path / "weights", epochs=3)
    onnx = _artifact(Model, tmp_path / "onnx", opset=17)
    engine = _artifact(Model, tmp_path / "engine", status="skipped")
    dataset = _artifact(Dataset, tmp_path / "dataset", images=8)
    metrics = Metrics(name="metrics", uri=str(tmp_path / "metrics"),
                      metadata={"mAP50-95": 0.7, "mAP50": 0.9})
    (tmp_path / "weights" / "best.pt").write_bytes(inputs["best.pt"].read_bytes())
    (tmp_path / "onnx" / "model.onnx").write_bytes(inputs["model.onnx"].read_bytes())
    (tmp_path / "dataset" / "data.yaml").write_bytes(inputs["data.yaml"].read_bytes())
    registry = tmp_path / "registry"

    uri = publish_component(weights, onnx, engine, dataset, metrics, str(registry), "m", "v3")

    assert uri == f"{registry}/m/v3"
    published = {p.name for p in (registry / "m" / "v3").iterdir()}
    assert published == {"README.md", "best.pt", "complete.json", "data.yaml", "lineage.json",
                         "metrics.json", "model.onnx", "triton"}
    # the end-to-end model and the raw detector; no TensorRT model: none was built
    triton = registry / "m" / "v3" / "triton"
    assert {model.name for model in triton.iterdir()} == {"m", "m-onnx"}
    model = triton / "m-onnx"
    assert parse_config(model / "config.pbtxt").name == "m-onnx"
    assert (model / "1" / "model.onnx").read_bytes() == inputs["model.onnx"].read_bytes()
    assert json.loads((registry / "m" / "v3" / "metrics.json").read_text())["mAP50-95"] == 0.7
    assert publish_component(weights, onnx, engine, dataset, metrics, "", "m", "") == ""


def test_component_compiles_with_real_annotations():
    from kfp import dsl

    component = dsl.component(base_image="kfp-yolo:test", install_kfp_package=False)(
        publish_component)
    inputs = component.component_spec.inputs
    assert inputs["weights"].type == "system.Model@0.0.1"
    assert inputs["metrics"].type == "system.Metrics@0.0.1"
    assert publish_component.__annotations__["return"] is str


def test_publish_to_s3_and_read_latest(s3_env, s3_bucket, tmp_path):
    registry = f"s3://{s3_bucket}/publish-{tmp_path.name}"
    assert read_latest(registry, "m") is None
    publish(registry_uri=registry, name="m", version="v1", files=_inputs(tmp_path / "a"),
            metadata=METADATA)
    uri = publish(registry_uri=registry, name="m", version="v2",
                  files=_inputs(tmp_path / "b", tag="b"), metadata=METADATA)

    assert read_latest(registry, "m")["uri"] == uri
    assert "model.engine" in storage.list_prefix(uri)
    storage.download(uri, tmp_path / "fetched")
    assert (tmp_path / "fetched" / "best.pt").read_bytes() == b"weights-b"


def test_interrupted_s3_publish_stays_invisible_and_a_retry_replaces_it(s3_env, s3_bucket,
                                                                      tmp_path, monkeypatch):
    from minio import Minio

    from kfp_yolo.components.storage import errors as s3errors
    from kfp_yolo.components.storage.errors import StorageFault

    monkeypatch.setattr(s3errors, "BACKOFF_S", 0.0)
    registry = f"s3://{s3_bucket}/interrupted-{tmp_path.name}"
    publish(registry_uri=registry, name="m", version="v1", files=_inputs(tmp_path / "a"),
            metadata=METADATA)
    real_put = Minio.fput_object
    started: list[str] = []
    landed: list[str] = []
    arrived = threading.Condition()

    def connection_drops_after_two_files(self, bucket, key, path, **kwargs):
        # Uploads run on a thread pool and the first failure halts the puts still running, so
        # the drop waits until two files have landed whole: then part of the version is there.
        with arrived:
            first_two = len(started) < 2
            started.append(key)
        if not first_two:
            with arrived:
                arrived.wait_for(lambda: len(landed) >= 2, timeout=60)
            raise ConnectionResetError(104, "Connection reset by peer")
        result = real_put(self, bucket, key, path, **kwargs)
        with arrived:
            landed.append(key)
            arrived.notify_all()
        return result

    monkeypatch.setattr(Minio, "fput_object", connection_drops_after_two_files)
    version_uri = f"{registry}/m/v2"
    with pytest.raises(StorageFault, match="kept dropping"):
        publish(registry_uri=registry, name="m", version="v2",
                files=_inputs(tmp_path / "b", tag="b"), metadata=METADATA)

    assert len(landed) == 2 and storage.exists(version_uri)  # part of it is there ...
    assert not storage.finished(version_uri)  # ... and it is not published
    assert read_latest(registry, "m")["version"] == "v1"
    # A pointer to the partial version (a hand edit, another tool) is refused, not followed.
    latest_uri = f"{registry}/m/{LATEST}"
    good_pointer = storage.read_bytes(latest_uri)
    storage.write_bytes(latest_uri, json.dumps({"version": "v2", "uri": version_uri}).encode())
    with pytest.raises(UserError, match="absent or only partly uploaded"):
        read_latest(registry, "m")
    storage.write_bytes(latest_uri, good_pointer)

    monkeypatch.setattr(Minio, "fput_object", real_put)
    uri = publish(registry_uri=registry, name="m", version="v2",
                  files=_inputs(tmp_path / "c", tag="c", engine=False), metadata=METADATA)

    assert uri == version_uri and read_latest(registry, "m")["version"] == "v2"
    assert storage.list_prefix(uri) == [  # replaced: no model.engine left from the first try
        "README.md", storage.MANIFEST_NAME, "best.pt", "complete.json", "data.yaml",
        "metrics.json", "model.onnx"]
    storage.download(uri, tmp_path / "fetched")
    assert (tmp_path / "fetched" / "best.pt").read_bytes() == b"weights-c"
    with pytest.raises(UserError, match="already published"):
        publish(registry_uri=registry, name="m", version="v2", files=_inputs(tmp_path / "c"),
                metadata=METADATA)


def test_interrupted_local_publish_leaves_nothing_and_a_retry_succeeds(tmp_path, monkeypatch):
    import shutil

    registry = tmp_path / "registry"
    publish(registry_uri=str(registry), name="m", version="v1", files=_inputs(tmp_path / "a"),
            metadata=METADATA)
    real_copytree, real_copy2 = shutil.copytree, shutil.copy2
    copied: list[str] = []

    def disk_fills_after_two_files(source, dest, **kwargs):
        if len(copied) >= 2:
            raise OSError(28, "No space left on device")
        copied.append(dest)
        return real_copy2(source, dest, **kwargs)

    monkeypatch.setattr(shutil, "copytree", lambda source, dest, **kwargs: real_copytree(
        source, dest, copy_function=disk_fills_after_two_files))
    with pytest.raises(OSError, match="No space left"):
        publish(registry_uri=str(registry), name="m", version="v2",
                files=_inputs(tmp_path / "b", tag="b"), metadata=METADATA)

    assert len(copied) == 2
    assert sorted(p.name for p in (registry / "m").iterdir()) == ["latest", "v1"]  # no leftovers
    assert read_latest(str(registry), "m")["version"] == "v1"
    monkeypatch.setattr(shutil, "copytree", real_copytree)
    publish(registry_uri=str(registry), name="m", version="v2",
            files=_inputs(tmp_path / "b", tag="b"), metadata=METADATA)
    assert read_latest(str(registry), "m")["version"] == "v2"
    assert (registry / "m" / "v2" / "best.pt").read_bytes() == b"weights-b"
