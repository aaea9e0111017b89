"""What `kfp-yolo run` holds while it runs: its work folder (a lock) and its process tree.

- `hold_workdir`: one run per work folder. The lock file names its holder (pid, start time,
  command); the lock itself is an flock, which the kernel drops when the holder dies, so a
  lock left by a dead run is taken over without asking anyone to delete a file.
- `own_process_tree`: SIGTERM (what a pod, a CI runner or `kill` sends) and SIGINT stop every
  step and training process below this one within seconds, then raise Stopped (exit 143 or
  130). If this process is killed outright (SIGKILL), the steps notice it through OWNER_ENV
  (components/boundary.py) and the training processes through their parent-death signals
  (runtime.die_with_parent): no training outlives its run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from kfp_yolo.components.boundary import OWNER_ENV, owner_token
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.signals import stop_on_signals

__all__ = ["LOCK_NAME", "STOP_GRACE_S", "hold_workdir", "own_process_tree", "stop_descendants"]

LOCK_NAME = ".kfp-yolo.lock"
STOP_GRACE_S = 20.0
"""Seconds the steps get to stop their training (torchrun's own grace is 15 s), then SIGKILL."""


def _holder(path: Path) -> str:
    """'pid N, started T' from a lock file, or 'another process' when it says nothing."""
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def hold_workdir(workdir: Path) -> Iterator[None]:
    """Holds workdir for this run; a UserError naming the holder when another run has it."""
    import fcntl

    path = workdir / LOCK_NAME
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{workdir} is in use by another kfp-yolo run ({_holder(path)}); "
                            "wait for it to end, stop it, or pass another --workdir.") from None
        stale = _holder(path)
        if stale != "another process":
            print(f"kfp-yolo: taking over {path} from a run that is gone ({stale})",
                  file=sys.stderr)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                 "command": " ".join(sys.argv)}) + "\n")
        handle.flush()
        yield
        handle.seek(0)
        handle.truncate()  # an empty file: nobody holds it
    finally:
        handle.close()  # drops the flock


def stop_descendants(grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM to every process below this one, SIGKILL to those left after grace_s.

    Returns how many processes there were. Every layer gets the signal at once: the steps'
    shells, the steps (the train step stops its torchrun), torchrun and its workers.
    """
    import psutil

    me = psutil.Process()
    procs = me.children(recursive=True)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    # Started in the meantime (a torchrun spawning its workers) or deaf to SIGTERM.
    alive += [p for p in me.children(recursive=True) if p not in alive]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return len(procs)


@contextlib.contextmanager
def own_process_tree(grace_s: float = STOP_GRACE_S) -> Iterator[None]:
    """SIGTERM/SIGINT stop the tree and raise Stopped; children learn this process's identity.

    Only from the main thread (signal handlers live there); elsewhere it only sets OWNER_ENV.
    """
    previous_env = os.environ.get(OWNER_ENV)
    os.environ[OWNER_ENV] = owner_token()

    def stop(signum: int) -> None:
        name = signal.Signals(signum).name
        print(f"kfp-yolo: {name}: stopping every step and training process (up to "
              f"{grace_s:.0f} s)", file=sys.__stderr__, flush=True)
        stop_descendants(grace_s)

    try:
        with stop_on_signals((signal.SIGTERM, signal.SIGINT), on_stop=stop):
            yield
    finally:
        if previous_env is None:
            os.environ.pop(OWNER_ENV, None)
        else:
            os.environ[OWNER_ENV] = previous_env
