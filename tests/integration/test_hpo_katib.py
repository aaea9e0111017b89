"""The search on a cluster: the Katib Experiment (against Katib 0.19's v1beta1 OpenAPI types and
its admission webhook's rules), its TrainJob trials (against the Trainer v2.3.0 CRD, with the
Kueue labels), the worker's reading of a trial's substituted arguments, and the Experiment's
lifecycle with the real kubernetes client against a scripted API (as test_trainjob.py does).
"""

from __future__ import annotations

import copy
import json
import re
import signal

import jsonschema
import pytest
import yaml
from k8s_validation import forbid_unknown
from kube_fakes import NS, FakeClock, ScriptedHTTP, make_spec, status_error
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from testdata import SCHEMAS
from trainjob_fakes import settings

from kfp_yolo.components.errors import JobFailed, UserError
from kfp_yolo.components.hpo.budget import TrialCost
from kfp_yolo.components.hpo.experiment import build_experiment, webhook_problems
from kfp_yolo.components.hpo.katib import KatibSearch
from kfp_yolo.components.hpo.result import best_of
from kfp_yolo.components.hpo.space import SearchSpace
from kfp_yolo.components.launchers.cluster import Owner
from kfp_yolo.components.training.worker import trial_spec

SPACE = SearchSpace.from_config({"hpo_lr0": "0.0005..0.02", "hpo_mosaic": "0..1",
                                 "hpo_hsv": "0.5..1.5", "hpo_imgsz": "320,640", "imgsz": 640})
EXPS = rf"/apis/kubeflow.org/v1beta1/namespaces/{NS}/experiments"
EXP = EXPS + "/exp-1-hpo"
TRIALS = rf"/apis/kubeflow.org/v1beta1/namespaces/{NS}/trials"


@pytest.fixture(scope="module")
def experiment_schema() -> jsonschema.Validator:
    path = SCHEMAS / "katib-v1beta1.openapi.json"
    if not path.exists():
        pytest.skip(f"no Katib OpenAPI spec at {path}")
    spec = json.loads(path.read_text())
    schemas = spec["components"]["schemas"]

    # trialSpec is an open object in these types: the TrainJob is checked against its CRD
    for schema in schemas.values():
        forbid_unknown(schema)  # a field the types do not list is an error
    registry = Registry().with_resource("urn:katib", Resource.from_contents(
        spec, default_specification=DRAFT7))
    root = {"$ref": "urn:katib#/components/schemas/v1beta1.Experiment"}
    return jsonschema.Draft7Validator(root, registry=registry)


def experiment(**changes) -> dict:
    values = dict(trials=6, parallel=2, algorithm="tpe")
    values.update(changes)
    return build_experiment(make_spec(), settings(), SPACE, **values)


def test_the_experiment_is_valid_against_katibs_types_and_webhook(experiment_schema):
    from k8s_validation import crd_validator

    exp = experiment()
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}"
              for e in experiment_schema.iter_errors(exp)]
    assert not errors
    assert webhook_problems(exp) == []
    trial = exp["spec"]["trialTemplate"]["trialSpec"]
    # Katib substitutes the placeholders; the result is a TrainJob the Trainer's CRD takes
    text = json.dumps(trial)
    for p in exp["spec"]["trialTemplate"]["trialParameters"]:
        text = text.replace(f"${{trialParameters.{p['name']}}}", "1")
    filled = {**json.loads(text), "metadata": {"name": "exp-1-hpo-abcd1234", "namespace": NS,
                                                **trial["metadata"]}}
    assert not list(crd_validator("trainer.kubeflow.org/v1alpha1", "TrainJob")
                    .iter_errors(filled))


def test_the_strict_types_refuse_an_unknown_field(experiment_schema):
    exp = experiment()
    exp["spec"]["objective"]["objectiveMetric"] = "map50_95"  # a typo of objectiveMetricName
    assert list(experiment_schema.iter_errors(exp))


