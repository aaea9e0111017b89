"""benchmarks/screenshot_reports.py: the Markdown of the step reports becomes the HTML a person
would see in the Kubeflow UI (tables apart, lists, emphasis), and each step's report is found."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "screenshot_reports.py"


def _script():
    spec = importlib.util.spec_from_file_location("screenshot_reports", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_markdown_of_the_plan_report_becomes_a_table_a_list_and_emphasis():
    html = _script().markdown_to_html(
        "# Plan\n\n**Pool a** chosen.\n\n- rule one\n- rule `two`\n\n*measured* = history\n\n"
        "| pool | GPU |\n|---|--:|\n| **a** | T4 |\n\n| class | n |\n|---|---|\n| c | 1 |\n")
    assert "<h1>Plan</h1>" in html and "<b>Pool a</b>" in html
    assert "<ul><li>rule one</li><li>rule <code>two</code></li></ul>" in html
    assert "<i>measured</i>" in html
    # two tables, not one: the blank line between them ends the first
    assert html.count("<table>") == 2 and "<th>pool</th><th>GPU</th>" in html
    assert "<td><b>a</b></td><td>T4</td>" in html and "---" not in html


def test_step_reports_are_found_through_the_run_folder(tmp_path):
    task = tmp_path / "plan-resources-component"
    task.mkdir()
    (task / "report").write_text("# Plan\n")
    (task / "executor_output.json").write_text(json.dumps(
        {"artifacts": {"report": {"artifacts": [{"uri": str(task / "report")}]}}}))
    script = _script()
    summary = {"run_dir": str(tmp_path)}
    assert script.step_report(summary, "plan-resources-component") == task / "report"
    assert script.step_report(summary, "prepare-dataset-component") is None
    assert script.step_report({"run_dir": None}, "plan-resources-component") is None
