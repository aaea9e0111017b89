"""One golden per job kind: the job `kfp-yolo job render` prints for a 2-node x 4-GPU run in a
Kueue queue, compared with its checked-in example (k8s/examples/<kind>.yaml, which admins
read and kubectl applies). Regenerate on purpose with KFP_YOLO_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from kube_fakes import full_settings, make_spec

from kfp_yolo.components.launchers.kinds import KINDS

EXAMPLES = Path(__file__).resolve().parents[2] / "k8s" / "examples"
SETTINGS = {
    "pytorchjob": {},
    "trainjob": {"priority_class": ""},  # a TrainJob cannot carry a pod PriorityClass
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_rendered_job_matches_its_golden_example(kind):
    job_kind = KINDS[kind]
    job = job_kind.build(make_spec(), full_settings(owner=None, **SETTINGS[kind]))
    header = (f"# Example: the {job['kind']} of a 2-node x 4-GPU run in a Kueue queue.\n"
              "# Golden file of tests/unit/test_job_golden.py: regenerate on purpose with\n"
              "# KFP_YOLO_UPDATE_GOLDEN=1.\n")
    text = header + yaml.safe_dump(job, sort_keys=False, width=100)
    golden = EXAMPLES / f"{kind}.yaml"
    if os.environ.get("KFP_YOLO_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.read_text() == text, "the job changed: check it, then regenerate the golden"
