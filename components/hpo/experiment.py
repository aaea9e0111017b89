"""The Katib Experiment (kubeflow.org/v1beta1, Katib 0.19) of a search on a cluster: a pure
function of the training's TrainSpec, its ClusterSettings and the search space.

Each trial is a TrainJob (trainer.kubeflow.org/v1alpha1) built as the training's own
(`build_trainjob`: the same image, runtime, placement, and Kueue's queue and priority labels),
with its name and namespace left to Katib (its webhook wants them omitted), and the worker told
which trial it is and its values: `--trial ${trialParameters.trialName} --hyp
lr0=${trialParameters.lr0} ...`. Katib replaces those in the trial's text; kubelet expands only
`$(NAME)`, so they pass through it. The worker prints `map50_95=VALUE` after each epoch
(TrainSpec.metric_lines), which Katib's StdOut collector reads; `medianstop` stops a trial that
trails the median. Its `val_loss=VALUE` line is collected as an additional metric: the step
breaks ties between trials' mAP50-95 with it (hpo/objective.py). The CRD has no schema: tests
check every Experiment against the v1beta1 OpenAPI types, and `webhook_problems` against the
rules of Katib's admission webhook (pkg/webhook/v1beta1/experiment/validator/validator.go at
v0.19.0).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from kfp_yolo.components.hpo.space import SearchSpace
from kfp_yolo.components.launchers.cluster import ClusterSettings, job_name
from kfp_yolo.components.launchers.trainjob import CONTAINER, build_trainjob
from kfp_yolo.components.spec import TrainSpec

__all__ = ["GROUP", "LOSS_METRIC", "PLURAL", "VERSION", "build_experiment", "experiment_name",
           "webhook_problems"]

GROUP, VERSION, PLURAL = "kubeflow.org", "v1beta1", "experiments"
METRIC = "map50_95"  # = training.worker.METRIC_NAME (the worker does not import this module)
LOSS_METRIC = "val_loss"  # = training.worker.LOSS_NAME: the tie-break (hpo/objective.py)
# TrainJob conditions (Trainer v2.3): Complete or Failed, in Katib's gjson condition syntax.
SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
MEDIAN_STOP = {"min_trials_required": "2", "start_step": "1"}
"""medianstop compares a trial's metric at each step with the median of two finished trials
(Katib's default waits for 3 and step 4: a short search would never stop a trial)."""
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_PARAM_REF = re.compile(r"\$\{trialParameters\..+?\}")
_META_KEYS = ("Name", "Namespace", "Kind", "APIVersion", "Labels", "Annotations")


def experiment_name(run_id: str) -> str:
    """The Experiment's name: Katib names trials (and so their TrainJobs) `<name>-<8 chars>`."""
    return job_name(run_id)[:30].rstrip("-") + "-hpo"


def _parameters(space: SearchSpace) -> list[dict[str, Any]]:
    params = []
    for p in space.params:
        if p.choices:
            params.append({"name": p.name, "parameterType": "discrete",
                           "feasibleSpace": {"list": [str(c) for c in p.choices]}})
        else:
            params.append({"name": p.name, "parameterType": "double", "feasibleSpace": {
                "min": f"{p.low:g}", "max": f"{p.high:g}",
                "distribution": "logUniform" if p.log else "uniform"}})
    return params


def _trial_spec(spec: TrainSpec, cluster: ClusterSettings, space: SearchSpace) -> dict:
    job = build_trainjob(replace(spec, metric_lines=True), cluster)
    meta = job["metadata"]
    # Katib names the trial's TrainJob and owns it; labels (Kueue's queue) stay
    job["metadata"] = {"labels": meta.get("labels", {})}
    args = job["spec"]["trainer"]["args"]
    args += ["--trial", "${trialParameters.trialName}"]
    for name in space.names:
        args += ["--hyp", f"{name}=${{trialParameters.{name}}}"]
    return job


def build_experiment(spec: TrainSpec, cluster: ClusterSettings, space: SearchSpace, *,
                     trials: int, parallel: int = 1, algorithm: str = "tpe") -> dict:
    """The Experiment of a search: `trials` TrainJob trials of `spec` (its epochs are a
    trial's), `parallel` at a time, at most half of them (at least one) failing."""
    name = experiment_name(spec.run_id)
    trial_parameters = [{"name": "trialName", "reference": "${trialSpec.Name}",
                         "description": "the trial's name: its run id and output folder"}]
    trial_parameters += [{"name": n, "reference": n, "description": f"searched value {n}"}
                         for n in space.names]
    labels = dict(_trial_spec(spec, cluster, space)["metadata"]["labels"])
    metadata: dict[str, Any] = {"name": name, "namespace": cluster.namespace,
                                "labels": {k: v for k, v in labels.items()
                                           if not k.startswith("kueue.x-k8s.io/")}}
    owner = cluster.owner
    if owner and owner.namespace == cluster.namespace:
        from kfp_yolo.components.launchers.cluster import owner_reference

        metadata["ownerReferences"] = [owner_reference(owner)]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Experiment",
        "metadata": metadata,
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": METRIC,
                          "additionalMetricNames": [LOSS_METRIC]},
            "algorithm": {"algorithmName": algorithm},
            "earlyStopping": {"algorithmName": "medianstop", "algorithmSettings": [
                {"name": k, "value": v} for k, v in MEDIAN_STOP.items()]},
            "parallelTrialCount": parallel,
            "maxTrialCount": trials,
            "maxFailedTrialCount": max(1, trials // 2),
            "resumePolicy": "Never",
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
            "parameters": _parameters(space),
            "trialTemplate": {
                "primaryContainerName": CONTAINER,
                "successCondition": SUCCESS,
                "failureCondition": FAILURE,
                "retain": False,
                "trialParameters": trial_parameters,
                "trialSpec": _trial_spec(spec, cluster, space),
            },
        },
    }


