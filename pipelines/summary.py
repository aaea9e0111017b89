"""The end-of-run summary of a local DAG run, read from each task's executor_output.json.

A failed step leaves no executor output but its failure record (boundary.FAILURE_FILE: type,
message, exit code) in its task folder; `run_failure` reads it, and `collect_summary` is the
one place that turns it into the summary's `failure` and `reason`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kfp_yolo.components.boundary import FAILURE_FILE, read_failure
from kfp_yolo.components.config.run_config import RunConfig

__all__ = ["ANSI", "TASKS", "TASK_ENDED", "TASK_STARTED", "collect_summary", "format_summary",
           "run_failure"]

# Task folder names kfp.local uses (the component function names, dashed), in DAG order.
TASKS = {
    "validate": "validate-config-component",
    "prepare": "prepare-dataset-component",
    "plan": "plan-resources-component",
    "search": "search-component",
    "train": "train-component",
    "evaluate": "evaluate-component",
    "export": "export-onnx-component",
    "tensorrt": "build-tensorrt-component",
    "publish": "publish-component",
}


# What kfp.local prints around each task (cmd_run follows the same lines for its progress).
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASK_STARTED = re.compile(r"Executing task '([^']+)'")
TASK_ENDED = re.compile(r"Task '([^']+)' finished with status (\w+)")


def run_failure(run_dir: Path | None, failed_task: str | None = None) -> dict | None:
    """{"step", "type", "message", "exit_code"} of the run's failed step, or None.

    The step's own record when it left one (every step's uncaught exception does); else, when
    kfp.local reported `failed_task` as failed, what is known without one (the step was
    killed, or ran out of memory, before it could write it).
    """
    records = sorted(run_dir.glob(f"*/{FAILURE_FILE}"), key=lambda p: p.stat().st_mtime) \
        if run_dir is not None and run_dir.is_dir() else []
    for path in reversed(records):
        record = read_failure(path.parent)
        if record is not None:
            return {"step": path.parent.name, **record}
    if failed_task is None:
        return None
    return {"step": failed_task, "type": "",
            "message": "it ended without a failure record (killed, or out of memory?)",
            "exit_code": 1}


def _executor_output(run_dir: Path | None, task: str) -> dict | None:
    if run_dir is None:
        return None
    path = run_dir / TASKS[task] / "executor_output.json"
    return json.loads(path.read_text()) if path.exists() else None


def _artifact(output: dict | None, name: str) -> dict:
    if not output:
        return {}
    artifacts = output.get("artifacts", {}).get(name, {}).get("artifacts", [])
    return artifacts[0] if artifacts else {}


def _params(output: dict | None) -> dict:
    return (output or {}).get("parameterValues", {})


def _training(output: dict | None) -> dict | None:
    """The launcher and the training's shape and speed, from the weights' metadata."""
    metadata = _artifact(output, "weights").get("metadata", {})
    if not metadata:
        return None
    return {"launcher": metadata.get("launcher"), **(metadata.get("training") or {})}


def _search(output: dict | None) -> dict | None:
    """The search's summary and the values that trained the model (None: no search ran)."""
    params = _params(output)
    if not params.get("summary"):
        return None
    return {**params["summary"], "trained_with": {"imgsz": params.get("imgsz"),
                                                  "lr0": params.get("lr0"),
                                                  **(params.get("hyp") or {})}}


def _format_search(search: dict) -> str:
    """'4 trials (tpe): 2 complete, 2 pruned, 0 failed; best trial 1, mAP50-95 0.41; ...'."""
    est = (f", {search['estimated_gpu_h']:.3g} GPU-h estimated on {search['pool']}"
           if search.get("estimated_gpu_h") is not None else "")
    budget = (f" of {search['budget_gpu_h']:g}" + (" (reached)" if search["budget_reached"]
                                                    else "") if search.get("budget_gpu_h")
              else "")
    values = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in search["trained_with"].items())
    return (f"{search['trials']} trials ({search['algorithm']}): {search['trials_complete']} "
            f"complete, {search['trials_pruned']} pruned, {search['trials_failed']} failed; "
            f"best trial {search['best_trial']:.0f}, mAP50-95 {search['best_map50_95']:.4f}; "
            f"spent {search['measured_gpu_h']:.3g} device-h measured{budget}{est}; trained with "
            f"{values}")


