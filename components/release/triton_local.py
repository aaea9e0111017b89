"""triton_local: a version's Triton repository served by a real Triton on this machine.

The server is Triton core 2.51 from the `nvidia-pytriton` 0.7.0 wheel (the `serve` extra); its
Python API is not used, only the binary, its libraries and the python backend. That build has
no onnxruntime or TensorRT backend, so the served copy of the repository swaps the raw ONNX
detector's platform for a python-backend model running onnxruntime on the same model.onnx
(`onnx_python_model.py`) and leaves out TensorRT plans; everything else is loaded as published.

The backend folder is assembled in a work folder (site-packages may be read-only): links to
the wheel's python backend plus a copy of the stub built for this interpreter's Python. The
stub embeds that Python and finds its site-packages from the `python3` first on PATH, so this
interpreter's folder goes first there. Triton runs in a process group of its own; stopping
sends SIGTERM to the group, waits, then SIGKILLs the group.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kfp_yolo.components.errors import Fault, UserError

__all__ = ["LocalTriton", "free_port", "local_repository", "tritonserver_home"]

STOP_WAIT_S = 10.0
_HERE = Path(__file__).parent
_PLATFORM = re.compile(r'^platform:\s*"([^"]+)"\s*$', re.MULTILINE)


def tritonserver_home() -> Path:
    """The wheel's `pytriton/tritonserver` folder (found without importing pytriton)."""
    spec = importlib.util.find_spec("pytriton")
    home = Path(spec.origin).parent / "tritonserver" if spec and spec.origin else None
    if home is None or not (home / "bin" / "tritonserver").is_file():
        raise UserError("no Triton server here: it comes with the serve extra; install it with "
                        "`pip install 'kfp-yolo[serve]'` (the nvidia-pytriton 0.7.0 wheel).")
    return home


def _backends(home: Path, work: Path) -> Path:
    stub = home / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / \
        "triton_python_backend_stub"
    if not stub.is_file():
        raise UserError(f"the Triton wheel has no python backend stub for Python "
                        f"{sys.version_info[0]}.{sys.version_info[1]} ({stub}); use Python "
                        "3.11 (the project's interpreter).")
    python = work / "backends" / "python"
    python.mkdir(parents=True, exist_ok=True)
    for entry in (home / "backends" / "python").iterdir():
        if entry.is_file() and not (python / entry.name).exists():
            (python / entry.name).symlink_to(entry)
    shutil.copy2(stub, python / stub.name)  # Triton looks for the stub beside the backend
    return work / "backends"


def local_repository(published: str | Path, out: str | Path) -> list[str]:
    """Copies a published repository into out for this machine's Triton; the models in it.

    onnxruntime_onnx models become python-backend models running onnxruntime on the same
    model.onnx (same name, tensors and batching); tensorrt_plan models are left out.
    """
    published, out = Path(published), Path(out)
    shutil.copytree(published, out)
    models = []
    for config in sorted(out.glob("*/config.pbtxt")):
        text = config.read_text()
        match = _PLATFORM.search(text)
        platform = match.group(1) if match else ""
        if platform == "tensorrt_plan":
            shutil.rmtree(config.parent)
            continue
        if platform == "onnxruntime_onnx":
            config.write_text(_PLATFORM.sub('backend: "python"', text, count=1))
            for version in config.parent.iterdir():
                if (version / "model.onnx").is_file():
                    shutil.copyfile(_HERE / "onnx_python_model.py", version / "model.py")
        models.append(config.parent.name)
    if not models:
        raise UserError(f"{published} holds no model this Triton can load (no config.pbtxt "
                        "other than TensorRT plans).")
    return models


def free_port() -> int:
    """A loopback port free right now (Triton takes no port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalTriton:
    """tritonserver on loopback serving `repository`; a context manager (start, ready, stop)."""

    repository: Path
    work: Path
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    log_path: Path | None = None
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> LocalTriton:
        home = tritonserver_home()
        self.http_port = self.http_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        self.metrics_port = self.metrics_port or free_port()
        self.log_path = self.log_path or self.work / "tritonserver.log"
        env = dict(os.environ)
        libs = str(home.parent.parent / "nvidia_pytriton.libs")
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (libs, env.get("LD_LIBRARY_PATH")) if p)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        command = [str(home / "bin" / "tritonserver"),
                   f"--model-repository={Path(self.repository).resolve()}",
                   f"--backend-directory={_backends(home, self.work)}",
                   "--http-address=127.0.0.1", f"--http-port={self.http_port}",
                   "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
                   f"--metrics-port={self.metrics_port}", "--allow-metrics=false",
                   "--disable-auto-complete-config", *self.extra_args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env,
                                            start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Polls /v2/health/ready; a Fault with the log's last lines when Triton exits or
        is not ready in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise Fault(f"tritonserver exited before it was ready: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise Fault(f"tritonserver was not ready within {timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 8) -> str:
        """The log's last error lines (or last lines), for a failure's sentence."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        errors = [line for line in text if line.startswith("E") or "error" in line.lower()]
        return " | ".join((errors or text)[-lines:])

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """SIGTERM to the group, a bounded wait, then SIGKILL to the group."""
        process, self.process = self.process, None
        if process is None:
            return
        for signum in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, signum)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
            if signum == signal.SIGTERM:  # the leader left; its stubs may still be running
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break

    def __enter__(self) -> LocalTriton:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
