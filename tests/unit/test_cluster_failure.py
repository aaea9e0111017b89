"""A cluster job that fails on a worker's bad input ends the train step the way a local run
does (issue 18): the pod exits 2 with the worker's sentence as its termination message
(training/node.py), and the launcher raises that sentence as a UserError (exit 2), not a
generic "job failed". Against a scripted API, as in test_pytorchjob.py."""

from __future__ import annotations

import pytest
from kube_fakes import NS, make_spec
from pytorchjob_fakes import CREATED, JOB, JOBS, LOG, RUNNING, job_state, make_launcher

from kfp_yolo.components.errors import JobFailed, UserError

POD = rf"/api/v1/namespaces/{NS}/pods/exp-1-master-0"
FAILED = ("Failed", "PyTorchJobFailed",
          "PyTorchJob team-a/exp-1 is failed because 1 Master replica(s) failed.")
SENTENCE = "'minio://b/d' has no data.yaml; give the prepared Dataset artifact's folder."


def _pod(exit_code: int, message: str) -> tuple[int, dict]:
    return 200, {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "exp-1-master-0"},
                 "status": {"containerStatuses": [{
                     "name": "pytorch", "ready": False, "restartCount": 0, "image": "img",
                     "imageID": "", "state": {"terminated": {
                         "exitCode": exit_code, "reason": "Error", "message": message}}}]}}


def _launch(pod: tuple[int, dict]):
    launcher, http, _ = make_launcher({
        ("POST", JOBS): [(201, {})],
        ("GET", JOB): [job_state(CREATED, RUNNING), job_state(CREATED, FAILED)],
        ("GET", LOG): [(200, "")],
        ("GET", POD): [pod],
    })
    launcher.launch(make_spec())


def test_a_pod_that_refused_its_input_is_the_steps_user_error():
    with pytest.raises(UserError) as err:
        _launch(_pod(2, SENTENCE))
    assert str(err.value) == SENTENCE


def test_out_of_gpu_memory_is_named_in_the_failure():
    with pytest.raises(JobFailed, match="ran out of GPU memory .CUDA out of memory"):
        _launch(_pod(3, "CUDA out of memory. Tried to allocate 2.00 GiB"))


def test_a_retryable_end_keeps_the_jobs_own_reason():
    with pytest.raises(JobFailed) as err:
        _launch(_pod(138, "DistStoreError: timed out"))
    assert not isinstance(err.value, UserError)
    assert "1 Master replica(s) failed" in str(err.value)
