"""What fails only after training is refused before it (issue #26): a local registry or
checkpoint folder that cannot be created or written, an MLFLOW_TRACKING_URI MLflow cannot use;
in `kfp-yolo run` (exit 2, no step started) and in the validate-config step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kfp_yolo.components.config.checks import PARAMETER_SOURCE
from kfp_yolo.components.config.preflight import check_environment
from kfp_yolo.components.config.run_config import RunConfig
from kfp_yolo.components.errors import UserError

KFP_YOLO = Path(sys.executable).parent / "kfp-yolo"


def _run(tmp_path: Path, *sets: str, env: dict[str, str] | None = None):
    argv = [str(KFP_YOLO), "run", "--workdir", str(tmp_path / "work")]
    argv += [a for item in ("epochs=1", *sets) for a in ("--set", item)]
    environ = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(argv, env={**environ, **(env or {})}, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("key, value, says", [
    ("registry_uri", "/proc/x", "registry_uri='/proc/x' cannot be created (in /proc)"),
    ("registry_uri", "file:///proc/x/models", "cannot be created (in /proc)"),
    ("checkpoint_uri", "/etc/hostname/ckpt", "checkpoint_uri='/etc/hostname/ckpt' cannot be "
                                             "created (/etc/hostname is a file)"),
])
def test_run_refuses_a_store_it_cannot_write_before_any_step(tmp_path, key, value, says):
    done = _run(tmp_path, f"{key}={value}")
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("kfp-yolo: error: kfp-yolo run: ") and says in line
    assert not (tmp_path / "work" / "run.log").exists()  # no step ran


@pytest.mark.parametrize("uri, says", [
    ("not a uri", "contains a space"),
    ("mlflow.example:5000", "scheme 'mlflow.example' is none MLflow knows"),
    ("http://:5000", "names no host"),
    ("https://mlflow:70000", "port is not a number"),
])
def test_run_refuses_an_mlflow_uri_mlflow_cannot_use(tmp_path, uri, says):
    done = _run(tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 2 and says in done.stderr
    assert "unset MLFLOW_TRACKING_URI" in done.stderr
    assert not (tmp_path / "work" / "run.log").exists()


def test_the_refusal_does_not_repeat_a_password():
    with pytest.raises(UserError) as caught:
        check_environment(RunConfig(), "x", environ={
            "MLFLOW_TRACKING_URI": "http://u:hunter2secret@mlflow:99999"})
    sentence = str(caught.value)
    assert "hunter2secret" not in sentence and "http://***@mlflow:99999" in sentence


def test_validate_config_checks_the_same(tmp_path):
    good = RunConfig(registry_uri=str(tmp_path / "new" / "registry"),
                     checkpoint_uri=f"file://{tmp_path}/ckpt")
    check_environment(good, PARAMETER_SOURCE, environ={"MLFLOW_TRACKING_URI":
                                                       "http://mlflow.kubeflow:5000"})
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the probe left nothing
    with pytest.raises(UserError, match=r"^run parameter: registry_uri='/proc/x' cannot be"):
        check_environment(RunConfig(registry_uri="/proc/x"), PARAMETER_SOURCE, environ={})
    for usable in ("file:///tmp/mlruns", "/tmp/mlruns", "sqlite:///tmp/m.db", "databricks"):
        check_environment(RunConfig(), "x", environ={"MLFLOW_TRACKING_URI": usable})
