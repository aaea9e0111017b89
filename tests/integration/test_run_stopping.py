"""`kfp-yolo run` owns its process tree and its work folder (issue 18), with real processes.

Each run gets a unique marker in its environment; every process below it (the steps' shells,
the steps, torchrun, the workers) inherits it, so the test finds them all in /proc even after
they were re-parented, and removes any that a failing test leaves behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(),
                                reason="finds processes through /proc (Linux)")

MARK = "KFP_YOLO_TEST_MARK"
# Long enough to be caught training, small enough to get there fast.
LONG = ["epochs=500", "dataset_uri=synthetic://shapes?images=16&imgsz=64", "imgsz=64",
        "batch=8", "workers=0"]
TINY = ["epochs=1", "dataset_uri=synthetic://shapes?images=16&imgsz=64", "imgsz=64",
        "batch=8", "workers=0", "min_map50_95=0"]
WORKER = "kfp_yolo.components.training.worker"


def _marked(mark: str) -> dict[int, str]:
    """{pid: command line} of the live processes whose environment carries mark."""
    found = {}
    needle = f"{MARK}={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":  # a zombie runs nothing
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout_s} s")


def _start(workdir: Path, mark: str, *overrides: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "kfp_yolo.pipelines.cli", "run", "--workdir", str(workdir)]
    for item in overrides:
        argv += ["--set", item]
    env = {**{k: v for k, v in os.environ.items() if k != "KFP_YOLO_DEBUG"}, MARK: mark}
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


@pytest.fixture
def mark() -> Iterator[str]:
    value = uuid.uuid4().hex
    yield value
    for pid in _marked(value):  # whatever a failed test left running
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _training(mark: str) -> dict[int, str]:
    return {pid: cmd for pid, cmd in _marked(mark).items() if WORKER in cmd}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_stopped_run_leaves_no_training_behind(tmp_path, mark, signum):
    run = _start(tmp_path / "work", mark, *LONG)
    try:
        _wait_for(lambda: _training(mark) or run.poll() is not None, 400, "training")
        assert run.poll() is None, run.communicate()[1][-3000:]
        time.sleep(2)  # well inside the training loop
        assert _training(mark)
        sent = time.monotonic()
        run.send_signal(signum)
        _, err = run.communicate(timeout=60)
        took = time.monotonic() - sent
        if signum != signal.SIGKILL:
            assert run.returncode == 128 + signum, err[-3000:]
            assert err.strip().splitlines()[-1] == (
                "kfp-yolo: stopped by SIGTERM; every process it started was stopped"
                if signum == signal.SIGTERM else "kfp-yolo: interrupted")
            assert took < 30, took
            summary = json.loads((tmp_path / "work" / "summary.json").read_text())
            assert summary["status"] == "stopped" and summary["steps"]["train"] == "stopped"
        else:
            assert run.returncode == -signal.SIGKILL
        left = _wait_for(lambda: not _marked(mark) or None, 30,
                         f"every process of the run gone (left: {_marked(mark)})")
        assert left
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()


def test_a_held_workdir_is_refused_and_the_holder_succeeds(tmp_path, mark):
    workdir = tmp_path / "work"
    first = _start(workdir, mark, *TINY)
    try:
        lock = workdir / ".kfp-yolo.lock"
        _wait_for(lambda: lock.exists() and lock.read_text().strip(), 60, "the lock")
        second = subprocess.run(
            [sys.executable, "-m", "kfp_yolo.pipelines.cli", "run", "--workdir", str(workdir),
             *sum((["--set", item] for item in TINY), [])],
            capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr[-3000:]
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith(f"kfp-yolo: error: {workdir} is in use by another kfp-yolo run "
                               f"(pid {first.pid}, started ")
        assert "pass another --workdir" in last
        _, err = first.communicate(timeout=900)
        assert first.returncode == 0, err[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    summary = json.loads((workdir / "summary.json").read_text())
    folders = [p for p in (workdir / "pipeline_root").iterdir() if p.is_dir()]
    assert len(folders) == 1 and summary["run_dir"] == str(folders[0])
    assert lock.read_text() == ""  # released: the next run takes it without a word


def test_a_killed_step_takes_its_torchrun_and_workers_along(tmp_path, mark):
    """SIGKILL of the train step itself: torchrun and its workers die with it (parent-death
    signals), and the run ends with exit 1 naming the step that left no failure record."""
    run = _start(tmp_path / "work", mark, *LONG)
    try:
        _wait_for(lambda: _training(mark) or run.poll() is not None, 400, "training")
        step = next(pid for pid, cmd in _marked(mark).items()
                    if "kfp.dsl.executor_main" in cmd and not cmd.startswith("sh "))
        os.kill(step, signal.SIGKILL)
        _, err = run.communicate(timeout=120)
        assert run.returncode == 1, err[-3000:]
        assert "step train failed" in err.strip().splitlines()[-1]  # named as the table names it
        assert "without a failure record" in err.strip().splitlines()[-1]
        _wait_for(lambda: not _marked(mark) or None, 30,
                  f"every process of the run gone (left: {_marked(mark)})")
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
