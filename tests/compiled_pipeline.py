"""The compiled pipeline as a test reads it: `kfp-yolo compile` run through the CLI, its two
YAML documents (PipelineSpec, PlatformSpec), and its tasks with the condition holding each."""

from __future__ import annotations

import yaml

from kfp_yolo.pipelines.cli import main


def _load(output):
    """(PipelineSpec document, PlatformSpec document): KFP writes both into one YAML file."""
    documents = list(yaml.safe_load_all(output.read_text()))
    return documents[0], (documents[1] if len(documents) > 1 else {})


def _compile(tmp_path, *overrides):
    output = tmp_path / "pipeline.yaml"
    args = ["compile", "-o", str(output)]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    return output


def _tasks(document: dict) -> dict[str, tuple[dict, str | None]]:
    """task name -> (task, name of the condition task holding it, or None at the root)."""
    tasks = {name: (task, None) for name, task in document["root"]["dag"]["tasks"].items()}
    for name, (task, _) in list(tasks.items()):
        inner = document["components"][task["componentRef"]["name"]].get("dag", {})
        tasks.update({child: (t, name) for child, t in inner.get("tasks", {}).items()})
    return tasks