def _format_training(training: dict) -> str:
    """'TrainJob: 2 nodes x 4 processes (world_size 8), batch 8 per GPU, ...' for the table."""
    parts = [f"{training.get('launcher') or '?'}"]
    if "world_size" in training:
        per = "GPU" if training.get("device") == "cuda" else "process"
        workers = f"{training['workers']} dataloader workers"
        planned = training.get("workers_planned")
        if planned is not None and planned != training["workers"]:
            # ultralytics lowers the count (none on a CPU, at most the CPUs per process)
            workers += f" ({planned} planned, lowered by ultralytics)"
        parts.append(f"{training['nodes']} node(s) x {training['procs_per_node']} process(es) "
                     f"(world_size {training['world_size']}, {training['device']}), batch "
                     f"{training['batch_per_gpu']} per {per}, {workers}, cache "
                     f"{training['cache']}, {training['images_per_s']} images/s")
    return ": ".join(parts)


DEPLOY_TASK = "deploy-component"
"""Not in TASKS: unless deploy is kserve it never runs, and that is no failure."""


def _deploy_state(run_dir: Path | None, cfg: RunConfig, published: str,
                  failure: dict | None) -> str:
    """The deploy step's line (`published`: the publish step's): skipped and why, not run,
    failed, or the Ready InferenceService's URL."""
    if published != "succeeded":
        return published if published.startswith("skipped") else "not run"
    if cfg.deploy != "kserve":
        return f"skipped (deploy: {cfg.deploy})"
    if failure is not None and failure["step"] == DEPLOY_TASK:
        return "failed"
    path = run_dir / DEPLOY_TASK / "executor_output.json" if run_dir is not None else None
    if path is None or not path.exists():
        return "not run"
    url = json.loads(path.read_text()).get("parameterValues", {}).get("Output")
    return f"ready at {url}" if url else "skipped (nothing was published)"


def _format_gate(gate: dict, metrics: dict) -> str:
    """'passed: mAP50-95 0.6512 >= 0.5', 'not met: ...' or 'not evaluated (min ...)'."""
    score = metrics.get("mAP50-95")
    if gate["passed"] is None or score is None:
        return f"not evaluated (min_map50_95 {gate['min_map50_95']})"
    if gate["passed"]:
        return f"passed: mAP50-95 {score:.4f} >= min_map50_95 {gate['min_map50_95']}"
    return f"not met: mAP50-95 {score:.4f} < min_map50_95 {gate['min_map50_95']}"


def collect_summary(run_dir: Path | None, cfg: RunConfig, *, elapsed_s: float,
                    failed_task: str | None = None, stopped: str = "") -> dict:
    """status, reason, failure, per-step status, metrics, gate, artifact paths, parity, ...

    failed_task: the task kfp.local reported failed (used when it left no failure record);
    stopped: why the run was stopped before its end ("" = it was not).
    """
    failure = run_failure(run_dir, failed_task)
    outputs = {task: _executor_output(run_dir, task) for task in TASKS}
    steps = {task: ("succeeded" if out is not None else "not run") for task, out in outputs.items()}
    metrics = _artifact(outputs["evaluate"], "metrics").get("metadata", {})
    passed = _params(outputs["evaluate"]).get("Output")
    weights_uri = _artifact(outputs["train"], "weights").get("uri")
    onnx_uri = _artifact(outputs["export"], "onnx_model").get("uri")
    trt = _params(outputs["tensorrt"])
    parity = _artifact(outputs["export"], "parity").get("metadata", {})

    failed = next((task for task, out in outputs.items() if out is None), None)
    if passed is False:
        # the DAG's gate-not-met step failed the run with this same sentence (exit 1 here, FAILED
        # in the UI): the gate is the verdict, that step's failure record is not another one
        steps["export"] = steps["tensorrt"] = steps["publish"] = "skipped (gate)"
        status = "failed"
        verdict = _artifact(outputs["evaluate"], "report").get("metadata", {}).get("verdict")
        reason = f"quality gate not met: {verdict}"
    elif stopped:
        if failed is not None:
            steps[failed] = "stopped"
        status, reason = "stopped", stopped
    elif failure is not None or failed is not None:
        by_task = {name: task for task, name in {**TASKS, "deploy": DEPLOY_TASK}.items()}
        failed = by_task.get(failure["step"], failed) if failure is not None else failed
        if failed is not None:
            steps[failed] = "failed"
        status = "failed"
        # the step as the table names it (prepare), not kfp.local's task folder
        name = failed or (failure["step"] if failure is not None else "?")
        reason = (f"step {name} failed: {failure['message']}" if failure is not None
                  else f"step {name} failed")
    else:
        status, reason = "succeeded", ""
    if trt.get("status") == "skipped":
        steps["tensorrt"] = "skipped"
    published = _params(outputs["publish"]).get("Output")
    if published == "":
        steps["publish"] = "skipped (no registry_uri)"
    steps["deploy"] = _deploy_state(run_dir, cfg, steps["publish"], failure)
    return {
        "status": status,
        "reason": reason,
        "failure": failure if status == "failed" and passed is not False else None,
        "elapsed_s": round(elapsed_s, 1),
        "steps": steps,
        "metrics": metrics,
        "gate": {"min_map50_95": cfg.min_map50_95, "passed": passed},
        "artifacts": {
            "dataset": _artifact(outputs["prepare"], "dataset").get("uri"),
            "best_pt": str(Path(weights_uri) / "best.pt") if weights_uri else None,
            "onnx": str(Path(onnx_uri) / "model.onnx") if onnx_uri else None,
            "search_report": _artifact(outputs["search"], "report").get("uri")
            if _params(outputs["search"]).get("summary") else None,
            "training_report": _artifact(outputs["train"], "report").get("uri"),
            "evaluation_report": _artifact(outputs["evaluate"], "report").get("uri"),
            "published": published or None,
        },
        "onnx_parity": {"max_abs_diff": parity.get("max_abs_diff"),
                        "tolerance": cfg.onnx_tolerance} if parity else None,
        "tensorrt": {"status": trt.get("status", "not run"), "reason": trt.get("reason", "")},
        "plan": _params(outputs["plan"]) or None,
        "search": _search(outputs["search"]),
        "training": _training(outputs["train"]),
        "run_dir": str(run_dir) if run_dir else None,
        "config": cfg.model_dump(),
    }


