"""A training pod's command (training/node.py) under real torchrun on CPU: a worker that refuses
its input ends the pod with the permanent code 2, a crash with the retryable 138, and the
worker's sentence is the last line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kfp_yolo.components.spec import TrainSpec
from kfp_yolo.components.training.node import EXIT_BAD_INPUT, EXIT_RETRYABLE


def _node(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    return subprocess.run([sys.executable, "-m", "kfp_yolo.components.training.node",
                           "--standalone", "--nproc-per-node=1", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def test_a_worker_refusing_its_input_is_a_permanent_exit(tmp_path: Path):
    empty = tmp_path / "not-a-dataset"
    empty.mkdir()
    spec = TrainSpec(run_id="run", dataset_uri=str(empty), model="yolov5n.yaml", imgsz=64,
                     epochs=1, batch=8, precision="fp32", optimizer="SGD", lr0=0.01, seed=0,
                     workers=0, nodes=1, procs_per_node=1, checkpoint_uri="",
                     output_uri=str(tmp_path / "out"), device="cpu", init_timeout_s=60)
    result = _node("-m", "kfp_yolo.components.training.worker", "--spec", spec.to_json(),
                   "--scratch", str(tmp_path / "scratch"))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("kfp-yolo: training failed (permanent, exit code 2): ")
    assert "has no data.yaml" in last


def test_a_crashing_worker_is_a_retryable_exit(tmp_path: Path):
    script = tmp_path / "crash.py"
    script.write_text("raise RuntimeError('NCCL communicator was aborted')\n")
    result = _node(str(script))
    assert result.returncode == EXIT_RETRYABLE, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"kfp-yolo: training failed (retryable, exit code {EXIT_RETRYABLE})")
