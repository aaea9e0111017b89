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


def test_a_config_that_crossed_the_dag_as_a_struct_keeps_its_types():
    """KFP passes the validate step's `config` as a protobuf Struct, whose numbers are doubles:
    the mappings give the job ints where its fields are ints (a TrainJob's epochs=10.0 or
    activeDeadlineSeconds=3600.0 would be refused or misread)."""
    import json

    values = _values("epochs=10", "job_timeout_s=3600", "lr0=0.01")
    doubled = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
               for k, v in json.loads(json.dumps(values)).items()}
    spec = train_spec_from(doubled, run_id="r", dataset_uri="d", output_uri="o")
    assert spec == train_spec_from(values, run_id="r", dataset_uri="d", output_uri="o")
    assert type(spec.epochs) is int and type(spec.seed) is int and type(spec.lr0) is float
    settings = cluster_settings_from(doubled)
    assert type(settings["active_deadline_s"]) is int and settings["active_deadline_s"] == 3600
    assert settings == cluster_settings_from(values)


def test_the_validate_steps_config_is_what_the_search_and_train_steps_map(tmp_path):
    """step_values: the one structured value the train and search steps take; a trial's base
    spec is the training's, hpo_epochs long on one node, without checkpoints."""
    from kfp_yolo.components.config.checks import step_values
    from kfp_yolo.components.hpo.trial import base_spec

    cfg = load_config(None, ["epochs=9", "hpo_trials=3", "hpo_epochs=2", "hpo_fraction=0.5",
                             "nodes=2", "lr0=0"])
    config = step_values(cfg)
    assert config["lr0"] == cfg.learning_rate > 0  # resolved, as the steps need it
    trial = base_spec({**config, "run_id": "r", "batch": 16}, "d", str(tmp_path / "w"))
    full = train_spec_from({**config, "batch": 16}, run_id="r", dataset_uri="d",
                           output_uri=str(tmp_path / "w"))
    assert (trial.epochs, trial.nodes, trial.checkpoint_uri, trial.hyp) == (2, 1, "", {
        "fraction": 0.5})
    assert (trial.model, trial.lr0, trial.optimizer, trial.precision) == (
        full.model, full.lr0, full.optimizer, full.precision)


def test_a_new_training_key_needs_no_wire_in_the_dag():
    """The search and train steps take the checked config whole: their inputs name no config
    key but those a step before them decides (the plan's batch, the search's imgsz and lr0),
    so adding a training key touches RunConfig, TrainSpec (the mapping) and the worker only."""
    import inspect

    from kfp_yolo.components.config.run_config import RunConfig
    from kfp_yolo.components.steps import search_component, train_component

    for step, decided in ((train_component, {"batch", "imgsz", "lr0"}),
                          (search_component, {"batch"})):
        named = set(inspect.signature(step).parameters) & set(RunConfig.model_fields)
        assert named == decided, step.__name__
