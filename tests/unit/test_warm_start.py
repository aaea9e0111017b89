"""Where a fine-tune starts: the checkpoint the plan step fetches and checks, and what the
trainer's transfer kept (components/training/warm_start.py), with real ultralytics checkpoints
built from shipped YAMLs (tests/checkpoints.py) and a registry written by `publish`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from checkpoints import save_checkpoint, save_future_checkpoint

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.errors import Fault, UserError
from kfp_yolo.components.release.publish import publish
from kfp_yolo.components.training.warm_start import (
    BASE_FILE,
    fetch_base_model,
    localise_base_model,
    transfer_report,
)


@pytest.fixture(scope="module")
def five_class_pt(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt",
                           names=("a", "b", "c", "d", "e"))


def _registry(root: Path, pt: Path, name: str = "shapes") -> str:
    return publish(registry_uri=str(root), name=name, version="", files={"best.pt": pt},
                   metadata={}).rsplit("/", 1)[-1]


def test_a_checkpoint_path_or_file_uri_is_fetched_once_with_its_sha256_and_classes(
        five_class_pt, tmp_path):
    for model in (str(five_class_pt), f"file://{five_class_pt}"):
        out = tmp_path / model.replace("/", "_")
        base = fetch_base_model(model, out)
        assert base.path == out / BASE_FILE
        assert base.path.read_bytes() == five_class_pt.read_bytes()
        assert base.sha256 == hashlib.sha256(five_class_pt.read_bytes()).hexdigest()
        assert (base.nc, base.names, base.version) == (5, ["a", "b", "c", "d", "e"], "")
        assert base.metadata()["file"] == BASE_FILE and "path" not in base.metadata()
        assert [p.name for p in out.iterdir()] == [BASE_FILE]  # no partial file left


def test_a_model_yaml_fetches_nothing(tmp_path):
    assert fetch_base_model("yolov5n.yaml", tmp_path) is None


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_bytes(b"not a checkpoint at all"),
     "is not a readable PyTorch checkpoint (empty, truncated or not a .pt"),
    (lambda p: p.write_bytes(save_checkpoint(p).read_bytes()[:5000]),
     "is not a readable PyTorch checkpoint (empty, truncated or not a .pt"),
    (lambda p: save_checkpoint(p, yaml="yolov8n-seg.yaml"),
     "is a Segmentation checkpoint, and kfp-yolo trains YOLO object detectors"),
    (save_future_checkpoint,
     "cannot read it (Can't get attribute 'FutureBlock'"),
    (lambda p: __import__("torch").save({"weights": [1, 2]}, p),
     "is a PyTorch file but not an ultralytics checkpoint"),
])
def test_a_checkpoint_that_cannot_be_fine_tuned_is_one_sentence(tmp_path, make, says):
    pt = tmp_path / "m.pt"
    make(pt)
    with pytest.raises(UserError) as err:
        fetch_base_model(f"file://{pt}", tmp_path / "out")
    message = str(err.value)
    assert message.startswith(f"model='file://{pt}' is invalid: ") and says in message
    assert "\n" not in message


def test_a_future_checkpoint_names_the_ultralytics_that_cannot_read_it(tmp_path):
    with pytest.raises(UserError, match=r"ultralytics 8\.4\.190 cannot read it .*written by a "
                                        r"newer ultralytics; save it again with ultralytics "
                                        r"8\.4\.190 or train from its model YAML"):
        fetch_base_model(str(save_future_checkpoint(tmp_path / "f.pt")), tmp_path / "out")


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(UserError, match=r"^model='file:///nowhere/best\.pt' is invalid: "
                                        r"file:///nowhere/best\.pt does not exist"):
        fetch_base_model("file:///nowhere/best.pt", tmp_path)


def test_registry_versions_resolve_to_their_best_pt(five_class_pt, tmp_path):
    registry = tmp_path / "registry"
    first = _registry(registry, five_class_pt)
    for model in ("registry:champion", "registry:latest", f"registry:{first}"):
        base = fetch_base_model(model, tmp_path / model.replace(":", "_"),
                                registry_uri=str(registry), name="shapes")
        assert (base.source, base.version) == (model, first)
        assert base.uri == f"{registry}/shapes/{first}/best.pt"


def test_a_registry_version_that_is_not_there_is_refused(five_class_pt, tmp_path):
    registry = tmp_path / "registry"
    with pytest.raises(UserError, match=r"has no champion \(nothing published yet\)"):
        fetch_base_model("registry:champion", tmp_path, registry_uri=str(registry), name="s")
    _registry(registry, five_class_pt, name="s")
    with pytest.raises(UserError, match=r"^model='registry:20200101T000000Z-00000000' is "
                                        r"invalid: .*/s/20200101T000000Z-00000000 is missing or "
                                        r"only partly published"):
        fetch_base_model("registry:20200101T000000Z-00000000", tmp_path,
                         registry_uri=str(registry), name="s")


def test_warm_start_without_a_champion_trains_model_as_configured_and_says_so(
        five_class_pt, tmp_path, capsys):
    registry = tmp_path / "registry"
    assert fetch_base_model("yolov5n.yaml", tmp_path / "a", warm_start="champion",
                            registry_uri=str(registry), name="s") is None
    assert "has no champion yet; training from model='yolov5n.yaml' as configured" in \
        capsys.readouterr().out
    first = _registry(registry, five_class_pt, name="s")
    base = fetch_base_model("yolov5n.yaml", tmp_path / "b", warm_start="champion",
                            registry_uri=str(registry), name="s")
    assert (base.source, base.version) == ("registry:champion", first)


def test_pods_check_the_bytes_against_the_plan_steps_sha256(five_class_pt, tmp_path):
    digest = hashlib.sha256(five_class_pt.read_bytes()).hexdigest()
    assert localise_base_model(str(five_class_pt), digest, tmp_path, fetch=True) == \
        str(five_class_pt)
    with pytest.raises(Fault, match=r"not 0{64} as the plan step fetched it"):
        localise_base_model(str(five_class_pt), "0" * 64, tmp_path, fetch=True)


def test_a_changed_class_list_is_transferred_and_said(five_class_pt):
    """ultralytics' own transfer (DetectionModel.load, what the trainer calls); the report
    counts the tensors equal to the checkpoint's before any step."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    ckpt = torch.load(five_class_pt, map_location="cpu", weights_only=False)
    model = DetectionModel(ckpt["model"].yaml, nc=3, verbose=False)
    model.load(ckpt, verbose=False)
    report = transfer_report(model, str(five_class_pt), ["x", "y", "z"])
    assert report["head_reinitialised"] and (report["nc"], report["base_nc"]) == (3, 5)
    assert 0.9 * report["tensors"] < report["transferred"] < report["tensors"]
    assert report["sentence"].startswith(
        f"transferred {report['transferred']}/{report['tensors']} tensors from the base "
        "checkpoint; the head was re-initialised for 3 classes (the checkpoint had 5)")
    same = DetectionModel(ckpt["model"].yaml, nc=5, verbose=False)
    same.load(ckpt, verbose=False)
    renamed = transfer_report(same, str(five_class_pt), ["v", "w", "x", "y", "z"])
    assert renamed["transferred"] == renamed["tensors"] and not renamed["head_reinitialised"]
    assert "the class names differ from the checkpoint's: the dataset's names win" in \
        renamed["sentence"]


