"""GPU memory planner, the estimate: calibration against the H200, the real yolov5l probe.

The yolov5l probes (fp32 and 2-byte autocast) run once per session (~15 s on 2 cores) and are
shared through the planner's caches by every test here and in test_planner_plan.py, the
in-process CLI and the subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from planner_helpers import plan_json, v5l_peak

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.pools import load_pools
from kfp_yolo.components.planner import (
    CUDA_CONTEXT_MIB,
    FRAGMENTATION,
    estimate_peak,
    fit_batch,
    probe,
)

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024

# Measured on one NVIDIA H200 (torch 2.11 cu130, 2026-11-29): yolov5l.yaml 640, batch 16, SGD,
# the real kfp-yolo trainer (ultralytics' loop, 8 dataloader workers, synthetic images).
# Sources: issue 14's table (NVML used over idle, torch max reserved) and the same run's torch max
# allocated (NVML minus reserved about 676 MiB).
H200_YOLOV5L_640_B16 = {
    "amp": {"nvml": 10820, "reserved": 10144, "allocated": 9014},
    "fp32": {"nvml": 19822, "reserved": 19144, "allocated": 16205},
}
UNDER, OVER = -0.02, 0.03
"""Issue 14: within +-3% of the real trainer, never under-predicting by more than 2%."""
_NOT_ALLOCATED = ("allocator_overhead", "nccl", "cuda_context")


# ---- calibration against the H200 -----------------------------------------------------------


def test_constants_are_the_h200_measurements():
    for precision, m in H200_YOLOV5L_640_B16.items():
        assert FRAGMENTATION[precision] == pytest.approx(m["reserved"] / m["allocated"],
                                                          abs=0.005)
    assert FRAGMENTATION["bf16"] == FRAGMENTATION["amp"]  # same 2-byte activations
    contexts = [m["nvml"] - m["reserved"] for m in H200_YOLOV5L_640_B16.values()]
    assert min(contexts) <= CUDA_CONTEXT_MIB <= max(contexts)


@pytest.mark.parametrize("precision", ["amp", "fp32"])
def test_yolov5l_batch16_prediction_is_within_minus2_plus3_percent_of_the_h200(probe_cache,
                                                                              precision):
    measured = H200_YOLOV5L_640_B16[precision]
    est = v5l_peak(probe_cache, 16, precision)
    parts = est.breakdown_mib
    allocated = sum(mib for part, mib in parts.items() if part not in _NOT_ALLOCATED)
    reserved = allocated + parts["allocator_overhead"]
    errors = {"nvml": est.peak_mib / measured["nvml"] - 1,
              "reserved": reserved / measured["reserved"] - 1,
              "allocated": allocated / measured["allocated"] - 1}
    for kind, error in errors.items():
        assert UNDER <= error <= OVER, f"{precision} {kind}: {error:+.2%}"
    assert est.peak_mib == reserved + parts["cuda_context"]


# ---- Done when ------------------------------------------------------------------------------


def test_yolov5l_fp32_batch16_peak_is_14_to_22_gib(probe_cache, capsys):
    out = plan_json(capsys, "--model", "yolov5l.yaml", "--imgsz", "640", "--batch", "16",
                     "--precision", "fp32")
    assert {"peak_mib", "breakdown_mib", "pool", "max_batch"} <= set(out)
    assert 14 * GIB <= out["peak_mib"] <= 22 * GIB
    assert sum(out["breakdown_mib"].values()) == out["peak_mib"]
    assert out["pool"] in {p.name for p in load_pools()}
    # CLI and API agree; the CLI takes the config's default optimizer (AdamW)
    assert out["optimizer"] == "AdamW"
    assert out["peak_mib"] == v5l_peak(probe_cache, 16, "fp32", optimizer="AdamW").peak_mib


def test_yolov5l_amp_batch16_via_subprocess_is_7_to_12_gib_and_cuts_30_to_55_percent(
        probe_cache, config_dir):
    env = {**os.environ, "YOLO_CONFIG_DIR": str(config_dir)}
    v5l_peak(probe_cache, 16, "amp")  # warms the disk probe_cache the subprocess reads
    proc = subprocess.run(
        [sys.executable, "-m", "kfp_yolo.pipelines.cli", "plan", "--model", "yolov5l",
         "--imgsz", "640",
         "--batch", "16", "--precision", "amp", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    amp = json.loads(proc.stdout)["peak_mib"]
    fp32 = v5l_peak(probe_cache, 16, "fp32").peak_mib
    assert 7 * GIB <= amp <= 12 * GIB
    assert 0.30 <= 1 - amp / fp32 <= 0.55


def test_saved_activations_match_the_cpu_reference(probe_cache):
    """Reference measured on CPU: 0.91 GiB/image fp32 and 0.46 GiB with bf16 autocast."""
    for precision, reference in (("fp32", 0.91), ("amp", 0.46)):
        per_image = (v5l_peak(probe_cache, 16, precision).breakdown_mib["activations"]
                     - v5l_peak(probe_cache, 8, precision).breakdown_mib["activations"]) / 8 / GIB
        assert reference <= per_image <= reference * 1.15, precision


def test_predictions_grow_with_batch_and_imgsz_and_amp_is_below_fp32(probe_cache):
    for precision in ("fp32", "amp"):
        by_batch = [v5l_peak(probe_cache, b, precision).peak_mib for b in (1, 2, 4, 8, 16)]
        assert by_batch == sorted(set(by_batch))
        by_size = [v5l_peak(probe_cache, 8, precision, imgsz=s).peak_mib
                   for s in (320, 480, 640, 960)]
        assert by_size == sorted(set(by_size))
    for batch in (1, 4, 16):
        amp, fp32 = (v5l_peak(probe_cache, batch, p).peak_mib for p in ("amp", "fp32"))
        assert amp < fp32
    # bf16 stores the same 2-byte activations as fp16 autocast
    assert v5l_peak(probe_cache, 8, "bf16") == v5l_peak(probe_cache, 8, "amp")
    # ultralytics rounds imgsz up to the stride: 630 trains at 640
    assert v5l_peak(probe_cache, 8, "amp", imgsz=630) == v5l_peak(probe_cache, 8, "amp")


def test_breakdown_parts_follow_optimizer_and_gpus(probe_cache):
    sgd = v5l_peak(probe_cache, 8, "amp").breakdown_mib
    assert sgd["autocast_weights"] > 0 and v5l_peak(probe_cache, 8, "fp32").breakdown_mib[
        "autocast_weights"] == 0
    assert sgd["ema"] == sgd["weights"] and sgd["optimizer_state"] == sgd["gradients"]
    adamw = v5l_peak(probe_cache, 8, "amp", optimizer="AdamW").breakdown_mib
    assert adamw["optimizer_state"] == 2 * sgd["gradients"]
    assert (v5l_peak(probe_cache, 8, "amp", optimizer="auto")
            == v5l_peak(probe_cache, 8, "amp", optimizer="adamw"))
    ddp = v5l_peak(probe_cache, 8, "amp", world_size=4).breakdown_mib
    assert ddp["ddp_buckets"] == sgd["gradients"] and ddp["nccl"] > 0
    assert sgd["ddp_buckets"] == sgd["nccl"] == 0


# ---- bad input, probe: determinism, disk cache, .pt ------------------------------------------


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


def test_probe_is_deterministic_and_round_trips_the_disk_cache(tmp_path):
    fresh = probe.measure.__wrapped__  # bypass the in-memory probe_cache
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
