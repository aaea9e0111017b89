"""A version is finished when its complete marker lists its files and they are there with the
recorded sizes and sha256 (issue #26): promote, serve render, deploy and the champion lookup
refuse one with a missing or changed file, in one sentence naming it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.pools import catalog_json
from kfp_yolo.components.release.publish import COMPLETE, publish, read_latest, verify_version
from kfp_yolo.components.steps import deploy_component
from kfp_yolo.pipelines.cli import main


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "registry"
    (tmp_path / "best.pt").write_bytes(b"weights" * 100)
    (tmp_path / "model.onnx").write_bytes(b"onnx" * 100)
    triton = tmp_path / "triton" / "shapes" / "1"
    triton.mkdir(parents=True)
    (triton.parent / "config.pbtxt").write_text('name: "shapes"\nplatform: "onnxruntime_onnx"\n')
    (triton / "model.onnx").write_bytes(b"onnx" * 100)
    for version in ("v1", "v2"):
        publish(registry_uri=str(root), name="shapes", version=version,
                files={"best.pt": tmp_path / "best.pt", "model.onnx": tmp_path / "model.onnx"},
                folders={"triton": tmp_path / "triton"}, metadata={"metrics": {"mAP50-95": 0.5}})
    return root


def _cli(capsys, *argv: str, registry: Path) -> tuple[int, str]:
    code = main([*argv, "--set", f"registry_uri={registry}", "--set", "name=shapes"])
    return code, capsys.readouterr().err


def test_the_marker_lists_every_file_with_its_size_and_sha256(registry):
    version = registry / "shapes" / "v2"
    files = json.loads((version / COMPLETE).read_text())["files"]
    assert set(files) == {"best.pt", "model.onnx", "README.md", "triton/shapes/config.pbtxt",
                          "triton/shapes/1/model.onnx"}
    for name, recorded in files.items():
        data = (version / name).read_bytes()
        assert recorded == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    verify_version(str(version))


def test_a_version_missing_a_file_is_refused_by_promote_serve_deploy_and_champion(registry,
                                                                                  capsys):
    v1 = registry / "shapes" / "v1"
    (v1 / "model.onnx").unlink()
    shutil.rmtree(v1 / "triton")
    sentence = f"{v1} is not complete: model.onnx is missing ({COMPLETE} lists it)"

    code, err = _cli(capsys, "promote", "v1", registry=registry)
    assert code == 2 and sentence in err and err.count("\n") == 1
    assert read_latest(str(registry), "shapes")["version"] == "v2"  # latest did not move

    code, err = _cli(capsys, "serve", "render", "--version", "v1", registry=registry)
    assert code == 2 and sentence in err

    with pytest.raises(UserError, match="model.onnx is missing"):
        deploy_component(str(v1), "shapes", "team-a", "25.08-py3", "onnx", "sa", 0, 60,
                         catalog_json())


def test_a_changed_file_is_named_and_latest_naming_it_is_refused(registry, capsys):
    v2 = registry / "shapes" / "v2"
    data = bytearray((v2 / "best.pt").read_bytes())
    data[0] ^= 1  # same size, other content
    (v2 / "best.pt").write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"v2 is not intact: best.pt changed after publishing "
                                        r"\(700 bytes, sha256 [0-9a-f]{12}\.\.\., complete.json "
                                        r"records 700 bytes"):
        read_latest(str(registry), "shapes")  # the champion lookup and `serve render`
    code, err = _cli(capsys, "serve", "render", registry=registry)
    assert code == 2 and "best.pt changed after publishing" in err
    assert _cli(capsys, "promote", "v1", registry=registry)[0] == 0  # an intact one: fine


def test_a_version_without_a_marker_is_not_finished(registry, capsys):
    (registry / "shapes" / "v1" / COMPLETE).unlink()
    code, err = _cli(capsys, "promote", "v1", registry=registry)
    assert code == 2 and f"has no {COMPLETE}" in err
