"""kfp_yolo.components.runtime: CPUs (affinity mask, capped by a pod's CPU limit) and memory
(physical, capped by its memory limit)."""

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


PHYSICAL = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.mark.parametrize(("files", "expected"), [
    ({}, PHYSICAL),                                               # no cgroup files
    ({"memory.max": "max\n"}, PHYSICAL),                          # v2, no limit
    ({"memory.max": "34359738368\n"}, min(PHYSICAL, 32 << 30)),   # limits.memory: 32Gi
    ({"memory.max": "1073741824\n"}, min(PHYSICAL, 1 << 30)),
    ({"memory/memory.limit_in_bytes": "2147483648"}, min(PHYSICAL, 2 << 30)),   # v1
    ({"memory/memory.limit_in_bytes": str(2**63 - 4096)}, PHYSICAL),  # v1 "unlimited"
    ({"memory.max": "garbage"}, PHYSICAL),
])
def test_memory_limit_caps_physical_memory(tmp_path, files, expected):
    from kfp_yolo.components.runtime import usable_memory_bytes

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert usable_memory_bytes(tmp_path) == expected