def test_a_pinned_dataset_hash_that_differs_is_refused_naming_both(tmp_path):
    from kfp_yolo.components.steps.data import prepare_dataset_component

    def artifact(name: str) -> SimpleNamespace:
        return SimpleNamespace(path=str(tmp_path / name), metadata={})

    uri = "synthetic://shapes?images=16&imgsz=64"
    first = prepare_dataset_component(uri, 0, 0.2, artifact("d1"), artifact("r1.md"))
    pinned = "0" * 64
    with pytest.raises(UserError) as err:
        prepare_dataset_component(uri, 0, 0.2, artifact("d2"), artifact("r2.md"),
                                  dataset_hash=pinned)
    assert str(err.value) == (
        f"dataset_hash='{pinned}' is invalid: {uri} now hashes to '{first.content_hash}', so "
        "the data changed since it was pinned; pin the new hash, or restore the data.")
    again = prepare_dataset_component(uri, 0, 0.2, artifact("d3"), artifact("r3.md"),
                                      dataset_hash=first.content_hash)
    assert again.content_hash == first.content_hash
    assert first.nc == 3


def test_a_dataset_hash_read_as_a_number_is_refused_with_the_fix():
    with pytest.raises(UserError, match=r"dataset_hash=1111.* is invalid: YAML read it as a "
                                        r"number; quote the hash"):
        load_config(None, ["dataset_hash=" + "1" * 64])


def test_a_cluster_train_step_hands_its_pods_the_plan_steps_bytes(tmp_path, monkeypatch):
    """The pods read the plan step's base_model artifact (as they read the dataset's), check
    its sha256, and a fine-tune with lr0 unset takes ultralytics' own lr0 (AdamW 0.001)."""
    from kfp.dsl import HTML, Dataset, Metrics, Model
    from train_step import train_step_arguments

    from kfp_yolo.components import launchers
    from kfp_yolo.components.steps import train_component

    launched = []

    class Launcher:
        kind = "trainjob"

        def launch(self, spec) -> None:
            launched.append(spec)
            raise KeyboardInterrupt  # stop here: the job itself is not the point

    monkeypatch.setattr(launchers, "get_launcher", lambda name, **settings: Launcher())
    base = Model(name="base_model", uri="minio://mlpipeline/run/plan/base_model",
                 metadata={"sha256": "ab" * 32, "file": BASE_FILE, "version": "v1",
                           "source": "registry:champion"})
    with pytest.raises(KeyboardInterrupt):
        train_component(
            dataset=Dataset(name="dataset", uri="minio://mlpipeline/run/dataset", metadata={}),
            weights=Model(name="weights", uri="minio://mlpipeline/run/weights", metadata={}),
            report=HTML(name="report", uri=str(tmp_path / "report"), metadata={}),
            metrics=Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={}),
            base_model=base, **train_step_arguments(optimizer="AdamW", lr0=0.0))
    (spec,) = launched
    assert spec.model == "minio://mlpipeline/run/plan/base_model/base.pt"
    assert spec.model_sha256 == "ab" * 32 and spec.lr0 == 0.001
