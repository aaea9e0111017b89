"""Fuzzing the CLI's edge: whatever a config file, a --set value, a node-pool catalog or a
data.yaml holds, the command exits 0 or 2, a refusal is one line on stderr, never a traceback.

Every example goes through `kfp_yolo.pipelines.cli.main` in-process, argparse and the error
boundary included. `compile` stops after the config is loaded and validated: the compiler and
the memory planner behind it take seconds per example and read nothing the fuzzer varies.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kfp_yolo.components.config.run_config import RunConfig
from kfp_yolo.components.data.synth import SynthSpec, synthesize
from kfp_yolo.pipelines import cmd_compile
from kfp_yolo.pipelines.cli import main

EXAMPLES = int(os.environ.get("KFP_YOLO_FUZZ_EXAMPLES", "100"))
"""Examples per test; KFP_YOLO_FUZZ_EXAMPLES=5000 for a longer hunt than the suite's."""
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT,
                    st.sampled_from(["s3://b/p", "minio://", "file:///x", "synthetic://shapes",
                                     "synthetic://shapes?images=0", "https://x", "yolov5n.yaml",
                                     "yolov8n-cls.yaml", "AdamW", "amp", "-1", "1e309", ".nan"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6)
KEYS = st.one_of(st.sampled_from(list(RunConfig.model_fields)), TEXT, st.integers(),
                 st.booleans(), st.none())


def _cli(*argv: str) -> tuple[int, str]:
    """Runs the CLI in-process; (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def _assert_contract(code: int, err: str) -> None:
    event(f"exit {code}")  # pytest --hypothesis-show-statistics: how many got through
    assert "Traceback" not in err, err
    assert code in (0, 2), err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kfp-yolo: error: "), err


def _document(data: object) -> bytes:
    """data as YAML bytes; what YAML cannot hold is dumped as its repr (a string)."""
    try:
        return yaml.safe_dump(data, allow_unicode=True).encode()
    except yaml.YAMLError:
        return repr(data).encode()


@contextlib.contextmanager
def _compile_stops_after_the_config():
    def loaded(cfg, output, pools_path=None):
        assert isinstance(cfg, RunConfig)
        for value in cfg.model_dump().values():  # what passed must be finite and typed
            assert not (isinstance(value, float) and not math.isfinite(value))
        return Path(output)

    with mock.patch.object(cmd_compile, "compile_pipeline", loaded):
        yield


@FUZZ
@given(config=st.one_of(st.dictionaries(st.sampled_from(list(RunConfig.model_fields)), SCALARS,
                                        max_size=4).map(_document),
                        st.dictionaries(KEYS, VALUES, max_size=5).map(_document),
                        st.binary(max_size=60),
                        st.text(max_size=60).map(lambda t: t.encode("utf-8", "replace"))))
def test_any_config_file(config: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp, _compile_stops_after_the_config():
        path = Path(tmp) / "run.yaml"
        path.write_bytes(config)
        _assert_contract(*_cli("compile", "--config", str(path), "-o", f"{tmp}/p.yaml"))


@FUZZ
@given(items=st.lists(st.tuples(st.one_of(st.sampled_from(list(RunConfig.model_fields)), TEXT),
                                st.one_of(TEXT, SCALARS.map(str))), min_size=1, max_size=3))
def test_any_set_values(items: list[tuple[str, str]]) -> None:
    argv = [f"--set={key}={value}" for key, value in items]
    with tempfile.TemporaryDirectory() as tmp, _compile_stops_after_the_config():
        _assert_contract(*_cli("compile", *argv, "-o", f"{tmp}/p.yaml"))


def _mutated(base: dict, fields: dict) -> st.SearchStrategy[dict]:
    """base with one or two fields replaced by fuzz (or removed): each check gets its turn."""
    change = st.tuples(st.sampled_from([*fields, "unknown_key"]),
                       st.one_of(st.none(), *fields.values(), VALUES))

    def apply(changes: list[tuple[str, object]], drop: bool) -> dict:
        out = dict(base)
        for key, value in changes:
            out[key] = value
            if drop and value is None:
                out.pop(key)
        return out

    return st.builds(apply, st.lists(change, min_size=1, max_size=2), st.booleans())


VALID_POOL = {"name": "a", "gpu_product": "NVIDIA-L4", "gpu_memory_mib": 23034,
              "gpus_per_node": 4, "max_nodes": 2, "flavor": "gpu-24g", "hourly_price": 0.8,
              "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}
POOL_FIELDS = {"name": st.sampled_from(["b", "Bad_Name", "", "a" * 64]) | TEXT,
               "gpu_product": SCALARS,
               "gpu_memory_mib": st.integers(-2, 100_000) | SCALARS,
               "gpus_per_node": st.integers(-1, 8) | SCALARS,
               "max_nodes": st.integers(-1, 4) | SCALARS,
               "flavor": st.sampled_from(["gpu-a", "gpu-24g"]) | SCALARS,
               "hourly_price": st.floats() | SCALARS,
               "tolerations": st.lists(st.dictionaries(
                   st.sampled_from(["key", "operator", "value", "effect", "tolerationSeconds",
                                    "x"]), SCALARS, max_size=3), max_size=2) | VALUES}
POOL = _mutated(VALID_POOL, POOL_FIELDS)


@FUZZ
@given(catalog=st.one_of(
    st.lists(st.one_of(POOL, st.just(VALID_POOL), VALUES), min_size=1, max_size=3).map(
        lambda pools: _document({"pools": pools})),
    st.dictionaries(KEYS, VALUES).map(_document), st.binary(max_size=40)))
def test_any_node_pool_catalog(catalog: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pools.yaml"
        path.write_bytes(catalog)
        _assert_contract(*_cli("quotas", "--pools", str(path), "-o", f"{tmp}/out"))


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "ds"
    synthesize(root, SynthSpec(images=4, imgsz=32, seed=5))
    return root


VALID_DATA = {"names": ["circle", "square", "triangle"], "train": "images/train",
              "val": "images/val"}
DATA_FIELDS = {"names": st.one_of(st.lists(SCALARS, max_size=4),
                                  st.dictionaries(st.integers(-1, 4) | TEXT, SCALARS, max_size=4),
                                  st.just(["circle", "circle", "triangle"])),
               "nc": st.integers(-1, 5) | SCALARS,
               "train": st.sampled_from(["images/train", "images", "../x", "/abs", "images/val",
                                         "list.txt", "images/\0"]) | VALUES,
               "val": st.sampled_from(["images/val", "images/train", "nope"]) | VALUES,
               "path": SCALARS}


@settings(max_examples=max(1, EXAMPLES * 3 // 5), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.one_of(_mutated(VALID_DATA, DATA_FIELDS).map(_document),
                      st.dictionaries(KEYS, VALUES, max_size=4).map(_document),
                      st.binary(max_size=40)))
def test_any_data_yaml(tiny_dataset: Path, data: bytes) -> None:
    (tiny_dataset / "data.yaml").write_bytes(data)
    _assert_contract(*_cli("dataset", "check", str(tiny_dataset)))
