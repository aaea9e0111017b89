"""The KFP driver's input rule, checked on compiled IR before anything is uploaded.

KFP's driver resolves a task's inputs in the DAG that holds it: a `componentInputParameter`
(or `componentInputArtifact`) must be an input that DAG declares, and a `taskOutputParameter`
must name a task of the same DAG. The compiler only adds a pipeline parameter to a `dsl.If`
sub-DAG's inputs when the task registers it as a channel; a pod setting given from a parameter
after the fact (`set_cpu_request(p["step_cpu"])`) is not registered, and the run fails once the
sub-DAG starts ("Parent pipeline input argument ... not found"), hours into a cluster run. The
kubernetes platform settings (secretAsEnv, nodeAffinityJson, ...) are resolved the same way,
against the inputs of the DAG that holds the task.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["dangling_inputs"]

_CONDITION_INPUT = re.compile(r"inputs\.parameter_values\['([^']+)'\]")


def dangling_inputs(pipeline: dict, platform: dict | None = None) -> list[str]:
    """Every input that some DAG of the compiled IR reads without declaring it, as sentences.

    Args:
        pipeline: the PipelineSpec document of a compiled YAML.
        platform: its PlatformSpec document (the second YAML document), if any.
    """
    executors = ((platform or {}).get("platforms", {}).get("kubernetes", {})
                 .get("deploymentSpec", {}).get("executors", {}))
    components = pipeline.get("components", {})
    dags = {"root": pipeline["root"], **{name: spec for name, spec in components.items()
                                        if "dag" in spec}}
    problems = []
    for dag_name, spec in dags.items():
        declared = spec.get("inputDefinitions", {})
        params, artifacts = set(declared.get("parameters", {})), set(declared.get("artifacts", {}))
        tasks = spec["dag"].get("tasks", {})
        for task_name, task in tasks.items():
            where = f"{dag_name} task {task_name}"
            problems += [f"{where} reads {kind} {name!r}, which {dag_name} does not declare"
                         for kind, name in _component_inputs(task)
                         if name not in (params if kind == "parameter" else artifacts)]
            problems += [f"{where} reads the output of {producer!r}, not a task of {dag_name}"
                         for producer in _producers(task) if producer not in tasks]
            condition = task.get("triggerPolicy", {}).get("condition", "")
            own = set(task.get("inputs", {}).get("parameters", {}))
            problems += [f"{where}'s condition reads {name!r}, not one of its inputs"
                         for name in _CONDITION_INPUT.findall(condition) if name not in own]
            label = components.get(task["componentRef"]["name"], {}).get("executorLabel")
            problems += [f"{where}'s kubernetes setting reads {name!r}, which {dag_name} does "
                         f"not declare" for name in _platform_inputs(executors.get(label, {}))
                         if name not in params]
    return problems


def _component_inputs(task: dict) -> Iterator[tuple[str, str]]:
    inputs = task.get("inputs", {})
    for spec in inputs.get("parameters", {}).values():
        if "componentInputParameter" in spec:
            yield "parameter", spec["componentInputParameter"]
    for spec in inputs.get("artifacts", {}).values():
        if "componentInputArtifact" in spec:
            yield "artifact", spec["componentInputArtifact"]


def _producers(task: dict) -> Iterator[str]:
    inputs = task.get("inputs", {})
    for kind, key in (("parameters", "taskOutputParameter"), ("artifacts", "taskOutputArtifact")):
        for spec in inputs.get(kind, {}).values():
            if key in spec:
                yield spec[key]["producerTask"]


def _platform_inputs(node: object) -> Iterator[str]:
    """Every componentInputParameter anywhere in an executor's kubernetes config."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "componentInputParameter" and isinstance(value, str):
                yield value
            else:
                yield from _platform_inputs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _platform_inputs(item)
