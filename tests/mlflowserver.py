"""A real MLflow tracking server for tests: `mlflow server` (the full `mlflow` package) on loopback.

It keeps its runs in sqlite and its artifacts in a folder under root, and serves artifacts
itself (`--serve-artifacts`), so clients upload through HTTP as they would to a cluster's
server. The server starts worker processes of its own (uvicorn, a job runner, huey
consumers): it runs in its own process group, and stop() ends the whole group.

    with MLflowServer(tmp_dir) as server:
        os.environ["MLFLOW_TRACKING_URI"] = server.uri
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from processes import stop_group
from s3server import free_port

__all__ = ["MLflowServer", "mlflow_binary"]


def mlflow_binary() -> str | None:
    """The `mlflow` executable: beside this interpreter (a venv not activated), or on PATH."""
    beside = Path(sys.executable).parent / "mlflow"
    if beside.exists():
        return str(beside)
    return shutil.which("mlflow")


class _ExitedEarly(RuntimeError):
    """mlflow stopped while starting (most often: its port was taken meanwhile)."""


@dataclass
class MLflowServer:
    """One `mlflow server` process with its sqlite store and artifacts under root."""

    root: Path
    start_timeout_s: float = 120.0
    port: int = 0
    _process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, attempts: int = 3) -> MLflowServer:
        """Starts the server; a port taken between choosing and binding it means another try."""
        binary = mlflow_binary()
        if binary is None:
            raise FileNotFoundError("mlflow is not installed; pip install -e '.[dev]' brings it")
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            try:
                self._launch(binary, attempt)
                return self
            except _ExitedEarly:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _launch(self, binary: str, attempt: int) -> None:
        self.port = free_port()
        store = self.root / f"mlflow{attempt}.db"
        artifacts = self.root / f"artifacts{attempt}"
        command = [binary, "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--backend-store-uri", f"sqlite:///{store}",
                   "--artifacts-destination", str(artifacts), "--serve-artifacts",
                   "--workers", "1"]
        env = dict(os.environ)
        # The server must not report to itself, nor reach the network for anything.
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
            env.pop(key, None)
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        env["DO_NOT_TRACK"] = "true"
        self._log_path = self.root / f"mlflow{attempt}.log"
        self._log = open(self._log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True, env=env, cwd=self.root)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self._log_path.read_text(errors="replace")[-800:]
                raise _ExitedEarly(f"mlflow exited with {self._process.returncode}; the end of "
                                   f"{self._log_path}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError) as exc:
                last = exc
            time.sleep(0.5)
        raise TimeoutError(f"mlflow server not ready after {self.start_timeout_s:.0f} s: {last}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM to the whole group, a bounded wait, then SIGKILL."""
        process, self._process = self._process, None
        stop_group(process, timeout_s)
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()

    def __enter__(self) -> MLflowServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
