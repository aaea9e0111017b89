"""The distributed trainer under real torchrun on CPU (gloo): ranks, nodes, resume, timeouts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from kfp_yolo.components.atomic import PART_SUFFIX
from kfp_yolo.components.errors import JobFailed, UserError
from kfp_yolo.components.launchers.local import LocalLauncher
from kfp_yolo.components.spec import TrainSpec
from kfp_yolo.components.training.worker import DistEnv, run_worker

REPO = Path(__file__).resolve().parents[2]
TRAIN_IMAGES = 26  # SynthSpec(images=32): a fifth (6) goes to val


def _spec(tmp_path: Path, dataset: Path, **changes) -> TrainSpec:
    spec = TrainSpec(
        run_id="run", dataset_uri=str(dataset), model="yolov5n.yaml", imgsz=64, epochs=2, batch=8,
        precision="amp", optimizer="SGD", lr0=0.01, seed=0, workers=0, nodes=1,
        procs_per_node=1, checkpoint_uri=str(tmp_path / "checkpoints"),
        output_uri=str(tmp_path / "output"), device="cpu", init_timeout_s=60)
    return replace(spec, **changes)


def _progress(scratch: Path) -> dict[int, dict]:
    """Every rank's training record, by global rank."""
    records = [json.loads(p.read_text()) for p in scratch.glob("node*/progress/rank*.json")]
    return {record["rank"]: record for record in records}


def _checkpoint(path: Path) -> dict:
    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics.utils.patches import torch_load

    return torch_load(path, map_location="cpu", weights_only=False)


def _results_epochs(path: Path) -> list[int]:
    rows = path.read_text().strip().splitlines()[1:]
    return [int(float(row.split(",")[0])) for row in rows]


# ------------------------------------------------------------------------------------ DistEnv


def test_dist_env_reads_torchrun_variables():
    env = DistEnv.from_environ({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4",
                                "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.1",
                                "MASTER_PORT": "29500"})
    assert (env.rank, env.local_rank, env.world_size, env.local_world_size) == (3, 1, 4, 2)
    assert not env.is_main
    assert DistEnv.from_environ({}) == DistEnv(rank=0, local_rank=0, world_size=1,
                                               local_world_size=1)


@pytest.mark.parametrize(("environ", "message"), [
    ({"RANK": "x"}, "RANK must be an integer, got: 'x'"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE must be at least 1, got: 0"),
    ({"WORLD_SIZE": "2", "RANK": "1"}, "LOCAL_RANK is not set while WORLD_SIZE is 2"),
    ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"}, "RANK must be in [0, WORLD_SIZE)"),
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "1"},
     "LOCAL_RANK must be in [0, LOCAL_WORLD_SIZE), got: 1 of 1"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "4"},
     "LOCAL_WORLD_SIZE must be in [1, WORLD_SIZE], got: 4 of 2"),
])
def test_dist_env_refuses_bad_variables(environ, message):
    with pytest.raises(ValueError) as info:
        DistEnv.from_environ(environ)
    assert message in str(info.value)


def test_batch_that_the_world_size_does_not_divide_is_refused(tmp_path, dataset):
    spec = _spec(tmp_path, dataset, batch=9, procs_per_node=2)
    with pytest.raises(UserError, match=r"batch 9 is not divisible by the world size 2"):
        LocalLauncher(scratch=tmp_path / "scratch").launch(spec)
    env = DistEnv(rank=0, local_rank=0, world_size=2, local_world_size=2)
    with pytest.raises(UserError, match=r"use a multiple of 2"):
        run_worker(spec, env, tmp_path / "worker")


# ------------------------------------------------------------------------------ DDP on gloo


