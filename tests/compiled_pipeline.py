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


def _tasks(document: dict) -> dict[str, tuple[dict, tuple[str, ...]]]:
    """task name -> (task, the condition tasks holding it, outermost first; () at the root).

    Conditions nest: the gate's If/Else is a `condition-branches` task holding one sub-DAG per
    branch, and deploy's If sits inside the gate's.
    """
    found: dict[str, tuple[dict, tuple[str, ...]]] = {}

    def walk(dag: dict, chain: tuple[str, ...]) -> None:
        for name, task in dag.get("tasks", {}).items():
            found[name] = (task, chain)
            inner = document["components"][task["componentRef"]["name"]].get("dag")
            if inner:
                walk(inner, (*chain, name))

    walk(document["root"]["dag"], ())
    return found
