"""The step boundary (components/boundary.py): a step's failure as data, its life tied to the
run's. Each case runs a real process that looks like a KFP step (its argv[0] is kfp's
executor_main) and imports kfp_yolo.components, as every step does."""

from __future__ import annotations

import ast
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kfp_yolo.components.boundary import (
    OWNER_ENV,
    failure_record,
    is_step_process,
    owner_alive,
    owner_token,
)
from kfp_yolo.components.errors import Fault, JobFailed, UserError
from kfp_yolo.components.steps.validate import make_validate_config_component

STEP = """
import sys, time
sys.argv = [{argv0!r}, "--executor_input", {executor_input!r}, "--function_to_execute", "f"]
{install}
from kfp_yolo.components.errors import UserError
{body}
"""

INSTALL = "from kfp_yolo.components.boundary import install\ninstall()"
"""What the first lines of every step body do (components/steps/)."""


def _step(tmp_path: Path, body: str, env: dict | None = None,
          argv0: str = "/venv/lib/kfp/dsl/executor_main.py",
          install: str = INSTALL) -> subprocess.CompletedProcess:
    executor_input = json.dumps({"outputs": {"outputFile": str(tmp_path / "task" /
                                                                "executor_output.json")}})
    code = STEP.format(argv0=argv0, executor_input=executor_input, body=body, install=install)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.parametrize(("exc", "record"), [
    (UserError("epochs=-1 must be >= 1; set epochs to 1 or more."),
     {"type": "kfp_yolo.components.errors.UserError", "exit_code": 2,
      "message": "epochs=-1 must be >= 1; set epochs to 1 or more."}),
    (JobFailed("ONNX parity check failed."),
     {"type": "kfp_yolo.components.errors.JobFailed", "exit_code": 1,
      "message": "ONNX parity check failed."}),
    (Fault("the store answered 503."),
     {"type": "kfp_yolo.components.errors.Fault", "exit_code": 1,
      "message": "the store answered 503."}),
    (KeyError("names"), {"type": "builtins.KeyError", "exit_code": 1,
                         "message": "KeyError: 'names'"}),
    (KeyboardInterrupt(), {"type": "builtins.KeyboardInterrupt", "exit_code": 130,
                           "message": "interrupted"}),
])
def test_failure_record(exc, record):
    assert failure_record(exc) == record


def test_a_step_that_raises_leaves_its_record_and_its_traceback(tmp_path):
    result = _step(tmp_path, 'raise UserError("bad value;\\n use another.")')
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "UserError: bad value;" in result.stderr
    record = json.loads((tmp_path / "task" / "failure.json").read_text())
    assert record == {"type": "kfp_yolo.components.errors.UserError",
                      "message": "bad value; use another.", "exit_code": 2}


def test_outside_a_step_nothing_is_installed(tmp_path):
    assert not is_step_process(["/usr/bin/pytest"]) and not is_step_process([])
    result = _step(tmp_path, 'raise UserError("x")', argv0="/venv/bin/kfp-yolo")
    assert result.returncode == 1 and not (tmp_path / "task").exists()


def test_a_step_stops_when_its_run_is_gone(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    token = owner_token(dead.pid)
    dead.wait()
    assert not owner_alive(token) and owner_alive(owner_token())
    started = time.monotonic()
    result = _step(tmp_path, "time.sleep(60)", env={OWNER_ENV: token})
    assert result.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 20
    assert "is gone; stopping" in result.stderr


def test_a_reused_pid_is_not_the_owner():
    pid, _, start = owner_token().partition(":")
    assert owner_alive(f"{pid}:{start}")
    if start:  # /proc is there: another start time is another process
        assert not owner_alive(f"{pid}:{int(start) + 1}")


def test_importing_the_package_installs_nothing(tmp_path):
    # the boundary is the step body's first call, not a side effect of an import
    result = _step(tmp_path, 'raise UserError("x")', install="import kfp_yolo.components")
    assert result.returncode == 1
    assert not (tmp_path / "task" / "failure.json").exists()


def _step_bodies() -> dict[str, list[ast.stmt]]:
    """{step: its body after the docstring}: each step function, the validate step generated."""
    bodies = {}
    for path in (Path(__file__).resolve().parents[2] / "components" / "steps").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_component") and \
                    not node.name.startswith("make_"):
                bodies[node.name] = node.body[1:]
    validate = make_validate_config_component([("epochs", int)], {})
    (node,) = ast.parse(inspect.getsource(validate)).body
    # its first line keeps the parameters before any other name is bound
    bodies[node.name] = [s for s in node.body[1:] if "dict(locals())" not in ast.unparse(s)]
    return bodies


def test_every_step_installs_its_boundary_first():
    bodies = _step_bodies()
    assert len(bodies) >= 10, sorted(bodies)  # validate, prepare, plan, search, train, ...
    for name, body in bodies.items():
        first = [ast.unparse(statement) for statement in body[:2]]
        assert first == ["from kfp_yolo.components.boundary import install", "install()"], name
