"""GPU memory planner, the plan: auto batch (`batch: 0`), pools, affinity, CLI, KFP step.

The yolov5l and yolov5n probes are shared with test_planner_estimate.py through one cache
folder for the session (see `config_dir`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from planner_helpers import plan_json, v5l_peak

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.pools import GPU_MEMORY_LABEL, Pool, catalog_json, load_pools
from kfp_yolo.components.planner import (
    MIN_BATCHES_PER_EPOCH,
    NOMINAL_BATCH,
    auto_batch,
    batch_limit,
    choose_pool,
    estimate_peak,
    fit_batch,
    min_gpu_memory_mib,
    node_affinity,
    plan,
)
from kfp_yolo.components.planner.plan import accumulate
from kfp_yolo.components.steps import plan_resources_component
from kfp_yolo.pipelines.cli import main as cli_main

GIB = 1024


def _pool(name: str, mib: int, gpus: int = 1, nodes: int = 4) -> Pool:
    return Pool(name=name, gpu_product="GPU", gpu_memory_mib=mib, gpus_per_node=gpus,
                max_nodes=nodes, flavor=f"f-{name}")


POOLS = [_pool("g8", 8192), _pool("g16", 15360), _pool("g24", 23034, gpus=4),
         _pool("g80", 81559, gpus=8, nodes=2)]


def _fits(probe_cache: Path, model: str, per_gpu: int, pool: Pool, **kw) -> bool:
    """The planner's own numbers: predicted peak / headroom within the pool's GPU memory."""
    peak = estimate_peak(model, imgsz=640, batch=per_gpu, cache_dir=probe_cache, **kw).peak_mib
    return min_gpu_memory_mib(peak) <= pool.gpu_memory_mib


# ---- batch 0: the auto batch ----------------------------------------------------------------


def test_auto_batch_keeps_the_nominal_64_split_evenly():
    # (largest batch per GPU that fits, GPUs) -> global batch
    cases = {(123, 1): 64, (64, 1): 64, (63, 1): 32, (9, 1): 8, (1, 1): 1, (0, 1): 0,
             (20, 2): 32, (5, 8): 32, (8, 8): 64, (0, 8): 0, (4, 64): 64,
             (100, 3): 63, (10, 3): 30, (5, 48): 48}
    assert {case: auto_batch(*case) for case in cases} == cases
    # ultralytics: accumulate = max(round(64 / batch), 1): 64/32/16/... keep 64 per step
    assert [accumulate(b) * b for b in (64, 32, 16, 8, 4, 2, 1)] == [NOMINAL_BATCH] * 7
    assert (accumulate(24), accumulate(63), accumulate(96)) == (3, 1, 1)


@pytest.mark.parametrize("model, precision, gpus", [
    ("yolov5l.yaml", "amp", 1), ("yolov5l.yaml", "fp32", 1), ("yolov5l.yaml", "amp", 2),
    ("yolov5n.yaml", "amp", 1), ("yolov5n.yaml", "amp", 8),
])
def test_batch_0_on_the_catalog_is_the_largest_fitting_of_64_32_16(probe_cache, capsys, model,
                                                                    precision, gpus):
    pools = load_pools()
    out = plan_json(capsys, "--model", model, "--imgsz", "640", "--batch", "0", "--precision",
                    precision, "--optimizer", "SGD", "--gpus", str(gpus))
    assert set(out["auto_batch"]) == {p.name for p in pools}
    kw = dict(precision=precision, world_size=gpus)
    for pool in pools:
        total = out["auto_batch"][pool.name]
        assert total <= NOMINAL_BATCH and total % gpus == 0
        assert total in (0, *(b for b in (64, 32, 16, 8, 4, 2, 1) if b >= gpus))
        if total:  # never an OOM by the planner's own numbers
            assert _fits(probe_cache, model, total // gpus, pool, **kw), pool.name
        if total < NOMINAL_BATCH:  # and the next candidate up does not fit
            bigger = max(2 * total, gpus) // gpus
            assert not _fits(probe_cache, model, bigger, pool, **kw), pool.name
    # the smallest pool (of those with enough GPUs) with the largest of those totals
    shaped = [p for p in pools if p.gpus_per_node * p.max_nodes >= gpus]
    best = max(out["auto_batch"][p.name] for p in shaped)
    chosen = next(p for p in shaped if out["auto_batch"][p.name] == best)
    assert out["pool"] == chosen.name and out["batch"] == best
    assert out["batch_per_gpu"] * gpus == best
    assert out["batch_rule"].startswith("auto: largest of 64/32/16/... that fits " + chosen.name)
    assert out["accumulate"] * best == out["effective_batch"] == NOMINAL_BATCH
    assert min_gpu_memory_mib(out["peak_mib"]) == out["min_gpu_memory_mib"] <= \
        chosen.gpu_memory_mib


def test_batch_0_below_64_says_what_64_needs(probe_cache):
    # an 8 GiB and a 16 GiB pool hold 8 and 16 images of yolov5l at 640 AMP, not 32
    result = plan("yolov5l", imgsz=640, batch=0, pools=POOLS[:2], cache_dir=probe_cache)
    assert (result.pool.name, result.batch, result.accumulate) == ("g16", 16, 4)
    assert result.auto_batch == {"g8": 8, "g16": 16}
    need = min_gpu_memory_mib(v5l_peak(probe_cache, 32, "amp").peak_mib)
    assert f"32 needs {need} MiB per GPU" in result.batch_rule
    # 3 GPUs split none of 64/32/16 evenly: the largest multiple of 3 that fits
    odd = plan("yolov5l", imgsz=640, batch=0, world_size=3, pools=POOLS, cache_dir=probe_cache)
    assert odd.batch % 3 == 0 and odd.batch <= 63 and "multiples of 3" in odd.batch_rule
    assert odd.auto_batch == {name: 3 * min(21, fits) for name, fits in odd.max_batch.items()}
    assert odd.auto_batch["g16"] < 63  # so g24, the smallest pool that holds 21 per GPU
    assert (odd.pool.name, odd.batch_per_gpu, odd.accumulate) == ("g24", 21, 1)
    with pytest.raises(UserError, match="batch 0 keeps the global batch at most 64, which does "
                                        "not split over 128 GPUs; give an explicit batch"):
        plan("yolov5n", imgsz=640, batch=0, world_size=128, pools=[_pool("big", 81559, 8, 16)],
             cache_dir=probe_cache)
    # nothing fits one image: choose_pool names the largest pool and the fix
    with pytest.raises(UserError, match="largest node pool, 'tiny'"):
        plan("yolov5l", imgsz=640, batch=0, pools=[_pool("tiny", 1024)], cache_dir=probe_cache)


def test_an_explicit_batch_is_kept_as_given(probe_cache):
    # the pool: the smallest that holds the batch per GPU and has the GPUs (yolov5l AMP 640: 16
    # and 12 per GPU fit the 15 GiB class, 96 needs the 80 GiB one; 8 GPUs: g24 is the smallest
    # pool with 8 GPUs in all)
    for batch, gpus, acc, pool in ((16, 1, 4, "g16"), (24, 2, 3, "g16"), (96, 1, 1, "g80"),
                                   (8, 8, 8, "g24")):
        result = plan("yolov5l", imgsz=640, batch=batch, world_size=gpus, pools=POOLS,
                      cache_dir=probe_cache)
        assert (result.batch, result.batch_per_gpu, result.accumulate) == (batch, batch // gpus,
                                                                            acc)
        assert result.batch_rule.startswith(f"given: batch {batch} as configured")
        assert result.pool.name == pool
        assert min_gpu_memory_mib(result.peak_mib) <= result.pool.gpu_memory_mib
    # the auto batch per pool is shown with a given batch too
    assert set(result.to_dict()["auto_batch"]) == {p.name for p in POOLS}


# ---- fit_batch, choose_pool, affinity, plan ---------------------------------------------------


def test_yolov5l_amp_batch8_fits_an_8_gib_pool_and_batch16_does_not(probe_cache):
    small = plan("yolov5l.yaml", imgsz=640, batch=8, precision="amp", pools=POOLS,
                 cache_dir=probe_cache)
    assert small.pool.gpu_memory_mib == 8192
    large = plan("yolov5l.yaml", imgsz=640, batch=16, precision="amp", pools=POOLS,
                 cache_dir=probe_cache)
    assert large.pool.gpu_memory_mib > 8192
    assert 8 <= large.max_batch["g8"] < 16
    # the catalog holds such an 8 GiB class, and the plan lands there
    catalog = plan("yolov5l.yaml", imgsz=640, batch=8, precision="amp", cache_dir=probe_cache)
    assert catalog.pool.gpu_memory_mib == 8192


def test_fit_batch_is_the_largest_batch_under_the_headroom(probe_cache):
    kw = dict(imgsz=640, precision="amp", optimizer="SGD", nc=80, cache_dir=probe_cache)
    best = fit_batch("yolov5l.yaml", gpu_memory_mib=23034, **kw)
    assert best > 0
    assert (v5l_peak(probe_cache, best, "amp").peak_mib <= 0.9 * 23034
            < v5l_peak(probe_cache, best + 1, "amp").peak_mib)
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


def test_plan_with_global_batch_splits_it_over_gpus(probe_cache):
    result = plan("yolov5l", imgsz=640, batch=64, world_size=8, precision="amp", pools=POOLS,
                  cache_dir=probe_cache)
    assert (result.batch, result.batch_per_gpu) == (64, 8)
    assert result.pool.name == "g24"  # g8 and g16 have only 4 GPUs in all
    assert result.min_gpu_memory_mib >= result.peak_mib
    assert result.affinity == node_affinity(result.min_gpu_memory_mib)
    assert result.peak_mib == v5l_peak(probe_cache, 8, "amp", world_size=8).peak_mib
    data = json.loads(json.dumps(result.to_dict()))
    assert data["pool"] == "g24" and set(data["max_batch"]) == {p.name for p in POOLS}
    with pytest.raises(UserError, match="does not split over 4 GPUs; use a multiple of 4 such"):
        plan("yolov5l", imgsz=640, batch=10, world_size=4, pools=POOLS, cache_dir=probe_cache)
    with pytest.raises(UserError, match="no node pool has 64 GPUs"):
        plan("yolov5l", imgsz=640, batch=64, world_size=64, pools=POOLS, cache_dir=probe_cache)


def test_plan_fits_the_job_shape_gpus_per_node_and_nodes(probe_cache):
    # 4 GPUs: g8 and g16 have 4 in all, but on 1-GPU nodes; a pod needs 4 GPUs on one node.
    loose = plan("yolov5n", imgsz=320, batch=16, world_size=4, pools=POOLS, cache_dir=probe_cache)
    assert loose.pool.name == "g8"
    shaped = plan("yolov5n", imgsz=320, batch=16, world_size=4, procs_per_node=4, pools=POOLS,
                  cache_dir=probe_cache)
    assert shaped.pool.name == "g24"
    with pytest.raises(UserError, match="no node pool has 1 node"):
        plan("yolov5n", imgsz=320, batch=16, world_size=16, procs_per_node=16, pools=POOLS,
             cache_dir=probe_cache)


# ---- CLI and KFP -----------------------------------------------------------------------------


def test_plan_table_shows_breakdown_pools_and_prices(probe_cache, capsys):
    assert cli_main(["plan", "--model", "yolov5l", "--imgsz", "640", "--batch", "16",
                     "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    for text in ("activations", "ema", "cuda_context", "total", "rtx4000-8g", "0.53",
                 "nvidia.com/gpu.memory Gt", "auto batch", "accumulate 4 (effective batch 64)",
                 "given: batch 16 as configured", "optimizer AdamW",  # the config's defaults
                 "objective smallest: the least GPU memory that fits",
                 "epoch and run need --train-images N"):
        assert text in out
    # one chosen pool, marked in both tables (memory; time and cost)
    chosen = {line.split()[1] for line in out.splitlines() if line.startswith(" * ")}
    assert len(chosen) == 1 and len([ln for ln in out.splitlines() if ln.startswith(" * ")]) == 2


def test_plan_table_with_batch_0_shows_the_auto_batch_per_pool(probe_cache, capsys):
    assert cli_main(["plan", "--model", "yolov5l", "--imgsz", "640", "--batch", "0"]) == 0
    table = capsys.readouterr().out
    data = plan_json(capsys, "--model", "yolov5l", "--imgsz", "640", "--batch", "0")
    assert data["batch_rule"] in table
    # smallest with batch 0: the rule names the batch that decided it (not "the least memory")
    assert data["pool_rule"] == ("objective smallest: the least GPU memory that fits the largest "
                                 f"auto batch, {data['batch']} (smaller pools run less)")
    # every row of the time-and-cost table is explained under it
    assert "images/s source: measured = the nearest run in the throughput history" in table
    names = set(data["auto_batch"])
    for name in names:
        assert f"   {name}: " in table.split("images/s source:")[1]
    shown = {}
    for line in table.split("time and cost")[0].splitlines():
        words = line.replace("*", " ").split()
        if words and words[0] in names:  # pool, GPU, MiB, max batch/GPU, auto batch, price
            shown[words[0]] = (int(words[-3]), int(words[-2]))
    assert shown == {name: (data["max_batch"][name], data["auto_batch"][name]) for name in names}


@pytest.mark.parametrize("argv, message", [
    (["--model", "nope"], "ultralytics has no model YAML named 'nope.yaml'"),
    (["--model", "missing.pt"], "no such .pt file"),
    (["--imgsz", "16"], "--imgsz: imgsz=16 is invalid: Input should be greater than or equal "
                        "to 32"),
    (["--imgsz", "100"], "imgsz=100 is invalid: must be a multiple of 32"),
    (["--batch", "-1"], "--batch: batch=-1 is invalid"),
    (["--objective", "cost", "--deadline-h", "-1"], "--deadline-h: deadline_h=-1.0 is invalid"),
    (["--train-images", "0"], "--train-images must be the training split's image count"),
    (["--set", "objective=fast"], "--set: objective='fast' is invalid"),
    (["--gpus", "0"], "--gpus must be at least 1"),
    (["--nc", "0"], "nc (number of classes) must be a positive integer"),
    (["--batch", "100000"], "largest node pool"),
])
def test_plan_bad_input_exits_2_with_one_sentence(probe_cache, capsys, argv, message):
    assert cli_main(["plan", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


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
        "min_gpu_memory_mib": "NUMBER_INTEGER", "node_affinity": "STRUCT",
        "tolerations": "LIST", "batch_rule": "STRING", "accumulate": "NUMBER_INTEGER",
        "pool_rule": "STRING", "trial_gpu_h": "NUMBER_DOUBLE"}
    report = type("Artifact", (), {"path": str(tmp_path / "report.md")})()
    result = plan_resources_component("yolov5n.yaml", 320, 0, 1, 2, "amp", "SGD", 3,
                                      catalog_json(), report, train_images=1000, epochs=10,
                                      objective="time")
    text = (tmp_path / "report.md").read_text()
    assert f"**Pool {result.pool}**" in text and "| pool | GPU | batch |" in text
    assert "objective time:" in text and "1000 training images x 10 epochs" in text
    assert result.pool_rule.startswith("objective time: ") and result.pool_rule in text
    assert result.batch % 2 == 0 and result.batch > 0
    assert result.pool in {p.name for p in load_pools()}
    assert result.min_gpu_memory_mib >= result.peak_mib > 0
    assert result.batch_rule.startswith("auto:") and result.accumulate == 64 // result.batch
    assert result.trial_gpu_h > 0  # one search trial's GPU-hours (hpo_epochs 3) on that pool


# ---- a small dataset caps the auto batch ------------------------------------------------------


@pytest.mark.parametrize("train_images, world_size, expected", [
    (None, 1, 64), (100_000, 1, 64), (1024, 1, 64), (725, 1, 64), (700, 1, 32), (512, 1, 32),
    (205, 1, 16), (64, 1, 4), (7, 1, 1), (205, 8, 16), (20, 8, 8), (200, 3, 15),
])
def test_auto_keeps_enough_batches_per_epoch(train_images, world_size, expected):
    # BatchNorm's running statistics and ultralytics' warmup move once per batch: auto keeps
    # about MIN_BATCHES_PER_EPOCH batches per epoch or more (at least 1 image per GPU)
    assert auto_batch(1000, world_size, batch_limit(train_images)) == expected
    if train_images and expected > world_size:
        assert train_images / expected >= MIN_BATCHES_PER_EPOCH / 1.5


def test_a_small_dataset_gets_a_smaller_batch_and_says_why(probe_cache):
    # shapes, 512 training images: batch 64 gave mAP50-95 0.79 vs 0.81 at 16
    result = plan("yolov5n.yaml", imgsz=128, batch=0, cache_dir=probe_cache, train_images=512)
    assert result.batch == 32 and result.accumulate == 2
    assert "512 training images: at most 32 per batch" in result.batch_rule
    demo = plan("yolov5n.yaml", imgsz=128, batch=0, cache_dir=probe_cache, train_images=205)
    assert demo.batch == 16  # the shapes demo: the same mAP50-95 (0.64) as batch 16
    big = plan("yolov5n.yaml", imgsz=128, batch=0, cache_dir=probe_cache, train_images=100_000)
    assert big.batch == 64 and "training images" not in big.batch_rule
    given = plan("yolov5n.yaml", imgsz=128, batch=64, cache_dir=probe_cache, train_images=205)
    assert given.batch == 64  # an explicit batch is kept