def _assert_both_ranks_trained(scratch: Path, spec: TrainSpec) -> None:
    progress = _progress(scratch)
    assert sorted(progress) == [0, 1]
    for record in progress.values():
        assert record["world_size"] == 2
        assert record["ddp"], "the model was not wrapped in DistributedDataParallel"
        assert [e["epoch"] for e in record["epochs"]] == [1, 2]
        # Each rank saw its half of the training images, in batches of half the global batch.
        for epoch in record["epochs"]:
            assert epoch["images"] == TRAIN_IMAGES // 2
            assert epoch["batches"] == -(-TRAIN_IMAGES // 2 // (spec.batch // 2))
        # chosen by rank 0 for all; on CPU ultralytics loads in the training process
        assert record["input_pipeline"] == progress[0]["input_pipeline"]
        assert record["workers"] == 0 and record["batch_per_process"] == spec.batch // 2
        assert all(e["images_per_s"] > 0 for e in record["epochs"])
    output = Path(spec.output_uri)
    assert {p.name for p in output.iterdir()} >= {"best.pt", "last.pt", "results.csv"}
    assert _results_epochs(output / "results.csv") == [1, 2]
    # upstream's final_eval merge: best.pt carries the whole run's results table
    assert _checkpoint(output / "best.pt")["train_results"]["epoch"] == [1, 2]
    # Only rank 0 wrote weights: no other rank's folder holds any.
    assert not [p for p in scratch.glob("node*/runs/rank*/**/*.pt")]


@pytest.mark.timeout(300)
def test_two_processes_on_one_node_share_the_batch(tmp_path, dataset):
    spec = _spec(tmp_path, dataset, procs_per_node=2)
    LocalLauncher(scratch=tmp_path / "scratch").launch(spec)
    _assert_both_ranks_trained(tmp_path / "scratch", spec)
    assert _checkpoint(tmp_path / "checkpoints" / "run" / "last.pt")["epoch"] == 1
    # two ranks on one node, and the dataset is the user's folder: no .npy written into it
    record = _progress(tmp_path / "scratch")[0]
    assert record["input_pipeline"]["cache"] == record["cache"] == "none"
    assert "not this job's copy" in record["input_pipeline"]["reason"]
    assert not list(dataset.rglob("*.npy"))


@pytest.mark.timeout(300)
def test_two_nodes_train_from_object_storage(tmp_path, dataset, s3_env, s3_bucket):
    """Two torchruns (nodes) on loopback; dataset and checkpoints in S3, one copy per node."""
    from kfp_yolo.components import storage

    prefix = f"s3://{s3_bucket}/worker-{time.time_ns()}"
    storage.upload(dataset, f"{prefix}/dataset")
    spec = _spec(tmp_path, dataset, nodes=2, dataset_uri=f"{prefix}/dataset",
                 checkpoint_uri=f"{prefix}/checkpoints")
    LocalLauncher(scratch=tmp_path / "scratch").launch(spec)
    _assert_both_ranks_trained(tmp_path / "scratch", spec)
    for node in ("node0", "node1"):  # each node downloaded and cached its own copy
        copy = tmp_path / "scratch" / node / "dataset"
        assert (copy / "labels" / "train.cache").exists()
        # two processes share this machine: images cached on disk in the copy, not in RAM
        assert len(list(copy.rglob("*.npy"))) == len(list(copy.rglob("*.png"))) == 32
    assert {r["cache"] for r in _progress(tmp_path / "scratch").values()} == {"disk"}
    assert storage.exists(f"{prefix}/checkpoints/run/last.pt")


# ---------------------------------------------------------------------------- kill and resume


def _kill_tree(pid: int) -> None:
    import psutil

    parent = psutil.Process(pid)
    for process in [parent, *parent.children(recursive=True)]:
        process.kill()  # SIGKILL, as a node or pod that dies


@pytest.mark.timeout(400)
def test_killed_run_resumes_at_the_next_epoch(tmp_path, dataset):
    spec = _spec(tmp_path, dataset, epochs=3, procs_per_node=2)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    last = tmp_path / "checkpoints" / "run" / "last.pt"
    driver = (f"from kfp_yolo.components.launchers.local import LocalLauncher as L; "
              f"from kfp_yolo.components.spec import TrainSpec as S; "
              f"L(scratch={str(tmp_path / 'first')!r}).launch("
              f"S.from_json(open({str(spec_file)!r}).read()))")
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, "-c", driver], cwd=REPO, stdout=log,
                                 stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while not last.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last.exists(), (tmp_path / "first.log").read_text()[-3000:]
        _kill_tree(first.pid)
        first.wait()
    killed_after = _checkpoint(last)["epoch"]  # 0-based: the epochs done before the kill
    assert killed_after < 2, "the run finished before it could be killed"

    LocalLauncher(scratch=tmp_path / "second").launch(spec)
    progress = _progress(tmp_path / "second")
    for record in progress.values():  # both ranks went on, neither started over
        assert [e["epoch"] for e in record["epochs"]] == list(range(killed_after + 2, 4))
    assert _results_epochs(tmp_path / "output" / "results.csv") == [1, 2, 3]
    assert _checkpoint(last)["epoch"] == 2
    assert _checkpoint(tmp_path / "output" / "best.pt")["train_args"]["epochs"] == 3
    assert not list(last.parent.glob(f".*{PART_SUFFIX}*"))  # no temporary file is left


# ---------------------------------------------------------------------------- bounded waits


@pytest.mark.timeout(120)
def test_rendezvous_of_a_missing_node_fails_within_the_timeout(tmp_path, dataset):
    spec = _spec(tmp_path, dataset, nodes=2, init_timeout_s=5)
    started = time.monotonic()
    with pytest.raises(JobFailed, match=r"the 2 nodes did not meet at 127\.0\.0\.1:\d+ within "
                                        r"init_timeout_s=5 s .*1/2 clients joined"):
        LocalLauncher(scratch=tmp_path / "scratch", node_ranks=[0]).launch(spec)
    assert time.monotonic() - started < 60


@pytest.mark.timeout(120)
def test_process_group_that_cannot_form_fails_within_the_timeout(tmp_path, dataset):
    """Rank 0 of 2 started without torchrun's agent and without its peer."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = _spec(tmp_path, dataset, init_timeout_s=3)
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
           "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "kfp_yolo.components.training.worker", "--spec", spec.to_json(),
         "--scratch", str(tmp_path / "scratch")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=100)
    assert result.returncode != 0
    assert (f"rank 0 of 2: the process group at 127.0.0.1:{port} did not form within 3 s"
            in result.stderr), result.stderr[-2000:]
    assert time.monotonic() - started < 60
