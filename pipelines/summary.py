"""The end-of-run summary of a local DAG run, read from each task's executor_output.json."""

from __future__ import annotations

import json
from pathlib import Path

from kfp_yolo.pipelines.config import RunConfig

__all__ = ["TASKS", "collect_summary", "format_summary"]

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


def collect_summary(run_dir: Path | None, cfg: RunConfig, *, elapsed_s: float) -> dict:
    """status, reason, per-step status, metrics, gate, artifact paths, parity, tensorrt."""
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
    elif failed is not None:
        steps[failed] = "failed"
        status = "failed"
        reason = f"step {TASKS[failed]!r} failed; its log is above"
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
            "evaluation_report": _artifact(outputs["evaluate"], "report").get("uri"),
            "published": published or None,
        },
        "onnx_parity": {"max_abs_diff": parity.get("max_abs_diff"),
                        "tolerance": cfg.onnx_tolerance} if parity else None,
        "tensorrt": {"status": trt.get("status", "not run"), "reason": trt.get("reason", "")},
        "plan": _params(outputs["plan"]) or None,
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