def test_trials_are_trainjobs_with_the_queue_labels_and_the_metric_lines():
    exp = experiment()
    spec = exp["spec"]
    # Katib's objective is the map50_95 line; the val_loss line (the tie-break) is collected too
    assert spec["objective"] == {"type": "maximize", "objectiveMetricName": "map50_95",
                                 "additionalMetricNames": ["val_loss"]}
    assert spec["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}}
    assert spec["earlyStopping"]["algorithmName"] == "medianstop"
    template = spec["trialTemplate"]
    assert template["primaryContainerName"] == "node"
    trial = template["trialSpec"]
    assert trial["kind"] == "TrainJob" and "name" not in trial["metadata"]
    assert trial["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "kfp-yolo"
    assert trial["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == \
        "kfp-yolo-retraining"
    assert trial["spec"]["suspend"] is True  # Kueue admits each trial against the quota
    # Kueue's labels are the trials', not the Experiment's (Kueue does not queue Experiments)
    assert not any(k.startswith("kueue") for k in exp["metadata"]["labels"])
    args = trial["spec"]["trainer"]["args"]
    assert json.loads(args[args.index("--spec") + 1].replace("$$", "$"))["metric_lines"]
    params = {p["name"]: p for p in spec["parameters"]}
    assert params["lr0"]["feasibleSpace"] == {"min": "0.0005", "max": "0.02",
                                               "distribution": "logUniform"}
    assert params["imgsz"] == {"name": "imgsz", "parameterType": "discrete",
                               "feasibleSpace": {"list": ["320", "640"]}}


def test_the_worker_reads_a_trials_substituted_arguments():
    exp = experiment()
    args = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]["args"]
    values = {"trialName": "exp-1-hpo-x7k2p9qd", "lr0": "0.0031", "mosaic": "0.25",
              "hsv": "0.5", "imgsz": "320"}
    text = " ".join(args)
    for name, value in values.items():
        text = text.replace(f"${{trialParameters.{name}}}", value)
    assert "${" not in text
    filled = [re.sub(r"\$\{trialParameters\.(\w+)\}", lambda m: values[m.group(1)], a)
              for a in args]
    tail = filled[filled.index("--spec") + 2:]
    hyp = [tail[i + 1] for i, a in enumerate(tail) if a == "--hyp"]
    spec = trial_spec(make_spec(), tail[tail.index("--trial") + 1], hyp)
    assert spec.run_id == "exp-1-hpo-x7k2p9qd" and spec.imgsz == 320 and spec.lr0 == 0.0031
    assert spec.hyp == {"mosaic": 0.25, "hsv_h": 0.0075, "hsv_s": 0.35, "hsv_v": 0.2}
    assert spec.output_uri.endswith("/exp-1-hpo-x7k2p9qd")


@pytest.mark.parametrize("change, problem", [
    (lambda e: e["spec"].update(parallelTrialCount=9), "parallelTrialCount must be at most"),
    (lambda e: e["spec"].update(maxFailedTrialCount=7), "maxFailedTrialCount must be 0 to"),
    (lambda e: e["spec"]["trialTemplate"]["trialParameters"].append(
        {"name": "momentum", "reference": "momentum"}), "'momentum' is not in spec.parameters"),
    (lambda e: e["spec"]["trialTemplate"]["trialSpec"]["metadata"].update(name="x"),
     "metadata.name and namespace must be left out"),
    (lambda e: e["spec"]["parameters"][0]["feasibleSpace"].update(list=["1"]),
     "double needs min and max, no list"),
    (lambda e: e["spec"]["objective"].update(additionalMetricNames=["map50_95"]),
     "must not hold the objective"),
    (lambda e: e["metadata"].update(name="1st"), "metadata.name must be"),
])
def test_the_webhook_rules_catch_what_katib_refuses(change, problem):
    exp = copy.deepcopy(experiment())
    change(exp)
    assert any(problem in p for p in webhook_problems(exp)), webhook_problems(exp)


def test_an_unused_trial_parameter_is_refused():
    exp = experiment()
    args = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]["args"]
    args[:] = [a for a in args if "trialParameters.mosaic" not in a]
    assert any("'mosaic' is not used" in p for p in webhook_problems(exp))


def test_job_render_prints_the_experiment_when_searching(capsys, experiment_schema):
    from kfp_yolo.pipelines.cli import main

    assert main(["job", "render", "--set", "hpo_trials=4", "--set", "queue=gpu",
                 "--set", "hpo_imgsz=64,128"]) == 0
    out = capsys.readouterr().out
    exp = yaml.safe_load(out)
    assert exp["kind"] == "Experiment" and exp["spec"]["maxTrialCount"] == 4
    assert not list(experiment_schema.iter_errors(exp)) and webhook_problems(exp) == []
    trial = exp["spec"]["trialTemplate"]["trialSpec"]
    assert trial["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"
    assert json.loads(trial["spec"]["trainer"]["args"][
        trial["spec"]["trainer"]["args"].index("--spec") + 1].replace("$$", "$"))["epochs"] == 3


# ---- the Experiment's lifecycle against a scripted API ---------------------------------------


def exp_state(condition: str = "", **counts) -> tuple[int, dict]:
    exp = copy.deepcopy(experiment())
    exp["status"] = {**counts, "conditions": [{"type": "Created", "status": "True"}] + (
        [{"type": condition, "status": "True", "message": f"Experiment is {condition}"}]
        if condition else [])}
    if counts.get("trialsSucceeded"):
        exp["status"]["currentOptimalTrial"] = {"observation": {"metrics": [
            {"name": "map50_95", "max": "0.41", "min": "0.1", "latest": "0.41"}]}}
    return 200, exp


def trial(name: str, state: str, value: str | None, lr0: str, created: str,
          loss: str | None = None) -> dict:
    status = {"conditions": [{"type": state, "status": "True"}],
              "startTime": "2026-12-03T10:00:00Z", "completionTime": "2026-12-03T10:30:00Z"}
    if value is not None:
        status["observation"] = {"metrics": [{"name": "map50_95", "max": value, "min": "0",
                                              "latest": value}]}
        if loss is not None:
            status["observation"]["metrics"].append(
                {"name": "val_loss", "max": "9.5", "min": loss, "latest": loss})
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"parameterAssignments": [{"name": "lr0", "value": lr0},
                                              {"name": "imgsz", "value": "320"}]},
            "status": status}


