"""MLflow reaches the job's pods: the tracking URI, run and experiment as values, credentials
only by Secret reference; rendered jobs still validate against the CRDs."""

from __future__ import annotations

import json

import pytest
from k8s_validation import crd_validator
from kube_fakes import full_settings, make_spec
from train_step import cluster_settings_of_train_step

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.launchers.cluster import ClusterSettings
from kfp_yolo.components.launchers.pytorchjob import build_pytorchjob
from kfp_yolo.components.launchers.trainjob import build_trainjob
from kfp_yolo.components.tracking.mlflow_log import CREDENTIAL_KEYS, MlflowSettings
from kfp_yolo.pipelines.cli import main

FORWARD = (("MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc:5000"),
           ("MLFLOW_RUN_ID", "0a1b2c"), ("MLFLOW_EXPERIMENT_ID", "7"))


def _env(job: dict) -> list[dict]:
    if job["kind"] == "TrainJob":
        return job["spec"]["trainer"]["env"]
    return job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"]


@pytest.mark.parametrize("build, api_version, kind", [
    (build_trainjob, "trainer.kubeflow.org/v1alpha1", "TrainJob"),
    (build_pytorchjob, "kubeflow.org/v1", "PyTorchJob"),
])
def test_pods_get_the_run_as_values_and_credentials_from_the_secret(build, api_version, kind):
    cluster = full_settings(forward_env=FORWARD, mlflow_secret="team-mlflow",
                            priority_class="" if kind == "TrainJob" else "high")
    job = build(make_spec(), cluster)
    errors = list(crd_validator(api_version, kind).iter_errors(job))
    assert not errors, [e.message for e in errors]
    env = {item["name"]: item for item in _env(job)}
    for name, value in FORWARD:
        assert env[name] == {"name": name, "value": value}
    for key in CREDENTIAL_KEYS:
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "team-mlflow", "key": key,
                                                          "optional": True}
        assert "value" not in env[key]


def test_nothing_of_mlflow_without_it():
    env = {item["name"] for item in _env(build_trainjob(make_spec(), ClusterSettings()))}
    assert not {n for n in env if n.startswith("MLFLOW_")}


@pytest.mark.parametrize("name", [*CREDENTIAL_KEYS, "BAD-NAME"])
def test_credentials_are_never_forwarded_as_values(name):
    with pytest.raises(UserError, match=f"forward_env may not carry '{name}'"):
        ClusterSettings(forward_env=((name, "secret"),))


def _launcher_settings(tmp_path, monkeypatch) -> ClusterSettings:
    """The ClusterSettings train_component hands the (real) launcher; the job is not run."""
    return cluster_settings_of_train_step(tmp_path, monkeypatch, name="nightly",
                                          mlflow_secret="team-mlflow")


def test_train_step_forwards_its_mlflow_run_to_the_launcher(tmp_path, monkeypatch):
    # KFP's plugin gives the step its nested run: no run is created, nothing is contacted.
    for name, value in FORWARD:
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "must-not-travel")
    cluster = _launcher_settings(tmp_path, monkeypatch)
    assert cluster.forward_env == FORWARD and cluster.mlflow_secret == "team-mlflow"
    assert "must-not-travel" not in json.dumps(build_trainjob(make_spec(), cluster))


def test_settings_read_the_plugins_variables():
    settings = MlflowSettings.from_environ(dict(FORWARD))
    assert settings.enabled and settings.env() == dict(FORWARD)
    assert settings.with_run("x").env()["MLFLOW_RUN_ID"] == "x"
    assert not MlflowSettings.from_environ({}).enabled


def test_config_key_and_job_render(capsys):
    with pytest.raises(UserError, match="mlflow_secret='Bad_Name' is invalid"):
        load_config(overrides=["mlflow_secret=Bad_Name"])
    assert main(["job", "render", "--launcher", "trainjob", "--set", "launcher=trainjob",
                 "--set", "mlflow_secret=team-mlflow"]) == 0
    out = capsys.readouterr().out
    assert "name: team-mlflow" in out and "key: MLFLOW_TRACKING_TOKEN" in out


def test_a_dead_mlflow_leaves_the_job_without_it(tmp_path, monkeypatch, caplog):
    import logging
    import socket
    import time

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{sock.getsockname()[1]}")
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="kfp_yolo.mlflow"):
        cluster = _launcher_settings(tmp_path, monkeypatch)
    assert time.monotonic() - started < 30
    assert cluster.forward_env == ()  # the pods do not try a server that is down
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "kfp_yolo.mlflow"]
    assert "failed to create the run" in warning and "training goes on" in warning


def test_worker_reads_both_integrations_from_its_environment():
    from kfp_yolo.components.training.reporting import Tracking

    tracking = Tracking.from_environ({**dict(FORWARD),
                                      "KUBEFLOW_TRAINER_SERVER_URL": "https://t:8082/x/status"})
    assert tracking.mlflow.run_id == "0a1b2c" and tracking.trainer_status.enabled
    assert not Tracking.from_environ({}).mlflow.enabled
