"""Fine-tuning through the whole DAG (`kfp-yolo run`, kfp.local) from a checkpoint on the S3 test
server (SeaweedFS) and then from the registry's champion, with the lineage each version records;
and the checkpoints and data that must be refused before any training step (exit 2)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from checkpoints import save_checkpoint

TINY = ["epochs=1", "imgsz=64", "batch=8", "workers=0", "min_map50_95=0", "name=tiny"]
DATA = "synthetic://shapes?images=32&imgsz=64"


def _run(workdir: Path, env: dict, *overrides: str) -> tuple[subprocess.CompletedProcess, str]:
    args = [sys.executable, "-m", "kfp_yolo.pipelines.cli", "run", "--workdir", str(workdir)]
    for item in [*TINY, *overrides]:
        args += ["--set", item]
    result = subprocess.run(args, capture_output=True, text=True, timeout=900,
                            env={**os.environ, **env})
    log = workdir / "run.log"
    return result, log.read_text(errors="replace") if log.exists() else ""


@pytest.fixture(scope="module")
def store(s3, s3_bucket, tmp_path_factory) -> dict:
    """A 5-class detection checkpoint, a segmentation one and a corrupt one on S3."""
    from kfp_yolo.components import storage

    local = tmp_path_factory.mktemp("checkpoints")
    settings = s3.settings()
    root = f"s3://{s3_bucket}/warm-start"
    base = save_checkpoint(local / "base.pt", names=("a", "b", "c", "d", "e"))
    uploads = {"base": base, "seg": save_checkpoint(local / "seg.pt", yaml="yolov8n-seg.yaml")}
    (local / "corrupt.pt").write_bytes(base.read_bytes()[:20000])
    uploads["corrupt"] = local / "corrupt.pt"
    uris = {}
    for key, path in uploads.items():
        uris[key] = f"{root}/{key}/best.pt"
        storage.upload(path, uris[key], settings=settings)
    # a version a failed publish left: its best.pt, but no manifest (not finished)
    storage.upload(base, f"{root}/registry/tiny/20200101T000000Z-deadbeef/best.pt",
                   settings=settings)
    return {"uris": uris, "registry": f"{root}/registry", "env": s3.env(),
            "base_sha256": hashlib.sha256(base.read_bytes()).hexdigest(), "settings": settings}


def _lineage(store: dict, version_uri: str) -> dict:
    from kfp_yolo.components import storage

    return json.loads(storage.read_bytes(f"{version_uri}/lineage.json",
                                         settings=store["settings"]))


def _published(result: subprocess.CompletedProcess) -> str:
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("published ")]
    return line.split()[-1]


@pytest.fixture(scope="module")
def from_s3(store, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("from-s3")
    return _run(workdir, store["env"], f"dataset_uri={DATA}", f"model={store['uris']['base']}",
                f"registry_uri={store['registry']}")


def test_a_checkpoint_on_s3_is_fine_tuned_and_its_version_names_it(from_s3, store):
    result, log = from_s3
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"warm start: fetching {store['uris']['base']}" in log
    # 5 classes in the checkpoint, 3 in the data: ultralytics' transfer, said in one line
    (line,) = [ln for ln in log.splitlines() if "fine-tune: transferred" in ln]
    assert "tensors from the base checkpoint; the head was re-initialised for 3 classes (the " \
           "checkpoint had 5); classes: circle, square, triangle" in line
    done, total = map(int, line.split("transferred ")[1].split(" ")[0].split("/"))
    assert 0.9 * total < done < total
    # and in the run's summary table
    assert any(ln.startswith("fine-tune ") and "re-initialised for 3 classes" in ln
               for ln in result.stderr.splitlines())
    lineage = _lineage(store, _published(result))
    assert lineage["parent"] == {"kind": "file", "source": store["uris"]["base"], "name": "",
                                 "version": "", "uri": store["uris"]["base"],
                                 "sha256": store["base_sha256"]}
    assert lineage["dataset"]["uri"] == DATA and len(lineage["dataset"]["content_hash"]) == 64
    assert lineage["config"]["values"]["model"] == store["uris"]["base"]


def test_the_champion_is_fine_tuned_and_the_chain_goes_back_to_the_file(from_s3, store,
                                                                        tmp_path):
    first = _published(from_s3[0])
    result, log = _run(tmp_path / "w", store["env"], f"dataset_uri={DATA}&seed=7",
                       "model=registry:champion", f"registry_uri={store['registry']}")
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [ln for ln in log.splitlines() if "fine-tune: transferred" in ln]
    done, total = map(int, line.split("transferred ")[1].split(" ")[0].split("/"))
    assert done == total and "re-initialised" not in line  # same classes: every tensor
    lineage = _lineage(store, _published(result))
    assert lineage["parent"]["kind"] == "registry"
    assert lineage["parent"]["version"] == first.rsplit("/", 1)[-1]
    assert lineage["parent"]["uri"] == f"{first}/best.pt"
    assert lineage["dataset"]["content_hash"] != _lineage(store, first)["dataset"]["content_hash"]
    chain = subprocess.run(
        [sys.executable, "-m", "kfp_yolo.pipelines.cli", "lineage", "--set", "name=tiny",
         "--set", f"registry_uri={store['registry']}", "latest", "--json"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **store["env"]})
    assert chain.returncode == 0, chain.stderr
    links = json.loads(chain.stdout)
    assert [link["lineage"]["parent"]["kind"] for link in links] == ["registry", "file"]


@pytest.mark.parametrize("model, says", [
    ("seg", "is a Segmentation checkpoint, and kfp-yolo trains YOLO object detectors"),
    ("corrupt", "is not a readable PyTorch checkpoint (empty, truncated or not a .pt"),
    ("missing", "does not exist; give a .pt checkpoint that is there"),
    ("registry:20200101T000000Z-deadbeef", "is missing or only partly published"),
])
def test_a_checkpoint_that_cannot_be_fine_tuned_is_exit_2_before_training(store, tmp_path,
                                                                         model, says):
    uri = store["uris"].get(model, model)
    if model == "missing":
        uri = store["uris"]["base"].replace("/base/", "/absent/")
    result, _ = _run(tmp_path / "w", store["env"], f"dataset_uri={DATA}", f"model={uri}",
                     f"registry_uri={store['registry']}")
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("kfp-yolo: error: ")]
    assert len(errors) == 1 and says in errors[0] and "Traceback" not in result.stderr
    assert "kfp-yolo: train ..." not in result.stderr  # refused by the plan step


def test_a_pinned_dataset_hash_that_differs_is_exit_2_before_training(tmp_path):
    pinned = "ab" * 32
    result, _ = _run(tmp_path / "w", {}, f"dataset_uri={DATA}", f"dataset_hash={pinned}")
    assert result.returncode == 2, result.stderr[-3000:]
    (error,) = [ln for ln in result.stderr.splitlines() if ln.startswith("kfp-yolo: error: ")]
    assert f"dataset_hash='{pinned}' is invalid: {DATA} now hashes to '" in error
    assert "kfp-yolo: plan-resources ..." not in result.stderr
