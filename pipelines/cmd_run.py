"""`kfp-yolo run`: the whole DAG on this machine with kfp.local's SubprocessRunner.

kfp.local prints every step's full output (its executor input, its logs, a traceback when it
fails). That goes to WORKDIR/run.log; the terminal gets one line per step, the summary, and
the failed step's own sentence as the last line (--verbose prints the log here too).

One run at a time holds the work folder, and the run owns its process tree: SIGTERM or
Ctrl-C stop every step and training process, and a killed run's steps stop by themselves
(pipelines/run_control.py). Why a step failed is the record it left (components/boundary.py),
never a guess from its log.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

from kfp_yolo.components.atomic import write_atomic
from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.config.run_config import RunConfig
from kfp_yolo.components.errors import JobFailed, Stopped, UserError
from kfp_yolo.components.redact import redact, redact_data
from kfp_yolo.pipelines.run_control import hold_workdir, own_process_tree
from kfp_yolo.pipelines.summary import (
    ANSI,
    TASK_ENDED,
    TASK_STARTED,
    collect_summary,
    format_summary,
)

__all__ = ["LOG_NAME", "run", "run_local"]

LOG_NAME = "run.log"
"""The steps' output, under the work folder; each run appends to it."""


class _StepLog(io.TextIOBase):
    """Where kfp.local's output goes: the log file, plus one line per step on the terminal."""

    def __init__(self, log: TextIO, terminal: TextIO, *, verbose: bool) -> None:
        self._log, self._terminal, self._verbose = log, terminal, verbose
        self._pending = ""
        self._started: dict[str, float] = {}
        self.failed: list[str] = []
        """Tasks kfp.local reported failed, in order."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = redact(text)  # a step's log may quote a URI with user-info or a credential
        self._log.write(text)
        self._log.flush()  # `tail -f run.log` follows a long step
        if self._verbose:
            self._terminal.write(text)
            return len(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._progress(ANSI.sub("", line))
        return len(text)

    def _progress(self, line: str) -> None:
        if match := TASK_STARTED.search(line):
            self._started[match.group(1)] = time.monotonic()
            print(f"kfp-yolo: {_shown(match.group(1))} ...", file=self._terminal, flush=True)
        elif match := TASK_ENDED.search(line):
            task, state = match.groups()
            if state == "FAILURE":
                self.failed.append(task)
            took = time.monotonic() - self._started.get(task, time.monotonic())
            verdict = {"SUCCESS": "succeeded", "FAILURE": "failed"}.get(state, state.lower())
            print(f"kfp-yolo: {_shown(task)} {verdict} ({took:.0f} s)", file=self._terminal,
                  flush=True)


def _shown(task: str) -> str:
    """A task as the Kubeflow UI names it (its display name: prepare-dataset), not kfp.local's
    function-derived name (prepare-dataset-component)."""
    return task.removesuffix("-component")


@contextlib.contextmanager
def _steps_logged(log_path: Path, *, verbose: bool) -> Iterator[_StepLog]:
    """Sends what kfp.local prints (stdout, its logging, the steps' output) to log_path."""
    terminal = sys.stderr
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        log.write(f"\n===== kfp-yolo run, {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n")
        sink = _StepLog(log, terminal, verbose=verbose)
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield sink


def _check_workdir(cfg: RunConfig, workdir: Path) -> None:
    """Refuses a work folder inside a local dataset, a model file that is not there, a local
    store that cannot be written or an unusable MLflow URI, before any step runs."""
    from kfp_yolo.components import storage
    from kfp_yolo.components.config.preflight import check_environment
    from kfp_yolo.components.config.values import check_local_model
    from kfp_yolo.components.data.source import refuse_inside

    check_local_model(cfg.model, "kfp-yolo run")
    check_environment(cfg, "kfp-yolo run")  # a store or MLflow URI that fails after training

    if urlparse(cfg.dataset_uri).scheme not in ("", "file"):
        return
    source = storage.local_path(cfg.dataset_uri).expanduser()
    if source.is_dir():
        refuse_inside(workdir, source, what="the work folder,")


def _run_folder(pipeline_root: Path, before: set[Path]) -> Path | None:
    """This run's folder: the one kfp.local created under pipeline_root during the run.

    The work folder's lock keeps other runs out of pipeline_root meanwhile, so exactly one
    folder is new; never "the newest", which may be another run's.
    """
    from kfp_yolo.pipelines.training import PIPELINE_NAME

    new = [p for p in set(pipeline_root.iterdir()) - before
           if p.is_dir() and p.name.startswith(f"{PIPELINE_NAME}-")]
    return new[0] if len(new) == 1 else None


def run_local(cfg: RunConfig, workdir: str | Path, *, verbose: bool = False) -> dict:
    """Runs the DAG for cfg under workdir; returns the summary (also written to summary.json).

    Raises:
        UserError: another run holds workdir, or workdir is inside the dataset.
        Stopped: SIGTERM or SIGINT stopped the run (summary.json says so too).
    """
    workdir = Path(workdir).resolve()
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir}: is a file, not a directory; give a folder for "
                        "the run's artifacts, log and summary.")
    _check_workdir(cfg, workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with hold_workdir(workdir), own_process_tree():
        return _run_held(cfg, workdir, verbose=verbose)


def _run_held(cfg: RunConfig, workdir: Path, *, verbose: bool) -> dict:
    from kfp import local

    from kfp_yolo.components.runtime import offline_environment
    from kfp_yolo.pipelines.training import build_pipeline

    pipeline_root = workdir / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    # Every step runs in a subprocess of this environment and inherits these settings.
    offline_environment(workdir / "yolo_config", load_ultralytics=False)
    if not cfg.checkpoint_uri:
        cfg = cfg.model_copy(update={"checkpoint_uri": str(workdir / "checkpoints")})
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    log_path = workdir / LOG_NAME
    print(f"kfp-yolo: running the DAG; the steps' logs go to {log_path}", file=sys.stderr)
    before = set(pipeline_root.iterdir())
    started = time.monotonic()
    stopped: Stopped | None = None
    with _steps_logged(log_path, verbose=verbose) as steps:
        try:
            local.init(runner=local.SubprocessRunner(use_venv=False),
                       pipeline_root=str(pipeline_root), raise_on_error=False)
            build_pipeline(cfg)()
        except Stopped as exc:
            stopped = exc
    elapsed = time.monotonic() - started
    summary = collect_summary(
        _run_folder(pipeline_root, before), cfg, elapsed_s=elapsed,
        failed_task=steps.failed[-1] if steps.failed else None,
        stopped=f"{stopped}; every step and training process was stopped" if stopped else "")
    summary["log"] = str(log_path)
    summary = redact_data(summary)
    write_atomic(workdir / "summary.json", json.dumps(summary, indent=2))
    if stopped is not None:
        raise stopped
    return summary


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    summary = run_local(cfg, args.workdir, verbose=args.verbose)
    print(format_summary(summary), file=sys.stderr)
    print(f"summary: {Path(args.workdir).resolve() / 'summary.json'}", file=sys.stderr)
    if summary["status"] == "succeeded":
        return 0
    failure = summary["failure"]
    if failure is not None and failure["exit_code"] == 2:
        raise UserError(failure["message"])  # a step refused its input: its sentence is the verdict
    raise JobFailed(f"{summary['reason'].rstrip('.')}; its log is {summary['log']}.")
