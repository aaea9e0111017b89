"""The local launcher: torchrun on this machine, one torchrun per node on a loopback rendezvous."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from components.errors import JobFailed
from components.train import TrainSpec

__all__ = ["LocalLauncher"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalLauncher:
    """Runs `spec.nodes` torchrun processes with `spec.procs_per_node` workers each."""

    def __init__(self, *, scratch: str | Path | None = None, env: dict[str, str] | None = None):
        self.scratch = Path(scratch) if scratch else None
        self.env = env or {}

    def _command(self, spec: TrainSpec, node_rank: int, port: int, error_dir: Path) -> list[str]:
        rdzv = (["--standalone"] if spec.nodes == 1 else
                [f"--nnodes={spec.nodes}", f"--node-rank={node_rank}",
                 "--master-addr=127.0.0.1", f"--master-port={port}"])
        scratch = (self.scratch or Path(tempfile.mkdtemp(prefix="kfp-yolo-"))) / f"node{node_rank}"
        return [sys.executable, "-m", "torch.distributed.run", *rdzv,
                f"--nproc-per-node={spec.procs_per_node}", "--max-restarts=0",
                "-m", "components.worker", "--spec", spec.to_json(), "--scratch", str(scratch)]

    def launch(self, spec: TrainSpec) -> None:
        """Runs the job to its end, streaming logs; raises JobFailed with the worker's error."""
        port = _free_port()
        error_dir = Path(tempfile.mkdtemp(prefix="kfp-yolo-errors-"))
        procs = []
        for node_rank in range(spec.nodes):
            env = {**os.environ, **self.env,
                   "TORCHELASTIC_ERROR_FILE": str(error_dir / f"node{node_rank}.json")}
            for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):  # torchrun sets its own
                env.pop(name, None)
            procs.append(subprocess.Popen(
                self._command(spec, node_rank, port, error_dir), env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                start_new_session=True))
        prefixes = [f"[node{i}] " if spec.nodes > 1 else "" for i in range(spec.nodes)]
        threads = [threading.Thread(target=_stream, args=(proc, prefix), daemon=True)
                   for proc, prefix in zip(procs, prefixes, strict=True)]
        for thread in threads:
            thread.start()
        try:
            codes = [p.wait() for p in procs]
        except BaseException:
            _terminate(procs)
            raise
        finally:
            for thread in threads:
                thread.join(timeout=5)
        if any(codes):
            _terminate(procs)
            raise JobFailed(f"training failed (exit codes {codes}): {_worker_error(error_dir)}")


def _stream(proc: subprocess.Popen, prefix: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(prefix + line)
    sys.stdout.flush()


def _terminate(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _worker_error(error_dir: Path) -> str:
    """The first worker's own exception message, as torchrun's error file recorded it."""
    for path in sorted(error_dir.glob("*.json")):
        try:
            message = json.loads(path.read_text())["message"]
        except (OSError, ValueError, KeyError):
            continue
        if isinstance(message, dict):
            message = message.get("message", "")
        lines = [ln for ln in str(message).strip().splitlines() if ln.strip()]
        if lines:
            return lines[-1] if len(lines) < 3 else lines[-1]
    return "no worker error was recorded; see the log above"
