"""The compiled demo pipeline against its golden, in kfp's own snapshot style.

A change to the DAG's shape (a task, an input, a condition, a pod setting, a parameter or its
description) shows up as a diff of tests/golden/demo-pipeline.yaml, reviewed like code. Volatile
fields are left out: the SDK version and each step's embedded source (the step functions are
tested where they live; their text would make every step edit a golden edit).

Regenerate on purpose, then review `git diff tests/golden`:

    make golden    # = KFP_YOLO_UPDATE_GOLDEN=1 pytest tests/unit/test_pipeline_golden.py
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import yaml

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "demo-pipeline.yaml"
UPDATE_ENV = "KFP_YOLO_UPDATE_GOLDEN"


def normalized(path: Path) -> str:
    """The compiled YAML's documents without the volatile fields, as stable YAML text."""
    documents = list(yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader))
    pipeline = documents[0]
    pipeline.pop("sdkVersion", None)
    for executor in pipeline["deploymentSpec"]["executors"].values():
        container = executor.get("container", {})
        if "command" in container:  # [sh, -c, <install + run script>, <the step's source>]
            container["command"] = [*container["command"][:-1], "<the step's source>"]
    return yaml.safe_dump_all(documents, sort_keys=True, width=100)


def test_the_compiled_demo_pipeline_matches_its_golden(compiled_pipeline):
    text = normalized(compiled_pipeline())
    if os.environ.get(UPDATE_ENV) == "1":
        GOLDEN.write_text(text)
    expected = GOLDEN.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                        "golden", "compiled", n=2))
    assert text == expected, (f"the compiled pipeline changed; if on purpose, run `make golden` "
                              f"and review the diff:\n{diff[:6000]}")
