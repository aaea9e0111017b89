"""Secrets planted everywhere one can enter appear in no file a run writes and no stream
(issue #26): the environment's credentials, the MLflow URI's password, a token file, and a
config value's user-info; for a run that succeeds, one that fails and one that is stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

KFP_YOLO = Path(sys.executable).parent / "kfp-yolo"
TINY = ["epochs=1", "imgsz=64", "batch=8", "workers=0", "min_map50_95=0"]
DATA = "shapes?images=16&imgsz=64"
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "awsSecretPlanted0001",
    "AWS_ACCESS_KEY_ID": "AKIAPLANTED0002",
    "AWS_SESSION_TOKEN": "sessionTokenPlanted0003",
    "MLFLOW_TRACKING_PASSWORD": "mlflowPwPlanted0004",
    "MLFLOW_TRACKING_TOKEN": "mlflowTokenPlanted0005",
}
URI_PASSWORD = "uriPasswordPlanted0006"
FILE_TOKEN = "fileTokenPlanted0007"
CONFIG_PASSWORD = "configPasswordPlanted0008"
ALL = [*SECRETS.values(), URI_PASSWORD, FILE_TOKEN, CONFIG_PASSWORD]


def _closed_port() -> int:
    with socket.socket() as sock:  # bound then released: nothing answers there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    token = tmp_path / "token"
    token.write_text(FILE_TOKEN)
    token.chmod(0o600)
    return {**{k: v for k, v in os.environ.items() if k != "KFP_YOLO_DEBUG"}, **SECRETS,
            # MLflow down: its one warning names the server, and must not name the password
            "MLFLOW_TRACKING_URI": f"http://alice:{URI_PASSWORD}@127.0.0.1:{_closed_port()}",
            "KF_PIPELINES_SA_TOKEN_PATH": str(token)}


def _argv(workdir: Path, *items: str, config: Path | None = None) -> list[str]:
    argv = [str(KFP_YOLO), "run", "--workdir", str(workdir)]
    if config is not None:
        argv += ["--config", str(config)]
    return argv + [a for item in items for a in ("--set", item)]


def _leaks(workdir: Path, *streams: str) -> list[str]:
    """'<where>: <secret>' for every planted secret found in a file under workdir or a stream."""
    found = []
    for path in sorted(p for p in workdir.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        found += [f"{path}: {s}" for s in ALL if s.encode() in data]
    for i, text in enumerate(streams):
        found += [f"stream {i}: {s}" for s in ALL if s in text]
    return found


def test_no_secret_in_any_file_or_stream_of_a_succeeded_failed_and_stopped_run(tmp_path, env):
    ok = subprocess.run(_argv(tmp_path / "ok", f"dataset_uri=synthetic://{DATA}", *TINY),
                        env=env, capture_output=True, text=True, timeout=900)
    assert ok.returncode == 0, ok.stderr[-3000:]
    run_log = (tmp_path / "ok" / "run.log").read_text()
    assert "http://***@127.0.0.1" in run_log  # MLflow's warning was written, masked
    assert _leaks(tmp_path / "ok", ok.stdout, ok.stderr) == []

    config = tmp_path / "bad.yaml"  # a config value carrying user-info: refused by prepare
    config.write_text(f"dataset_uri: synthetic://bob:{CONFIG_PASSWORD}@{DATA}\n")
    bad = subprocess.run(_argv(tmp_path / "bad", *TINY, config=config), env=env,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert "synthetic://***@shapes" in bad.stderr.strip().splitlines()[-1]
    assert _leaks(tmp_path / "bad", bad.stdout, bad.stderr) == []

    long = subprocess.Popen(_argv(tmp_path / "stop", f"dataset_uri=synthetic://{DATA}",
                                  *TINY[1:], "epochs=500"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = tmp_path / "stop" / "run.log"
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and long.poll() is None:
            if log.exists() and "Epoch" in log.read_text(errors="replace"):
                break
            time.sleep(1)
        long.send_signal(signal.SIGTERM)
        out, err = long.communicate(timeout=120)
    finally:
        if long.poll() is None:
            long.kill()
            long.communicate()
    assert long.returncode == 143, err[-3000:]
    assert _leaks(tmp_path / "stop", out, err) == []


def test_mlflow_params_are_masked_in_a_real_store(tmp_path, monkeypatch):
    """What reaches MLflow (shown to everyone who can read the experiment) is masked."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from kfp_yolo.components.tracking.mlflow_log import MlflowSettings, MlflowTracker

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "awsSecretInParams99")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(MlflowSettings(tracking_uri=uri), experiment="redact")
    run_id = tracker.start()
    assert run_id
    tracker.log_params({"dataset_uri": "http://bob:pw-in-uri-1234@data/x",
                        "note": "key awsSecretInParams99", "epochs": 3})
    params = MlflowClient(uri).get_run(run_id).data.params
    assert params == {"dataset_uri": "http://***@data/x", "note": "key ***", "epochs": "3"}
