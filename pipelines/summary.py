"""The end-of-run summary of a local DAG run, read from each task's executor_output.json.

A failed step leaves no executor output; why it failed is the last exception line of its log,
which `step_failure` finds in kfp.local's output (the step's traceback is in that log only).
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from kfp_yolo.components.errors import JobFailed, UserError
from kfp_yolo.pipelines.config import RunConfig

__all__ = ["ANSI", "TASKS", "TASK_ENDED", "TASK_STARTED", "StepFailure", "collect_summary",
           "format_summary", "step_failure"]

# Task folder names kfp.local uses (the component function names, dashed), in DAG order.
TASKS = {
    "prepare": "prepare-dataset-component",
    "plan": "plan-resources-component",
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
_FAILED_TASK = re.compile(r"Task '([^']+)' finished with status FAILURE")
_EXCEPTION = re.compile(r"^(?P<indent>\s*)(?P<cls>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*): (?P<msg>.+)$")


@dataclass(frozen=True)
class StepFailure:
    """Why a step of a local run failed, as its log tells."""

    task: str
    """kfp.local's task name, e.g. prepare-dataset-component."""
    message: str
    """The step's one sentence (its exception's message), or what is known without one."""
    exit_code: int
    """2 when the step refused bad input (a UserError), else 1."""


def _exit_code(cls_path: str) -> int | None:
    """2 for a UserError (or subclass), 1 for JobFailed, None for anything else or unknown."""
    module, _, name = cls_path.rpartition(".")
    cls = None
    # only our own modules: importing whatever a step's last line names could load torch or
    # ultralytics into this process for nothing
    if module.startswith("kfp_yolo."):
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):
            cls = None
    if not isinstance(cls, type):
        return {"UserError": 2, "JobFailed": 1}.get(name)
    if issubclass(cls, UserError):
        return 2
    return 1 if issubclass(cls, JobFailed) else None


def step_failure(log: str) -> StepFailure | None:
    """The task that failed in kfp.local's output and the last exception line of its log."""
    lines = [ANSI.sub("", line) for line in log.splitlines()]
    failed = [m.group(1) for line in lines if (m := _FAILED_TASK.search(line))]
    if not failed:
        return None
    task = failed[-1]
    end = max(i for i, line in enumerate(lines) if _FAILED_TASK.search(line))
    start = max((i for i, line in enumerate(lines[:end]) if f"Executing task '{task}'" in line),
                default=0)
    segment = lines[start:end]
    tracebacks = [i for i, line in enumerate(segment) if line.strip() == "Traceback (most "
                  "recent call last):"]
    if not tracebacks:
        return StepFailure(task, "it ended without an error message (killed, or out of "
                                 "memory?)", 1)
    indent = len(segment[tracebacks[-1]]) - len(segment[tracebacks[-1]].lstrip())
    found = None
    for line in segment[tracebacks[-1] + 1:]:
        match = _EXCEPTION.match(line)
        if match and len(match.group("indent")) == indent:
            found = match
    if found is None:
        return StepFailure(task, "it ended in a traceback without a message", 1)
    code = _exit_code(found.group("cls"))
    if code is None:  # not one of ours: name the exception, it is a fault or a bug
        cls = found.group("cls").rpartition(".")[2]
        return StepFailure(task, f"{cls}: {found.group('msg').strip()}", 1)
    return StepFailure(task, found.group("msg").strip(), code)


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


def _format_training(training: dict) -> str:
    """'TrainJob: 2 nodes x 4 processes (world_size 8), batch 8 per GPU, ...' for the table."""
    parts = [f"{training.get('launcher') or '?'}"]
    if "world_size" in training:
        parts.append(f"{training['nodes']} node(s) x {training['procs_per_node']} process(es) "
                     f"(world_size {training['world_size']}, {training['device']}), batch "
                     f"{training['batch_per_gpu']} per GPU, {training['workers']} dataloader "
                     f"workers, cache {training['cache']}, {training['images_per_s']} images/s")
    return ": ".join(parts)


def collect_summary(run_dir: Path | None, cfg: RunConfig, *, elapsed_s: float,
                    failure: StepFailure | None = None) -> dict:
    """status, reason, per-step status, metrics, gate, artifact paths, parity, tensorrt.

    failure: what the run's log says about a failed step (step_failure), for the reason.
    """
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
        steps["export"] = steps["tensorrt"] = steps["publish"] = "skipped (gate)"
        status = "failed"
        verdict = _artifact(outputs["evaluate"], "report").get("metadata", {}).get("verdict")
        reason = f"quality gate not met: {verdict}"
    elif failure is not None or failed is not None:
        by_task = {name: task for task, name in TASKS.items()}
        failed = by_task.get(failure.task, failed) if failure is not None else failed
        if failed is not None:
            steps[failed] = "failed"
        status = "failed"
        name = failure.task if failure is not None else TASKS[failed]
        reason = (f"step {name!r} failed: {failure.message}" if failure is not None
                  else f"step {name!r} failed")
    else:
        status, reason = "succeeded", ""
    if trt.get("status") == "skipped":
        steps["tensorrt"] = "skipped"
    published = _params(outputs["publish"]).get("Output")
    if published == "":
        steps["publish"] = "skipped (no registry_uri)"
    return {
        "status": status,
        "reason": reason,
        "elapsed_s": round(elapsed_s, 1),
        "steps": steps,
        "metrics": metrics,
        "gate": {"min_map50_95": cfg.min_map50_95, "passed": passed},
        "artifacts": {
            "dataset": _artifact(outputs["prepare"], "dataset").get("uri"),
            "best_pt": str(Path(weights_uri) / "best.pt") if weights_uri else None,
            "onnx": str(Path(onnx_uri) / "model.onnx") if onnx_uri else None,
            "training_report": _artifact(outputs["train"], "report").get("uri"),
            "evaluation_report": _artifact(outputs["evaluate"], "report").get("uri"),
            "published": published or None,
        },
        "onnx_parity": {"max_abs_diff": parity.get("max_abs_diff"),
                        "tolerance": cfg.onnx_tolerance} if parity else None,
        "tensorrt": {"status": trt.get("status", "not run"), "reason": trt.get("reason", "")},
        "plan": _params(outputs["plan"]) or None,
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
        rows.append(("plan", f"batch {plan.get('batch')}, peak {plan.get('peak_mib')} MiB per "
                             f"GPU, pool {plan.get('pool')}"))
        if plan.get("batch_rule"):
            rows.append(("batch rule", plan["batch_rule"]))
    training = summary.get("training")
    if training:
        rows.append(("training", _format_training(training)))
    for key in ("mAP50-95", "mAP50", "precision", "recall"):
        if key in summary["metrics"]:
            rows.append((key, f"{summary['metrics'][key]:.4f}"))
    gate = summary["gate"]
    rows.append(("gate", f"min_map50_95={gate['min_map50_95']} passed={gate['passed']}"))
    if summary["onnx_parity"]:
        rows.append(("onnx parity", f"max |diff| {summary['onnx_parity']['max_abs_diff']:.3g} "
                                    f"(tolerance {summary['onnx_parity']['tolerance']})"))
    trt = summary["tensorrt"]
    rows.append(("tensorrt", trt["status"] + (f": {trt['reason']}" if trt["reason"] else "")))
    for name, path in summary["artifacts"].items():
        if path:
            rows.append((name, path))
    rows.append(("wall time", f"{summary['elapsed_s']} s"))
    width = max(len(key) for key, _ in rows)
    line = "-" * 78
    return "\n".join([line, *(f"{key:<{width}}  {value}" for key, value in rows), line])