def webhook_problems(experiment: dict) -> list[str]:
    """What Katib 0.19's admission webhook would refuse in `experiment` (empty: nothing).

    The rules of validator.go that apply to a StdOut-collected Experiment with a trialSpec:
    name, counts, objective, algorithm, early stopping, resume policy, parameters, and the
    trial template's parameters and their substitution.
    """
    import json

    problems = []
    spec = experiment.get("spec", {})
    if not _NAME.match(experiment.get("metadata", {}).get("name", "")):
        problems.append("metadata.name must be lower-case alphanumerics or '-', starting "
                        "with a letter")
    most, parallel = spec.get("maxTrialCount"), spec.get("parallelTrialCount")
    failed = spec.get("maxFailedTrialCount")
    if most is not None and most <= 0:
        problems.append("spec.maxTrialCount must be greater than 0")
    if parallel is not None and parallel <= 0:
        problems.append("spec.parallelTrialCount must be greater than 0")
    if failed is not None and (failed < 0 or (most is not None and failed > most)):
        problems.append("spec.maxFailedTrialCount must be 0 to spec.maxTrialCount")
    if parallel is not None and most is not None and parallel > most:
        problems.append("spec.parallelTrialCount must be at most spec.maxTrialCount")
    objective = spec.get("objective") or {}
    if objective.get("type") not in ("minimize", "maximize"):
        problems.append("spec.objective.type must be minimize or maximize")
    if not objective.get("objectiveMetricName"):
        problems.append("spec.objective.objectiveMetricName must be set")
    if objective.get("objectiveMetricName") in (objective.get("additionalMetricNames") or []):
        problems.append("spec.objective.additionalMetricNames must not hold the objective")
    if not (spec.get("algorithm") or {}).get("algorithmName"):
        problems.append("spec.algorithm.algorithmName must be set")
    if "earlyStopping" in spec and not spec["earlyStopping"].get("algorithmName"):
        problems.append("spec.earlyStopping.algorithmName must be set")
    if spec.get("resumePolicy", "") not in ("", "Never", "LongRunning", "FromVolume"):
        problems.append("spec.resumePolicy is not a ResumePolicyType")
    names = set()
    for i, p in enumerate(spec.get("parameters") or []):
        names.add(p.get("name"))
        kind, space = p.get("parameterType"), p.get("feasibleSpace") or {}
        if kind not in ("int", "double", "categorical", "discrete", ""):
            problems.append(f"spec.parameters[{i}].parameterType {kind!r} is not supported")
        if space.get("distribution", "") not in ("", "uniform", "logUniform", "normal",
                                                  "logNormal"):
            problems.append(f"spec.parameters[{i}].feasibleSpace.distribution is unsupported")
        if not space:
            problems.append(f"spec.parameters[{i}].feasibleSpace must be set")
        elif kind in ("int", "double") and (space.get("list") or not space.get("min")
                                             or not space.get("max")):
            problems.append(f"spec.parameters[{i}]: {kind} needs min and max, no list")
        elif kind in ("categorical", "discrete") and any(space.get(k) for k in
                                                         ("min", "max", "step")):
            problems.append(f"spec.parameters[{i}]: {kind} takes a list, no min/max/step")
    if not spec.get("parameters"):
        problems.append("spec.parameters must be set")
    template = spec.get("trialTemplate") or {}
    if not template.get("primaryContainerName"):
        problems.append("spec.trialTemplate.primaryContainerName must be set")
    if not template.get("successCondition") or not template.get("failureCondition"):
        problems.append("spec.trialTemplate needs successCondition and failureCondition")
    if template.get("trialParameters") is None or "trialSpec" not in template:
        return problems + ["spec.trialTemplate needs trialParameters and trialSpec"]
    text = json.dumps(template["trialSpec"])
    seen_names, seen_refs = set(), set()
    for i, tp in enumerate(template["trialParameters"]):
        name, ref = tp.get("name", ""), tp.get("reference", "")
        if not name or not ref or "{" in name or "}" in name:
            problems.append(f"trialParameters[{i}] needs a name without braces and a reference")
            continue
        if name in seen_names or ref in seen_refs:
            problems.append(f"trialParameters[{i}] repeats a name or reference")
            continue
        seen_names.add(name)
        seen_refs.add(ref)
        meta = re.match(r"^\$\{trialSpec\.(.+)\}$", ref)
        is_meta = bool(meta) and (meta.group(1) in _META_KEYS or re.match(
            r"^(Labels|Annotations)\[.+\]$", meta.group(1)) is not None)
        if names and not is_meta and ref not in names:
            problems.append(f"trialParameters[{i}].reference {ref!r} is not in spec.parameters")
        placeholder = f"${{trialParameters.{name}}}"
        if placeholder not in text:
            problems.append(f"trialParameters[{i}] {name!r} is not used in the trialSpec")
            return problems
        text = text.replace(placeholder, "test-value")
    left = _PARAM_REF.findall(text)
    if left:
        problems.append(f"the trialSpec uses {left} that trialParameters do not define")
    trial = template["trialSpec"]
    if trial.get("metadata", {}).get("name") or trial.get("metadata", {}).get("namespace"):
        problems.append("the trialSpec's metadata.name and namespace must be left out")
    if not trial.get("apiVersion") or not trial.get("kind"):
        problems.append("the trialSpec needs apiVersion and kind")
    return problems
