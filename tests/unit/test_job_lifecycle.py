"""The job lifecycle both cluster launchers share (lifecycle.ClusterJobLauncher), run once per
job kind against a scripted API: the same wait, timeouts, SIGTERM, permissions and adoption
for a PyTorchJob and a TrainJob. What only one kind does (its log pod, its manifest, a missing
runtime) stays in test_pytorchjob.py and test_trainjob.py.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

import pytest
import pytorchjob_fakes as pj
import trainjob_fakes as tj
from kube_fakes import NS, make_spec, status_error

from kfp_yolo.components.errors import JobFailed, UserError
from kfp_yolo.components.launchers.cluster import SPEC_ANNOTATION


@dataclass(frozen=True)
class Kind:
    """One job kind, as the scripted API answers for it."""

    name: str  # the kind as messages say it
    resource: str  # plural.group, as RBAC and the API server say it
    jobs: str  # the collection's path (a regex)
    job: str  # exp-1's path (a regex)
    make_launcher: Any
    created: Any  # () -> (status, job) of a job just made
    running: Any
    succeeded: Any
    queued: Any
    resumed: Any  # admitted, no pod ready yet
    failed: Any  # (reason, message) -> (status, job)
    logs: Any  # (*texts) -> routes answering the log of the job's first pod with texts


def _pytorchjob_failed(reason: str, message: str):
    return pj.job_state(pj.CREATED, ("Failed", reason, message))


def _trainjob_failed(reason: str, message: str):
    return tj.job_state(("Failed", "True", reason, message))


KINDS = [
    Kind("PyTorchJob", "pytorchjobs.kubeflow.org", pj.JOBS, pj.JOB, pj.make_launcher,
         created=lambda: pj.job_state(pj.CREATED),
         running=lambda: pj.job_state(pj.CREATED, pj.RUNNING),
         succeeded=lambda: pj.job_state(pj.CREATED, pj.SUCCEEDED),
         queued=lambda: pj.job_state(pj.QUEUED, suspend=True),
         resumed=lambda: pj.job_state(pj.CREATED),
         failed=_pytorchjob_failed,
         logs=lambda *texts: {("GET", pj.LOG): [(200, t) for t in texts]}),
    Kind("TrainJob", "trainjobs.trainer.kubeflow.org", tj.JOBS, tj.JOB, tj.make_launcher,
         created=lambda: tj.job_state(),
         running=lambda: tj.job_state(ready=1),
         succeeded=lambda: tj.job_state(tj.COMPLETE),
         queued=lambda: tj.job_state(tj.QUEUED, suspend=True),
         resumed=lambda: tj.job_state(tj.RESUMED),
         failed=_trainjob_failed,
         logs=lambda *texts: {tj.log_route(): [(200, t) for t in texts]}),
]


@pytest.fixture(params=KINDS, ids=[k.name for k in KINDS])
def kind(request) -> Kind:
    return request.param


def test_a_finished_job_is_reported_and_kept(kind):
    launcher, http, lines = kind.make_launcher({
        ("POST", kind.jobs): [(201, kind.created()[1])],
        ("GET", kind.job): [kind.created(), kind.running(), kind.running(), kind.succeeded()],
        **kind.logs("2026-11-02T10:00:00Z epoch 1\n"),
    })
    launcher.launch(make_spec())
    (post,) = http.methods("POST")
    assert post[3]["kind"] == kind.name and post[3]["metadata"]["name"] == "exp-1"
    assert "epoch 1" in lines
    assert any(f"{kind.name} team-a/exp-1 succeeded" in line for line in lines), lines
    assert not http.methods("DELETE")


def test_failed_job_raises_its_reason_and_events_and_keeps_the_job(kind):
    event = {"metadata": {"name": "e1", "namespace": NS}, "type": "Warning",
             "reason": "BackoffLimitExceeded", "message": "Job has reached the backoff limit",
             "involvedObject": {"kind": kind.name, "name": "exp-1", "namespace": NS}}
    launcher, http, _ = kind.make_launcher({
        ("POST", kind.jobs): [(201, {})],
        ("GET", kind.job): [kind.running(), kind.failed("ReplicaFailed", "a replica failed")],
        ("GET", pj.EVENTS): [(200, {"kind": "EventList", "items": [event]})],
        **kind.logs(""),
    })
    with pytest.raises(JobFailed) as err:
        launcher.launch(make_spec())
    message = str(err.value)
    assert "ReplicaFailed" in message and "a replica failed" in message
    assert "Job has reached the backoff limit" in message
    assert not http.methods("DELETE")
    events_query = [c[2] for c in http.calls if c[1] == pj.EVENTS.replace("\\", "")][0]
    assert events_query["fieldSelector"] == "involvedObject.name=exp-1"


def test_suspended_time_is_counted_apart_from_running_time(kind):
    # 4 polls (40 s) in the queue would pass the 25 s run timeout if queued time counted.
    launcher, http, lines = kind.make_launcher({
        ("POST", kind.jobs): [(201, {})],
        ("GET", kind.job): [kind.queued()] * 4 + [kind.resumed(), kind.running(),
                                                   kind.succeeded()],
        **kind.logs(""),
    }, run_timeout_s=25)
    launcher.launch(make_spec())
    text = "\n".join(lines)
    assert f"{kind.name} team-a/exp-1 is waiting for Kueue admission (queue kfp-yolo)" in text
    assert "admitted after 0m40s queued" in text
    assert "succeeded: 0m20s admitted, 0m40s queued" in text
    assert not http.methods("DELETE")


def test_timeout_deletes_the_job(kind):
    launcher, http, _ = kind.make_launcher({
        ("POST", kind.jobs): [(201, {})],
        ("GET", kind.job): [kind.running()],
        **kind.logs(""),
    }, run_timeout_s=30)
    with pytest.raises(JobFailed, match=rf"{kind.name} team-a/exp-1 did not finish within "
                                        r"0m30s of admitted time"):
        launcher.launch(make_spec())
    (delete,) = http.methods("DELETE")
    assert delete[1] == kind.job and delete[2]["propagationPolicy"] == "Foreground"


def test_queue_timeout_deletes_the_job(kind):
    launcher, http, _ = kind.make_launcher({
        ("POST", kind.jobs): [(201, {})],
        ("GET", kind.job): [kind.queued()],
    }, queue_timeout_s=60)
    with pytest.raises(JobFailed, match=r"not admitted by Kueue within 1m00s \(queue 'kfp-yolo'\)"):
        launcher.launch(make_spec())
    assert len(http.methods("DELETE")) == 1


def test_sigterm_deletes_the_job_and_exits(kind):
    def running_then_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)  # what a terminated KFP run sends the step
        return kind.running()

    before = signal.getsignal(signal.SIGTERM)
    launcher, http, lines = kind.make_launcher({
        ("POST", kind.jobs): [(201, {})],
        ("GET", kind.job): [kind.running(), running_then_sigterm, kind.running()],
        **kind.logs(""),
    })
    with pytest.raises(SystemExit) as exited:
        launcher.launch(make_spec())
    assert exited.value.code == 128 + signal.SIGTERM
    (delete,) = http.methods("DELETE")
    assert delete[1] == kind.job
    assert any("SIGTERM" in line and f"deleting {kind.name} team-a/exp-1" in line
               for line in lines), lines
    assert signal.getsignal(signal.SIGTERM) == before


def test_forbidden_create_names_the_missing_permission(kind):
    plural, group = kind.resource.split(".", 1)
    message = (f'{kind.resource} is forbidden: User "system:serviceaccount:team-a:'
               f'default-editor" cannot create resource "{plural}" in API group "{group}" in '
               'the namespace "team-a"')
    launcher, http, _ = kind.make_launcher(
        {("POST", kind.jobs): [status_error(403, "Forbidden", message)]})
    with pytest.raises(UserError) as err:
        launcher.launch(make_spec())
    text = str(err.value)
    assert text.startswith("permission denied: this step's service account may not create "
                           f"{kind.resource} in namespace 'team-a'; grant 'create' on "
                           f"{kind.resource} there (the Role in k8s/base/rbac.yaml does)")
    assert err.value.exit_code == 2 and not http.methods("DELETE")


def test_conflict_adopts_the_job_of_an_earlier_try(kind):
    existing = kind.running()[1]
    existing["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "Pod", "name": "old-pod", "uid": "old-uid"}]
    launcher, http, lines = kind.make_launcher({
        ("POST", kind.jobs): [status_error(409, "AlreadyExists",
                                              f'{kind.resource} "exp-1" already exists')],
        ("GET", kind.job): [(200, existing), kind.succeeded()],
        ("PATCH", kind.job): [(200, existing)],
        **kind.logs(""),
    })
    launcher.launch(make_spec())
    assert any(f"adopting {kind.name} team-a/exp-1" in line for line in lines)
    (patch,) = http.methods("PATCH")
    assert [ref["uid"] for ref in patch[3]["metadata"]["ownerReferences"]] == ["old-uid",
                                                                               "1234-abcd"]
    assert set(patch[3]) == {"metadata"}  # the spec is left alone
    assert not http.methods("DELETE")


def test_conflict_with_a_different_job_is_refused(kind):
    other = kind.running()[1]
    other["metadata"]["annotations"][SPEC_ANNOTATION] = "something-else"
    launcher, http, _ = kind.make_launcher({
        ("POST", kind.jobs): [status_error(409, "AlreadyExists", "exists")],
        ("GET", kind.job): [(200, other)],
    })
    with pytest.raises(UserError, match=rf"a different {kind.name} named 'exp-1' already "
                                        rf"exists.*kubectl -n team-a delete {kind.name.lower()} "
                                        r"exp-1"):
        launcher.launch(make_spec())
    assert not http.methods("DELETE")


def test_a_passing_api_error_is_retried(kind):
    launcher, http, lines = kind.make_launcher({
        ("POST", kind.jobs): [(201, {})],
        ("GET", kind.job): [status_error(503, "ServiceUnavailable", "etcd leader changed"),
                            kind.succeeded()],
        **kind.logs(""),
    })
    launcher.launch(make_spec())
    assert any("retrying" in line for line in lines)
    assert not http.methods("DELETE")
