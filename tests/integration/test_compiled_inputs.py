"""Every shipped config compiles to IR that the KFP driver can resolve: the driver's rule,
checked statically (pipelines/ir_check.py) on each DAG, the root and each dsl.If sub-DAG.

Issue 25: export-onnx and publish inside the quality gate's sub-DAG read `step_cpu` and
`step_memory`, which that sub-DAG did not declare; a run that passed the gate failed there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kfp_yolo.pipelines.ir_check import dangling_inputs

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {
    # the defaults' launcher is local: the demo config the golden test compiles too
    "defaults-local": (None, ()),
    **{f"defaults-{launcher}": (None, (f"launcher={launcher}",))
       for launcher in ("pytorchjob", "trainjob", "auto")},
    **{f"examples/{path.name}": (path, ()) for path in sorted((ROOT / "examples").glob("*.yaml"))},
    "k8s/gitops/train.yaml": (ROOT / "k8s" / "gitops" / "train.yaml", ()),
}


def _documents(path: Path) -> tuple[dict, dict]:
    pipeline, *rest = yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader)
    return pipeline, (rest[0] if rest else {})


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_dag_declares_every_input_it_reads(name, compiled_pipeline):
    pipeline, platform = _documents(compiled_pipeline(*SHIPPED[name]))
    dags = [key for key, spec in pipeline["components"].items() if "dag" in spec]
    assert dags, "no sub-DAG: the quality gate's dsl.If is gone"
    assert dangling_inputs(pipeline, platform) == []


def test_the_rule_finds_a_setting_its_sub_dag_does_not_declare():
    """The check itself: the IR of issue 25 (a cpu request read in a sub-DAG that does not
    declare it, a secret's name likewise) is named, DAG, task and input."""
    pipeline = {
        "root": {"inputDefinitions": {"parameters": {"step_cpu": {}}},
                 "dag": {"tasks": {"condition-1": {
                     "componentRef": {"name": "comp-condition-1"},
                     "triggerPolicy": {"condition": "inputs.parameter_values['pipelinechannel"
                                                    "--evaluate-Output'] == true"},
                     "inputs": {"parameters": {}}}}}},
        "components": {
            "comp-condition-1": {"dag": {"tasks": {"export": {
                "componentRef": {"name": "comp-export"},
                "inputs": {"parameters": {"pipelinechannel--step_cpu": {
                    "componentInputParameter": "pipelinechannel--step_cpu"}}}}}}},
            "comp-export": {"executorLabel": "exec-export"},
        },
    }
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {"exec-export": {
        "secretAsEnv": [{"secretNameParameter": {
            "componentInputParameter": "pipelinechannel--storage_secret"}}]}}}}}}
    assert dangling_inputs(pipeline, platform) == [
        "root task condition-1's condition reads 'pipelinechannel--evaluate-Output', not one of "
        "its inputs",
        "comp-condition-1 task export reads parameter 'pipelinechannel--step_cpu', which "
        "comp-condition-1 does not declare",
        "comp-condition-1 task export's kubernetes setting reads "
        "'pipelinechannel--storage_secret', which comp-condition-1 does not declare",
    ]
