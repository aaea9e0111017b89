"""GPU memory planner: the issue's Done-when on the real yolov5l probe, pools, affinity, CLI.

The yolov5l probes (fp32 and 2-byte autocast) run once per session (~15 s on 2 cores) and are
shared through the planner's caches by every test here, the in-process CLI and the subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.planner import (
    choose_pool,
    estimate_peak,
    fit_batch,
    node_affinity,
    plan,
    probe,
)
from kfp_yolo.components.pools import GPU_MEMORY_LABEL, Pool, load_pools
from kfp_yolo.components.steps import plan_resources_component
from kfp_yolo.pipelines.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024


def _pool(name: str, mib: int, gpus: int = 1, nodes: int = 4) -> Pool:
    return Pool(name=name, gpu_product="GPU", gpu_memory_mib=mib, gpus_per_node=gpus,
                max_nodes=nodes, flavor=f"f-{name}")


POOLS = [_pool("g8", 8192), _pool("g16", 15360), _pool("g24", 23034, gpus=4),
         _pool("g80", 81559, gpus=8, nodes=2)]


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory):
    """ultralytics' config folder, where `kfp-yolo plan` keeps its probe cache."""
    path = tmp_path_factory.mktemp("yolo-config")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLO_CONFIG_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def cache(config_dir: Path) -> Path:
    """The same cache folder the CLI uses, so in-process calls and the CLI share one probe."""
    return config_dir / "memory-probes"


def _v5l(cache: Path, batch: int, precision: str, imgsz: int = 640, **kw):
    return estimate_peak("yolov5l.yaml", imgsz=imgsz, batch=batch, precision=precision,
                         cache_dir=cache, **kw)


def _plan_json(capsys, *argv: str) -> dict:
    assert cli_main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---- Done when ------------------------------------------------------------------------------


def test_yolov5l_fp32_batch16_peak_is_14_to_22_gib(cache, capsys):
    out = _plan_json(capsys, "--model", "yolov5l.yaml", "--imgsz", "640", "--batch", "16",
                     "--precision", "fp32")
    assert {"peak_mib", "breakdown_mib", "pool", "max_batch"} <= set(out)
    assert 14 * GIB <= out["peak_mib"] <= 22 * GIB
    assert sum(out["breakdown_mib"].values()) == out["peak_mib"]
    assert out["pool"] in {p.name for p in load_pools()}
    assert out["peak_mib"] == _v5l(cache, 16, "fp32").peak_mib  # CLI and API agree


