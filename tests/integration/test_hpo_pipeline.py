"""The search step in the compiled pipeline: between plan and train, its best values feeding
the training and the evaluation, the budget checked by the plan step (GPU placement with
launcher local: test_compile.py's GPU_TASKS)."""

from compiled_pipeline import _compile, _load, _tasks

SEARCH = "search-component"


def _param(task: dict, name: str) -> dict:
    return task["inputs"]["parameters"][name]


def test_the_best_values_feed_train_evaluate_and_export(tmp_path):
    document = _load(_compile(tmp_path, "hpo_trials=4"))[0]
    tasks = _tasks(document)
    train = tasks["train-component"][0]
    for name, output in (("imgsz", "imgsz"), ("lr0", "lr0"), ("hyp", "hyp"),
                         ("search", "summary")):
        assert _param(train, name) == {"taskOutputParameter": {
            "producerTask": SEARCH, "outputParameterKey": output}}, name
    assert _param(tasks["evaluate-component"][0], "imgsz")["taskOutputParameter"][
        "producerTask"] == SEARCH
    search = document["root"]["dag"]["tasks"][SEARCH]
    assert _param(search, "trial_gpu_h") == {"taskOutputParameter": {
        "producerTask": "plan-resources-component", "outputParameterKey": "trial_gpu_h"}}
    assert {"plan-resources-component", "prepare-dataset-component"} <= set(
        search["dependentTasks"])
    plan = document["root"]["dag"]["tasks"]["plan-resources-component"]
    assert _param(plan, "hpo_budget_gpu_h") == {"taskOutputParameter": {
        "producerTask": "validate-config-component", "outputParameterKey": "hpo_budget_gpu_h"}}
    assert search["cachingOptions"].get("enableCache", False) is False
    # hpo_trials is a run-time parameter: the UI turns the search on or off per run
    assert "hpo_trials" in document["root"]["inputDefinitions"]["parameters"]