TRIAL_LIST = (200, {"items": [
    trial("exp-1-hpo-b", "EarlyStopped", "0.12", "0.02", "2026-12-03T10:01:00Z"),
    trial("exp-1-hpo-a", "Succeeded", "0.41", "0.003", "2026-12-03T10:00:00Z"),
    trial("exp-1-hpo-c", "Failed", None, "0.0005", "2026-12-03T10:02:00Z")]})


def make_search(routes: dict, **changes) -> tuple[KatibSearch, ScriptedHTTP, list[str]]:
    from kubernetes import client

    http = ScriptedHTTP({("DELETE", EXP): [(200, {"kind": "Status", "status": "Success"})],
                         ("GET", TRIALS): [TRIAL_LIST], **routes})
    api = client.ApiClient(client.Configuration(host="http://kube.test"))
    api.rest_client.pool_manager = http
    clock, lines = FakeClock(), []
    owner = Owner(name="step-pod", uid="1234", namespace=NS)
    exp = build_experiment(make_spec(), settings(owner=owner), SPACE, trials=6, parallel=2)
    values = dict(world_size=1, api_client=api, out=lines.append, clock=clock,
                  sleep=clock.sleep, poll_s=30, cost=TrialCost(0.5, "a100-40", 2.74, 3))
    values.update(changes)
    return KatibSearch(exp, **values), http, lines


def test_a_finished_search_reads_its_trials_and_keeps_the_experiment():
    search, http, lines = make_search({
        ("POST", EXPS): [(201, experiment())],
        ("GET", EXP): [exp_state(trialsRunning=2), exp_state(trialsSucceeded=1, trialsRunning=1),
                       exp_state("Succeeded", trialsSucceeded=1, trialsEarlyStopped=1,
                                 trialsFailed=1)]})
    records = search.run()
    (post,) = http.methods("POST")
    assert post[3]["metadata"]["ownerReferences"][0]["uid"] == "1234"
    assert not http.methods("DELETE")
    assert [(r.name, r.state, r.metrics) for r in records] == [
        ("exp-1-hpo-a", "complete", (0.41,)), ("exp-1-hpo-b", "pruned", (0.12,)),
        ("exp-1-hpo-c", "failed", ())]
    assert records[0].values == {"lr0": 0.003, "imgsz": 320.0}
    assert records[0].measured_gpu_h == 0.5  # 30 minutes on one GPU
    assert any("best map50_95 0.41, about 0.5 GPU-h" in line for line in lines)
    selector = [c[2]["labelSelector"] for c in http.calls if c[1] == TRIALS][0]
    assert selector == "katib.kubeflow.org/experiment=exp-1-hpo"


