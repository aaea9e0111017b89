"""Deterministic failures do not burn GPU restarts (issue 18): the pod's exit code says whether
a restart could help (training/node.py), and each job kind's policy reads it.

- PyTorchJob v1: restartPolicy ExitCode. The Training Operator retries 130, 137, 138 and 143
  (signals, and 138 = "user-defined retryable") and fails the job on any other code.
- TrainJob v2.3: runtimePatches cannot set a failure policy, so the ClusterTrainingRuntime's Job
  carries a podFailurePolicy (restartPolicy Never) that fails it on the permanent codes.
"""

from __future__ import annotations

import pytest
from k8s_validation import K8S, crd_validator, kustomize, validate_core
from kube_fakes import full_settings, make_spec

from kfp_yolo.components.launchers.pod import TRAIN_COMMAND
from kfp_yolo.components.launchers.pytorchjob import build_pytorchjob
from kfp_yolo.components.training.node import (
    EXIT_BAD_INPUT,
    EXIT_OUT_OF_MEMORY,
    EXIT_RETRYABLE,
    PERMANENT_EXITS,
    exit_code_for,
)

OPERATOR_RETRYABLE = {130, 137, 138, 143}
"""The Training Operator v1's IsRetryableExitCode: every other exit code is permanent."""


def test_exit_codes_mean_what_both_operators_read():
    assert set(PERMANENT_EXITS) == {EXIT_BAD_INPUT, EXIT_OUT_OF_MEMORY}
    for code in PERMANENT_EXITS:
        assert 1 <= code <= 127 and code not in OPERATOR_RETRYABLE
    assert EXIT_RETRYABLE in OPERATOR_RETRYABLE and EXIT_RETRYABLE >= 128


@pytest.mark.parametrize(("workers", "pod"), [
    ([2], EXIT_BAD_INPUT), ([1, 2], EXIT_BAD_INPUT), ([-9, 3], EXIT_OUT_OF_MEMORY),
    ([1], EXIT_RETRYABLE), ([-15], EXIT_RETRYABLE), ([1, -9], EXIT_RETRYABLE),
])
def test_the_pods_exit_code_follows_its_workers(workers, pod):
    assert exit_code_for(workers) == pod


def test_pytorchjob_restarts_only_on_retryable_exits():
    job = build_pytorchjob(make_spec(nodes=2, procs_per_node=4), full_settings())
    assert not list(crd_validator("kubeflow.org/v1", "PyTorchJob").iter_errors(job))
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        assert replica["restartPolicy"] == "ExitCode"
        (container,) = replica["template"]["spec"]["containers"]
        assert container["command"] == TRAIN_COMMAND


def test_the_trainjob_runtime_fails_its_job_on_permanent_exits():
    (runtime,) = kustomize(K8S / "trainer")
    assert not list(crd_validator("trainer.kubeflow.org/v1alpha1",
                                  "ClusterTrainingRuntime").iter_errors(runtime))
    (rjob,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    job_spec = rjob["template"]["spec"]
    pod = job_spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == TRAIN_COMMAND
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy needs it
    fail, ignore = job_spec["podFailurePolicy"]["rules"]
    assert fail == {"action": "FailJob", "onExitCodes": {
        "containerName": container["name"], "operator": "In", "values": list(PERMANENT_EXITS)}}
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    # what the JobSet controller creates from it is a valid batch/v1 Job
    validate_core({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "exp-1-node-0"},
                   "spec": job_spec})
