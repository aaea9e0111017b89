"""The two mapping functions, the only places a config key becomes a TrainSpec or
ClusterSettings field (train_spec_from, cluster_settings_from): the train step and
`kfp-yolo job render` both build through them, so they cannot disagree."""

from __future__ import annotations

from dataclasses import fields

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.launchers.cluster import (
    RENAMED,
    ClusterSettings,
    cluster_settings_from,
)
from kfp_yolo.components.spec import TrainSpec, train_spec_from


def _values(*overrides: str) -> dict:
    cfg = load_config(None, list(overrides))
    return {**cfg.model_dump(), "lr0": cfg.learning_rate}


def test_every_training_key_reaches_the_spec_by_its_name():
    values = _values("epochs=7", "imgsz=320", "cache=disk", "workers=3", "seed=11")
    spec = train_spec_from(values, run_id="r", dataset_uri="s3://d/x", output_uri="s3://o/w")
    shared = {f.name for f in fields(TrainSpec)} & set(values) - {"dataset_uri"}
    assert {name: getattr(spec, name) for name in shared if name != "checkpoint_uri"} == \
        {name: values[name] for name in shared if name != "checkpoint_uri"}
    assert spec.checkpoint_uri == "s3://o/checkpoints"  # empty key: beside the weights
    assert spec.dataset_uri == "s3://d/x" and spec.lr0 > 0  # the artifact, and lr0 resolved


def test_the_planned_batch_replaces_the_configs():
    spec = train_spec_from(_values("batch=0"), run_id="r", dataset_uri="d", output_uri="o",
                           batch=48)
    assert spec.batch == 48


def test_cluster_keys_reach_the_settings_and_the_deadline_is_renamed():
    values = _values("namespace=team-b", "queue=q1", "job_timeout_s=3600",
                     "service_account=trainer")
    toleration = {"key": "k", "operator": "Exists"}
    settings = ClusterSettings(**cluster_settings_from(values, tolerations=(toleration,)))
    assert (settings.namespace, settings.queue, settings.service_account) == \
        ("team-b", "q1", "trainer")
    assert settings.active_deadline_s == 3600 and RENAMED == {"active_deadline_s": "job_timeout_s"}
    assert settings.tolerations == (toleration,)


def test_placement_never_comes_from_the_config():
    values = {**_values(), "node_affinity": ["not from a config"], "tolerations": ["nor this"]}
    assert not {"node_affinity", "tolerations", "owner"} & set(cluster_settings_from(values))
