"""kfp_yolo.components.runtime.usable_cpus: the affinity mask, capped by a pod's CPU limit."""

from __future__ import annotations

import os

import pytest

from kfp_yolo.components.runtime import usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("files", "expected"), [
    ({}, AFFINITY),                                              # no cgroup files: the mask
    ({"cpu.max": "max 100000\n"}, AFFINITY),                     # v2, no limit
    ({"cpu.max": "50000 100000\n"}, 1),                          # limits.cpu: 500m
    ({"cpu.max": "150000 100000\n"}, min(AFFINITY, 2)),          # 1.5 CPUs round up
    ({"cpu.max": "6400000 100000\n"}, AFFINITY),                 # more than the mask allows
    ({"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 1),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, AFFINITY),
    ({"cpu.max": "garbage"}, AFFINITY),
])
def test_cpu_limit_caps_the_affinity_mask(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert usable_cpus(tmp_path) == expected
