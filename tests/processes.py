"""Stopping the servers the tests start: each runs in its own process group."""

from __future__ import annotations

import os
import signal
import subprocess

__all__ = ["stop_group"]


def stop_group(process: subprocess.Popen | None, timeout_s: float) -> None:
    """SIGTERM to the process's group, a bounded wait, then SIGKILL to the whole group.

    Servers here ignore SIGTERM for seconds (weed) or leave workers of their own behind
    (mlflow's uvicorn and huey consumers): the group is killed whatever its leader did.
    """
    if process is None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process.poll() is None:
        process.wait(timeout=timeout_s)
