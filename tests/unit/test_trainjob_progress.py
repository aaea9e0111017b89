"""The train step's log shows the progress a TrainJob's training posts (status.trainerStatus),
read by the launcher's watch loop from a scripted API server."""

from __future__ import annotations

import copy

from kube_fakes import make_spec
from trainjob_fakes import COMPLETE, JOB, JOBS, job_state, make_launcher

from kfp_yolo.components.launchers.kinds import PYTORCHJOB, trainer_progress
from kfp_yolo.components.tracking.trainer_status import status_body


def with_progress(state: tuple[int, dict], percent: int, epoch: str, map50_95: float,
                  eta_s: int, stamp: str) -> tuple[int, dict]:
    status, job = copy.deepcopy(state[0]), copy.deepcopy(state[1])
    # exactly what the worker posts (tracking.trainer_status), as the Trainer stores it
    body = status_body(progress_percentage=percent, estimated_remaining_s=eta_s,
                       metrics={"epoch": epoch, "mAP50-95": map50_95, "mAP50": 0.61})
    job["status"]["trainerStatus"] = {**body["trainerStatus"], "lastUpdatedTime": stamp}
    return status, job


def test_watch_loop_prints_each_progress_update_once():
    first = with_progress(job_state(ready=1), 33, "1/3", 0.1234, 130, "2026-12-02T07:00:00Z")
    second = with_progress(job_state(ready=1), 67, "2/3", 0.4121, 65, "2026-12-02T07:01:05Z")
    done = with_progress(job_state(COMPLETE), 100, "3/3", 0.5, 0, "2026-12-02T07:02:10Z")
    launcher, _, lines = make_launcher({
        ("POST", JOBS): [(201, {})],
        ("GET", JOB): [job_state(ready=1), first, first, second, done],
    })
    launcher.launch(make_spec())
    progress = [line for line in lines if "progress" in line]
    assert progress == [
        "[trainjob] progress 33%: epoch 1/3, mAP50-95 0.1234, mAP50 0.61, ETA 2m10s",
        "[trainjob] progress 67%: epoch 2/3, mAP50-95 0.4121, mAP50 0.61, ETA 1m05s",
        "[trainjob] progress 100%: epoch 3/3, mAP50-95 0.5, mAP50 0.61, ETA 0m00s",
    ]


def test_no_progress_line_without_trainer_status():
    launcher, _, lines = make_launcher({
        ("POST", JOBS): [(201, {})],
        ("GET", JOB): [job_state(ready=1), job_state(COMPLETE)],
    })
    launcher.launch(make_spec())
    assert not [line for line in lines if "progress" in line]
    assert trainer_progress(job_state()[1]) is None
    assert PYTORCHJOB.progress({"status": {"trainerStatus": {"progressPercentage": 5}}}) is None
