"""The edge of a KFP step's process: its failure as data, and its life tied to the run's.

kfp.local and the KFP backend run every step as `python -m kfp.dsl.executor_main ...`. Every
step body calls `install()` first (explicitly: importing a package changes nothing), so every
step gets the same two things:

- An uncaught exception is written as `FAILURE_FILE` ({"type", "message", "exit_code"}) beside
  the step's executor output (under the run's folder of the pipeline root, where `kfp-yolo run`
  reads it: pipelines/summary.py), and on a cluster as the container's termination message
  (/dev/termination-log, which `kubectl describe pod` shows). The traceback still follows in
  the step's log. exit_code is the CLI's: 2 for a UserError (bad input), else 1.
- With `OWNER_ENV` set (`kfp-yolo run` sets it to its own pid and start time), a watchdog thread
  sends the step SIGTERM once that process is gone: a `kfp-yolo run` killed outright (SIGKILL)
  leaves no step running. (The step's shell sits between them, so a parent-death signal
  cannot reach the step; the training processes below it use one: runtime.die_with_parent.)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kfp_yolo.components.verdict import verdict

__all__ = ["FAILURE_FILE", "OWNER_ENV", "TERMINATION_LOG", "failure_record", "install",
           "is_step_process", "owner_alive", "owner_token", "read_failure", "write_failure"]

FAILURE_FILE = "failure.json"
"""The failure record's name, in the folder of the step's executor output."""
OWNER_ENV = "KFP_YOLO_OWNER"
"""`<pid>:<start time>` of the process whose death ends every step (set by `kfp-yolo run`)."""
TERMINATION_LOG = Path("/dev/termination-log")
WATCH_INTERVAL_S = 1.0
_EXECUTOR = ("kfp", "dsl", "executor_main.py")
_MAX_MESSAGE = 2000
_installed = False


def failure_record(exc: BaseException) -> dict[str, Any]:
    """{"type", "message", "exit_code"} for exc: the one place a step failure becomes data, with
    the CLI's verdict (components/verdict.py), so a step's failure reads as the command's would."""
    cls = type(exc)
    found = verdict(exc)
    return {"type": f"{cls.__module__}.{cls.__qualname__}",
            "message": found.sentence[:_MAX_MESSAGE], "exit_code": found.exit_code}


def write_failure(exc: BaseException, folder: str | Path) -> Path:
    """Writes exc's record as FAILURE_FILE in folder; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FAILURE_FILE
    partial = folder / f".{FAILURE_FILE}.{os.getpid()}"
    partial.write_text(json.dumps(failure_record(exc), indent=1))
    partial.replace(path)
    return path


def read_failure(folder: str | Path) -> dict[str, Any] | None:
    """The failure record a step left in folder, or None (none, or unreadable)."""
    try:
        record = json.loads((Path(folder) / FAILURE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("message"), str):
        return None
    code = record.get("exit_code")
    return {"type": str(record.get("type", "")), "message": record["message"],
            "exit_code": code if isinstance(code, int) else 1}


def is_step_process(argv: list[str] | None = None) -> bool:
    """Whether this process is a KFP step (`python -m kfp.dsl.executor_main`)."""
    argv = sys.argv if argv is None else argv
    return bool(argv) and Path(argv[0]).parts[-3:] == _EXECUTOR


def _output_folder(argv: list[str]) -> Path | None:
    """The folder of the step's executor output file, from --executor_input in argv."""
    try:
        text = argv[argv.index("--executor_input") + 1]
        return Path(json.loads(text)["outputs"]["outputFile"]).parent
    except (ValueError, IndexError, KeyError, TypeError):
        return None


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc), '' where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_token(pid: int | None = None) -> str:
    """`<pid>:<start time>` for OWNER_ENV: a pid reused by another process is not the owner."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid)}"


def owner_alive(token: str) -> bool:
    """Whether the process named by an owner_token still runs."""
    pid_text, _, start = token.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True  # unreadable: never stop a step on a guess
    return not start or _start_time(pid) in ("", start)


def _watch_owner(token: str) -> None:
    while owner_alive(token):
        time.sleep(WATCH_INTERVAL_S)
    try:  # the owner read our output: the pipe may be broken, which must not stop the stop
        print(f"kfp-yolo: the run that started this step (pid {token.partition(':')[0]}) is "
              "gone; stopping", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _termination_message(record: dict[str, Any]) -> None:
    # Kubernetes keeps the first 4096 bytes as the container's termination message.
    if TERMINATION_LOG.exists() and os.access(TERMINATION_LOG, os.W_OK):
        try:
            TERMINATION_LOG.write_text(record["message"][:4000])
        except OSError:
            pass


def install(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> None:
    """Records this step's uncaught exception and ties its life to OWNER_ENV's process.

    Called first in every step body (components/steps/); anywhere but a KFP step's process (a
    test calling a step function, the CLI) it does nothing.
    """
    global _installed
    argv = sys.argv if argv is None else argv
    if _installed or not is_step_process(argv):
        return
    _installed = True
    # The step's own output (its logs, ultralytics', a traceback) is masked before it leaves.
    from kfp_yolo.components.redact import install_streams

    install_streams()
    environ = os.environ if environ is None else environ
    folder = _output_folder(argv)
    previous = sys.excepthook

    def hook(cls: type[BaseException], exc: BaseException, tb: Any) -> None:
        try:
            if folder is not None:
                write_failure(exc, folder)
            _termination_message(failure_record(exc))
        except Exception:  # noqa: BLE001 - the traceback below must be printed whatever happens
            pass
        previous(cls, exc, tb)

    sys.excepthook = hook
    token = environ.get(OWNER_ENV, "")
    if token:
        threading.Thread(target=_watch_owner, args=(token,), name="kfp-yolo-owner",
                         daemon=True).start()