def test_yolov5l_amp_batch16_via_subprocess_is_7_to_12_gib_and_cuts_30_to_55_percent(
        cache, config_dir):
    env = {**os.environ, "YOLO_CONFIG_DIR": str(config_dir)}
    _v5l(cache, 16, "amp")  # warms the disk cache the subprocess reads
    proc = subprocess.run(
        [sys.executable, "-m", "kfp_yolo.pipelines.cli", "plan", "--model", "yolov5l",
         "--imgsz", "640",
         "--batch", "16", "--precision", "amp", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    amp = json.loads(proc.stdout)["peak_mib"]
    fp32 = _v5l(cache, 16, "fp32").peak_mib
    assert 7 * GIB <= amp <= 12 * GIB
    assert 0.30 <= 1 - amp / fp32 <= 0.55


def test_yolov5l_amp_batch8_fits_an_8_gib_pool_and_batch16_does_not(cache):
    small = plan("yolov5l.yaml", imgsz=640, batch=8, precision="amp", pools=POOLS,
                 cache_dir=cache)
    assert small.pool.gpu_memory_mib == 8192
    large = plan("yolov5l.yaml", imgsz=640, batch=16, precision="amp", pools=POOLS,
                 cache_dir=cache)
    assert large.pool.gpu_memory_mib > 8192
    assert 8 <= large.max_batch["g8"] < 16
    # the catalog holds such an 8 GiB class, and the plan lands there
    catalog = plan("yolov5l.yaml", imgsz=640, batch=8, precision="amp", cache_dir=cache)
    assert catalog.pool.gpu_memory_mib == 8192


def test_saved_activations_match_the_cpu_reference(cache):
    """Reference measured on CPU: 0.91 GiB/image fp32 and 0.46 GiB with bf16 autocast."""
    for precision, reference in (("fp32", 0.91), ("amp", 0.46)):
        per_image = (_v5l(cache, 16, precision).breakdown_mib["activations"]
                     - _v5l(cache, 8, precision).breakdown_mib["activations"]) / 8 / GIB
        assert reference <= per_image <= reference * 1.15, precision


def test_predictions_grow_with_batch_and_imgsz_and_amp_is_below_fp32(cache):
    for precision in ("fp32", "amp"):
        by_batch = [_v5l(cache, b, precision).peak_mib for b in (1, 2, 4, 8, 16)]
        assert by_batch == sorted(set(by_batch))
        by_size = [_v5l(cache, 8, precision, imgsz=s).peak_mib for s in (320, 480, 640, 960)]
        assert by_size == sorted(set(by_size))
    for batch in (1, 4, 16):
        assert _v5l(cache, batch, "amp").peak_mib < _v5l(cache, batch, "fp32").peak_mib
    # bf16 stores the same 2-byte activations as fp16 autocast
    assert _v5l(cache, 8, "bf16") == _v5l(cache, 8, "amp")
    # ultralytics rounds imgsz up to the stride: 630 trains at 640
    assert _v5l(cache, 8, "amp", imgsz=630) == _v5l(cache, 8, "amp")


def test_breakdown_parts_follow_optimizer_and_gpus(cache):
    sgd = _v5l(cache, 8, "amp").breakdown_mib
    assert sgd["autocast_weights"] > 0 and _v5l(cache, 8, "fp32").breakdown_mib[
        "autocast_weights"] == 0
    assert sgd["ema"] == sgd["weights"] and sgd["optimizer_state"] == sgd["gradients"]
    adamw = _v5l(cache, 8, "amp", optimizer="AdamW").breakdown_mib
    assert adamw["optimizer_state"] == 2 * sgd["gradients"]
    assert _v5l(cache, 8, "amp", optimizer="auto") == _v5l(cache, 8, "amp", optimizer="adamw")
    ddp = _v5l(cache, 8, "amp", world_size=4).breakdown_mib
    assert ddp["ddp_buckets"] == sgd["gradients"] and ddp["nccl"] > 0
    assert sgd["ddp_buckets"] == sgd["nccl"] == 0


# ---- fit_batch, choose_pool, affinity, plan ---------------------------------------------------


def test_fit_batch_is_the_largest_batch_under_the_headroom(cache):
    kw = dict(imgsz=640, precision="amp", optimizer="SGD", nc=80, cache_dir=cache)
    best = fit_batch("yolov5l.yaml", gpu_memory_mib=23034, **kw)
    assert best > 0
    assert _v5l(cache, best, "amp").peak_mib <= 0.9 * 23034 < _v5l(cache, best + 1, "amp").peak_mib
    assert fit_batch("yolov5l.yaml", gpu_memory_mib=23034, headroom=1.0, **kw) >= best
    assert fit_batch("yolov5l.yaml", gpu_memory_mib=2048, **kw) == 0


def test_choose_pool_takes_the_smallest_that_fits():
    assert choose_pool(100, POOLS).name == "g8"
    assert choose_pool(8192, POOLS).name == "g8"  # a need equal to the label fits
    assert choose_pool(8193, POOLS).name == "g16"
    assert choose_pool(20000, list(reversed(POOLS))).name == "g24"
    with pytest.raises(UserError, match=r"needs 90000 MiB.*largest node pool, 'g80', has 81559 "
                                        r"MiB; lower the batch per GPU"):
        choose_pool(90000, POOLS)
    with pytest.raises(UserError, match="catalog is empty"):
        choose_pool(1, [])


def test_node_affinity_is_gt_need_minus_one():
    assert node_affinity(12645) == [
        {"key": GPU_MEMORY_LABEL, "operator": "Gt", "values": ["12644"]}]
    assert GPU_MEMORY_LABEL == "nvidia.com/gpu.memory"
    with pytest.raises(UserError, match="positive integer"):
        node_affinity(0)


def test_plan_with_global_batch_splits_it_over_gpus(cache):
    result = plan("yolov5l", imgsz=640, batch=64, world_size=8, precision="amp", pools=POOLS,
                  cache_dir=cache)
    assert (result.batch, result.batch_per_gpu) == (64, 8)
    assert result.pool.name == "g24"  # g8 and g16 have only 4 GPUs in all
    assert result.min_gpu_memory_mib >= result.peak_mib
    assert result.affinity == node_affinity(result.min_gpu_memory_mib)
    assert result.peak_mib == _v5l(cache, 8, "amp", world_size=8).peak_mib
    data = json.loads(json.dumps(result.to_dict()))
    assert data["pool"] == "g24" and set(data["max_batch"]) == {p.name for p in POOLS}
    with pytest.raises(UserError, match="does not split over 4 GPUs; use a multiple of 4 such"):
        plan("yolov5l", imgsz=640, batch=10, world_size=4, pools=POOLS, cache_dir=cache)
    with pytest.raises(UserError, match="no node pool has 64 GPUs"):
        plan("yolov5l", imgsz=640, batch=64, world_size=64, pools=POOLS, cache_dir=cache)


def test_plan_fits_the_job_shape_gpus_per_node_and_nodes(cache):
    # 4 GPUs: g8 and g16 have 4 in all, but on 1-GPU nodes; a pod needs 4 GPUs on one node.
    loose = plan("yolov5n", imgsz=320, batch=16, world_size=4, pools=POOLS, cache_dir=cache)
    assert loose.pool.name == "g8"
    shaped = plan("yolov5n", imgsz=320, batch=16, world_size=4, procs_per_node=4, pools=POOLS,
                  cache_dir=cache)
    assert shaped.pool.name == "g24"
    with pytest.raises(UserError, match="no node pool has 1 node"):
        plan("yolov5n", imgsz=320, batch=16, world_size=16, procs_per_node=16, pools=POOLS,
             cache_dir=cache)


def test_plan_batch_0_takes_the_largest_batch_of_the_smallest_pool_fitting_16(cache):
    result = plan("yolov5l", imgsz=640, batch=0, world_size=2, precision="amp", pools=POOLS,
                  cache_dir=cache)
    fits16 = [p for p in POOLS if result.max_batch[p.name] >= 16]
    assert result.pool == fits16[0]
    assert result.batch_per_gpu == result.max_batch[result.pool.name] >= 16
    assert result.batch == 2 * result.batch_per_gpu
    # nothing fits 16 per GPU: the largest pool, with the largest batch it holds
    small = plan("yolov5l", imgsz=640, batch=0, precision="fp32", pools=POOLS[:1],
                 cache_dir=cache)
    assert 0 < small.batch_per_gpu == small.max_batch["g8"] < 16
    with pytest.raises(UserError, match="largest node pool, 'tiny'"):
        plan("yolov5l", imgsz=640, batch=0, pools=[_pool("tiny", 1024)], cache_dir=cache)


# ---- CLI and bad input ----------------------------------------------------------------------


def test_plan_table_shows_breakdown_pools_and_prices(cache, capsys):
    assert cli_main(["plan", "--model", "yolov5l", "--batch", "16", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    for text in ("activations", "ema", "cuda_context", "total", "rtx4000-8g", "0.53",
                 "nvidia.com/gpu.memory Gt"):
        assert text in out
    chosen = [line for line in out.splitlines() if line.startswith(" * ")]
    assert len(chosen) == 1


@pytest.mark.parametrize("argv, message", [
    (["--model", "nope"], "model 'nope.yaml' cannot be built (FileNotFoundError"),
    (["--model", "missing.pt"], "no such .pt file"),
    (["--imgsz", "16"], "imgsz must be an integer of at least 32"),
    (["--batch", "-1"], "--batch must be 0"),
    (["--gpus", "0"], "--gpus must be at least 1"),
    (["--nc", "0"], "nc (number of classes) must be a positive integer"),
    (["--batch", "100000"], "largest node pool"),
])
def test_plan_bad_input_exits_2_with_one_sentence(cache, capsys, argv, message):
    assert cli_main(["plan", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_api_rejects_bad_values():
    with pytest.raises(UserError, match="precision must be one of"):
        estimate_peak("yolov5n", imgsz=640, batch=1, precision="fp16")
    with pytest.raises(UserError, match="optimizer must be one of"):
        estimate_peak("yolov5n", imgsz=640, batch=1, optimizer="Lion")
    with pytest.raises(UserError, match="batch per GPU must be a positive integer"):
        estimate_peak("yolov5n", imgsz=640, batch=0)
    with pytest.raises(UserError, match="headroom"):
        fit_batch("yolov5n", imgsz=640, precision="amp", optimizer="SGD", nc=80,
                  gpu_memory_mib=8192, headroom=1.5)


# ---- probe: determinism, disk cache, .pt, KFP --------------------------------------------------


def test_probe_is_deterministic_and_round_trips_the_disk_cache(tmp_path):
    fresh = probe.measure.__wrapped__  # bypass the in-memory cache
    first = fresh("yolov5n.yaml", 3, True, str(tmp_path))
    assert len(list(tmp_path.glob("*.json"))) == 1
    assert fresh("yolov5n.yaml", 3, True, str(tmp_path)) == first  # read back from disk
    probe.build_model.cache_clear()
    assert fresh("yolov5n.yaml", 3, True, None) == first  # measured again: the same bytes


def test_pt_checkpoint_plans_like_its_yaml(tmp_path):
    import torch

    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics.nn.tasks import DetectionModel

    path = tmp_path / "tiny.pt"
    torch.save({"model": DetectionModel("yolov5n.yaml", nc=3, verbose=False)}, path)
    kw = dict(imgsz=320, batch=4, precision="amp", nc=3)
    assert estimate_peak(str(path), **kw) == estimate_peak("yolov5n.yaml", **kw)


def test_kfp_component_outputs(tmp_path):
    from kfp import compiler, dsl

    component = dsl.component(plan_resources_component, base_image="python:3.11",
                              install_kfp_package=False)
    compiler.Compiler().compile(component, str(tmp_path / "c.yaml"))
    import yaml

    spec = yaml.safe_load((tmp_path / "c.yaml").read_text())
    outputs = spec["root"]["outputDefinitions"]["parameters"]
    assert {k: v["parameterType"] for k, v in outputs.items()} == {
        "batch": "NUMBER_INTEGER", "peak_mib": "NUMBER_INTEGER", "pool": "STRING",
        "min_gpu_memory_mib": "NUMBER_INTEGER"}
    result = plan_resources_component("yolov5n.yaml", 320, 0, 1, 2, "amp", "SGD", 3)
    assert result.batch % 2 == 0 and result.batch > 0
    assert result.pool in {p.name for p in load_pools()}
    assert result.min_gpu_memory_mib >= result.peak_mib > 0