def format_summary(summary: dict) -> str:
    """A fixed-width table for the end of `kfp-yolo run`."""
    reason = f" ({summary['reason']})" if summary["reason"] else ""
    rows = [("status", summary["status"] + reason)]
    rows += [(f"step {task}", state) for task, state in summary["steps"].items()]
    plan = summary.get("plan")
    if plan:
        # kfp.local places nothing: the pool is where a cluster run would go
        local = summary.get("config", {}).get("launcher") == "local"
        where = " (where a cluster run would go)" if local else ""
        rows.append(("plan", f"batch {plan.get('batch')}, peak {plan.get('peak_mib')} MiB per "
                             f"GPU, pool {plan.get('pool')}{where}"))
        if plan.get("batch_rule"):
            rows.append(("batch rule", plan["batch_rule"]))
        if plan.get("pool_rule"):
            rows.append(("pool rule", plan["pool_rule"]))
    if summary.get("search"):
        rows.append(("search", _format_search(summary["search"])))
    training = summary.get("training")
    if training:
        rows.append(("training", _format_training(training)))
        if (training.get("fine_tune") or {}).get("sentence"):  # what the base checkpoint gave
            rows.append(("fine-tune", training["fine_tune"]["sentence"]))
    for key in ("mAP50-95", "mAP50", "precision", "recall"):
        if key in summary["metrics"]:
            rows.append((key, f"{summary['metrics'][key]:.4f}"))
    rows.append(("gate", _format_gate(summary["gate"], summary["metrics"])))
    if summary["onnx_parity"]:
        rows.append(("onnx parity", f"max |diff| {summary['onnx_parity']['max_abs_diff']:.3g} "
                                    f"(tolerance {summary['onnx_parity']['tolerance']})"))
    trt = summary["tensorrt"]
    if trt["status"] != "not run":  # the step rows already say it did not run, and why
        rows.append(("tensorrt", trt["status"] + (f": {trt['reason']}" if trt["reason"] else "")))
    # KFP names the report files `report`, with no extension that says how to open them
    kinds = {"training_report": " (HTML)", "evaluation_report": " (Markdown)",
             "search_report": " (HTML)"}
    for name, path in summary["artifacts"].items():
        if path:
            rows.append((name, path + kinds.get(name, "")))
    rows.append(("wall time", f"{summary['elapsed_s']} s"))
    width = max(len(key) for key, _ in rows)
    line = "-" * 78
    return "\n".join([line, *(f"{key:<{width}}  {value}" for key, value in rows), line])
