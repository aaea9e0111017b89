"""The step boundary (components/boundary.py): a step's failure as data, its life tied to the
run's. Each case runs a real process that looks like a KFP step (its argv[0] is kfp's
executor_main) and imports kfp_yolo.components, as every step does."""

from __future__ import annotations

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

STEP = """
import sys, time
sys.argv = [{argv0!r}, "--executor_input", {executor_input!r}, "--function_to_execute", "f"]
import kfp_yolo.components
from kfp_yolo.components.errors import UserError
{body}
"""


def _step(tmp_path: Path, body: str, env: dict | None = None,
          argv0: str = "/venv/lib/kfp/dsl/executor_main.py") -> subprocess.CompletedProcess:
    executor_input = json.dumps({"outputs": {"outputFile": str(tmp_path / "task" /
                                                                "executor_output.json")}})
    code = STEP.format(argv0=argv0, executor_input=executor_input, body=body)
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