def test_the_budget_stops_the_search_and_deletes_the_experiment():
    search, http, lines = make_search({
        ("POST", EXPS): [(201, experiment())],
        ("GET", EXP): [exp_state(trialsSucceeded=1, trialsRunning=2),
                       exp_state(trialsSucceeded=2, trialsEarlyStopped=1, trialsRunning=2)]},
        budget_gpu_h=1.2)
    search.run()
    assert search.budget_reached
    assert len(http.methods("DELETE")) == 1
    assert http.methods("DELETE")[0][2]["propagationPolicy"] == "Foreground"
    assert any("budget of 1.2 GPU-h spent after 3 trials" in line for line in lines)


def test_a_failed_experiment_is_job_failed_and_deleted():
    search, http, _ = make_search({
        ("POST", EXPS): [(201, experiment())],
        ("GET", EXP): [exp_state("Failed", trialsFailed=3)]})
    with pytest.raises(JobFailed, match="Experiment team-a/exp-1-hpo failed: Experiment is "
                                        "Failed"):
        search.run()
    assert len(http.methods("DELETE")) == 1


def test_a_403_names_the_verb_and_the_role():
    search, http, _ = make_search({("POST", EXPS): [status_error(
        403, "Forbidden", 'experiments.kubeflow.org is forbidden: User "sa" cannot create')]})
    with pytest.raises(UserError, match=r"may not create experiments.kubeflow.org in namespace "
                                        r"'team-a'; grant it \(the Role kfp-yolo-search"):
        search.run()
    assert not http.methods("DELETE")  # nothing was created


def test_a_timeout_deletes_the_experiment():
    search, http, _ = make_search({("POST", EXPS): [(201, experiment())],
                                   ("GET", EXP): [exp_state(trialsRunning=2)]}, timeout_s=90)
    with pytest.raises(JobFailed, match="did not finish within 90 s"):
        search.run()
    assert len(http.methods("DELETE")) == 1


def test_a_stopped_step_deletes_the_experiment():
    """SIGTERM (the run was stopped in the UI) while the search waits: the Experiment and its
    trials are deleted before the step exits 143."""
    def terminate():
        signal.raise_signal(signal.SIGTERM)
        return exp_state(trialsRunning=2)

    search, http, lines = make_search({("POST", EXPS): [(201, experiment())],
                                       ("GET", EXP): [exp_state(trialsRunning=2), terminate]})
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with pytest.raises(SystemExit) as stopped:
            search.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 143
    assert len(http.methods("DELETE")) == 1
    assert any("deleted Experiment team-a/exp-1-hpo" in line for line in lines)



def test_the_validation_loss_is_read_and_breaks_a_tie_of_map50_95():
    tied = (200, {"items": [
        trial("exp-1-hpo-a", "Succeeded", "0.0", "0.003", "2026-12-03T10:00:00Z", loss="7.25"),
        trial("exp-1-hpo-b", "Succeeded", "0.0", "0.02", "2026-12-03T10:01:00Z", loss="6.5"),
        trial("exp-1-hpo-c", "Succeeded", "0.0", "0.0005", "2026-12-03T10:02:00Z")]})
    search, _, _ = make_search({("POST", EXPS): [(201, experiment())],
                                ("GET", EXP): [exp_state("Succeeded", trialsSucceeded=3)],
                                ("GET", TRIALS): [tied]})
    records = search.run()
    # Katib keeps a metric's min, max and latest: the lowest loss beside the best mAP50-95
    assert [(r.metrics, r.val_losses) for r in records] == [
        ((0.0,), (7.25,)), ((0.0,), (6.5,)), ((0.0,), ())]
    assert best_of(records).name == "exp-1-hpo-b"
