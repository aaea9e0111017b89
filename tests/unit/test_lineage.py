"""Lineage records and `kfp-yolo lineage` on a registry that `publish` writes (a folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfp_yolo.components.release.lineage import (
    LINEAGE_FILE,
    build_lineage,
    canonical_hash,
    flat_lineage,
    mask_uri,
)
from kfp_yolo.components.release.publish import publish
from kfp_yolo.pipelines.cli import main

SHA = "ab" * 32


def _publish(registry: Path, tmp_path: Path, parent: dict, tag: str) -> str:
    weights = tmp_path / f"{tag}.pt"
    weights.write_bytes(tag.encode())
    lineage = build_lineage(dataset_uri=f"s3://user:secret@data/{tag}", dataset_hash=SHA,
                            parent=parent, name="shapes", config={"epochs": 3, "name": "shapes"},
                            image="ghcr.io/kfp-yolo/kfp-yolo:0.1.0")
    record = tmp_path / f"{tag}.json"
    record.write_text(json.dumps(lineage))
    uri = publish(registry_uri=str(registry), name="shapes", version=f"v{tag}",
                  files={"best.pt": weights, LINEAGE_FILE: record}, metadata={},
                  lineage=lineage)
    return uri.rsplit("/", 1)[-1]


def test_a_record_names_data_parent_config_package_and_image_without_secrets():
    record = build_lineage(dataset_uri="s3://key:secret@bucket/data", dataset_hash=SHA,
                           parent={"source": "registry:champion", "version": "v1",
                                   "uri": "s3://bucket/models/shapes/v1/best.pt", "sha256": SHA},
                           name="shapes", config={"b": 1, "a": "minio://k:s@x/y"}, image="img")
    assert record["dataset"] == {"uri": "s3://***@bucket/data", "content_hash": SHA}
    assert record["parent"] == {"kind": "registry", "source": "registry:champion",
                                "name": "shapes", "version": "v1",
                                "uri": "s3://bucket/models/shapes/v1/best.pt", "sha256": SHA}
    assert record["config"]["values"] == {"a": "minio://***@x/y", "b": 1}
    assert record["config"]["sha256"] == canonical_hash({"b": 1, "a": "minio://***@x/y"})
    assert record["package"]["ultralytics"] == "8.4.190" and record["image"] == "img"
    assert "secret" not in json.dumps(record)
    flat = flat_lineage(record)
    assert flat["lineage.parent"] == "v1" and flat["lineage.dataset_hash"] == SHA
    assert set(flat_lineage(record, sep="_")) == {k.replace(".", "_", 1) for k in flat}


def test_the_parent_kind_says_scratch_file_or_registry():
    kind = lambda parent: build_lineage(dataset_uri="d", dataset_hash="", parent=parent,  # noqa: E731
                                        name="n", config={}, image="i")["parent"]["kind"]
    assert kind({"source": "yolov5n.yaml"}) == "scratch"
    assert kind({"source": "s3://b/m.pt", "uri": "s3://b/m.pt", "sha256": SHA}) == "file"
    assert kind({"source": "yolov5nu.pt"}) == "file"  # shipped by name, in the image
    assert kind({"source": "registry:latest", "version": "v1", "sha256": SHA}) == "registry"
    assert mask_uri("https://u:p@h/x") == "https://***@h/x" and mask_uri("/a@b") == "/a@b"


def test_lineage_prints_the_chain_back_to_the_version_trained_from_scratch(tmp_path, capsys):
    registry = tmp_path / "registry"
    first = _publish(registry, tmp_path, {"source": "yolov5n.yaml"}, "1")
    second = _publish(registry, tmp_path, {"source": "registry:champion", "version": first,
                                           "uri": "u", "sha256": SHA}, "2")
    third = _publish(registry, tmp_path, {"source": f"registry:{second}", "version": second,
                                          "uri": "u", "sha256": SHA}, "3")
    keys = ["--set", f"registry_uri={registry}", "--set", "name=shapes"]
    assert main(["lineage", *keys, "latest", "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)
    assert [link["version"] for link in chain] == [third, second, first]
    assert [link["lineage"]["parent"]["kind"] for link in chain] == ["registry", "registry",
                                                                      "scratch"]
    assert main(["lineage", *keys, second]) == 0
    text = capsys.readouterr().out
    assert f"fine-tuned from version {first} (sha256 {SHA[:12]})" in text
    assert "trained from scratch (yolov5n.yaml)" in text and third not in text


def test_lineage_of_a_version_that_is_not_there_is_exit_2(tmp_path, capsys):
    assert main(["lineage", "--set", f"registry_uri={tmp_path}", "--set", "name=shapes",
                 "v9"]) == 2
    assert f"{tmp_path}/shapes/v9 is not a finished published version" in capsys.readouterr().err


def test_the_published_version_holds_its_lineage_json(tmp_path):
    registry = tmp_path / "registry"
    version = _publish(registry, tmp_path, {"source": "yolov5n.yaml"}, "1")
    record = json.loads((registry / "shapes" / version / LINEAGE_FILE).read_text())
    assert record["parent"]["kind"] == "scratch"


@pytest.mark.parametrize("tags", ["mlflow", "kubeflow"])
def test_registries_record_the_lineage(tags):
    from kfp_yolo.components.registries import Release

    record = build_lineage(dataset_uri="s3://b/d", dataset_hash=SHA, parent={"source": "y.yaml"},
                           name="n", config={}, image="i")
    release = Release(name="n", version="v", uri="u", serving_uri="", lineage=record)
    if tags == "mlflow":
        from kfp_yolo.components.registries.mlflow_registry import _tags

        assert _tags(release)["lineage.dataset_hash"] == SHA
    else:
        from kfp_yolo.components.registries.kubeflow_registry import KubeflowModelRegistry

        metadata = KubeflowModelRegistry._metadata(object.__new__(KubeflowModelRegistry),
                                                   release)
        assert metadata["lineage_dataset_hash"] == SHA
        assert metadata["lineage_parent_kind"] == "scratch"
