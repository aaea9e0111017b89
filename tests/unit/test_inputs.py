"""The input pipeline sized from the pod (training/inputs.py): workers per process and cache."""

from __future__ import annotations

import itertools

import pytest

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.training.inputs import (
    MAX_WORKERS,
    PREFETCH,
    PROCESS_BYTES,
    WORKER_BYTES,
    choose_input_pipeline,
    decoded_bytes,
    split_images,
)

GIB = 1 << 30
H200_POD = {"cpus": 16, "mem_bytes": 128 * GIB}  # one GPU's share of an 8-GPU node


def _choose(**changes):
    args = {**H200_POD, "procs_per_node": 1, "n_images": 400, "imgsz": 640,
            "batch_per_proc": 16, "disk_free_bytes": 500 * GIB, **changes}
    return choose_input_pipeline(**args)


def test_one_process_gets_the_pods_cpus_less_one_and_a_disk_cache():
    chosen = _choose()
    assert (chosen.workers, chosen.cache) == (15, "disk")
    assert chosen.ultralytics_cache == "disk"
    assert "16 CPUs / 1 process, one CPU left" in chosen.reason


def test_processes_sharing_a_pod_split_its_cpus():
    chosen = _choose(cpus=64, procs_per_node=4)
    assert (chosen.workers, chosen.cache) == (15, "disk")


def test_disk_cache_only_in_the_jobs_own_copy_and_with_room():
    chosen = _choose(disk_free_bytes=0)
    assert chosen.cache == "none" and "not this job's copy" in chosen.reason
    # 400 images decoded at 4000 x 3000 take 13.4 GiB: not in half of 20 GiB free
    chosen = _choose(disk_bytes=400 * 4000 * 3000 * 3, disk_free_bytes=20 * GIB)
    assert chosen.cache == "none" and "13.4 GiB of 20.0 GiB free" in chosen.reason
    assert _choose(n_images=0).cache == "none"


def test_ram_only_when_set_and_only_when_the_pod_holds_it():
    assert _choose(cache_override="ram").cache == "ram"
    with pytest.raises(UserError) as info:  # 4 copies of 100k images at 640: 458 GiB
        _choose(procs_per_node=4, cpus=64, n_images=100_000, cache_override="ram")
    assert str(info.value).startswith("cache ram needs 4 x 114.4 GiB (100000 images at imgsz "
                                      "640, a copy per process) twice over")
    assert "use cache disk" in str(info.value)


def test_workers_are_capped_by_memory_and_by_the_ceiling():
    assert _choose(cpus=128).workers == MAX_WORKERS
    small = _choose(mem_bytes=8 * GIB, batch_per_proc=64)
    # 8 GiB less the 4 GiB of the training process, over ~1.25 GiB per worker (a mosaic buffer
    # and prefetched batches of 640 px images at 64 per batch)
    assert small.workers == 3
    assert "limited by memory" in small.reason


def test_user_settings_are_kept():
    chosen = _choose(procs_per_node=8, workers_override=3, cache_override="ram")
    assert (chosen.workers, chosen.cache) == (3, "ram")
    assert _choose(cache_override="none").ultralytics_cache is False


@pytest.mark.parametrize(("changes", "message"), [
    ({"cache_override": "memory"}, "cache must be one of ['auto', 'ram', 'disk', 'none'], got "
                                   "'memory'"),
    ({"workers_override": -1}, "workers must be 0 (chosen from the pod's CPUs) or a positive"),
])
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(UserError) as info:
        _choose(**changes)
    assert message in str(info.value)


def test_choices_never_overcommit_the_pod():
    for cpus, procs, mem_gib, images, batch in itertools.product(
            [2, 8, 16, 64, 224], [1, 2, 4, 8], [8, 32, 64, 512], [100, 10_000, 1_000_000],
            [8, 16, 64]):
        _check_fits(cpus, procs, mem_gib, images, batch)


def _check_fits(cpus: int, procs: int, mem_gib: int, images: int, batch: int) -> None:
    chosen = _choose(cpus=cpus, procs_per_node=procs, mem_bytes=mem_gib * GIB, n_images=images,
                     batch_per_proc=batch)
    assert 0 <= chosen.workers <= MAX_WORKERS
    if cpus >= 2 * procs:  # each process keeps a CPU for its own loop
        assert procs * (chosen.workers + 1) <= cpus
    per_worker = WORKER_BYTES + (min(images, batch * 8, 1000) + PREFETCH * batch) * 640**2 * 3
    if chosen.workers:
        assert procs * (PROCESS_BYTES + chosen.workers * per_worker) <= mem_gib * GIB
    assert chosen.cache in ("disk", "none")  # never ram unless the user sets it


def test_dataset_size_from_the_files(tmp_path):
    from kfp_yolo.components.data.synth import SynthSpec, synthesize

    synthesize(tmp_path, SynthSpec(images=10, imgsz=48))
    images = split_images(str(tmp_path / "images" / "train"))
    assert len(images) == 8
    listing = tmp_path / "val.txt"
    listing.write_text("./images/val/shape_00000.png\n./images/val/shape_00001.png\n")
    images += split_images([str(listing)])
    assert decoded_bytes(images) == (10, 10 * 48 * 48 * 3)


def _batches(data_yaml, cache, count: int = 3) -> list:
    """The first training batches (mosaic on, one process, fixed seeds) of a cache mode."""
    import random

    import numpy as np
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml))
    dataset = build_yolo_dataset(get_cfg(overrides={"imgsz": 64, "cache": cache}),
                                 data["train"], 4, data, mode="train")
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    loader = build_dataloader(dataset, batch=4, workers=0, shuffle=False, rank=-1)
    batches = [batch["img"].clone() for _, batch in zip(range(count), loader, strict=False)]
    for npy in data_yaml.parent.rglob("*.npy"):  # read by every cache mode once written
        npy.unlink()
    return batches


def test_disk_cache_gives_the_pixels_no_cache_gives_and_ram_does_not(tmp_path):
    import torch
    import yaml

    from kfp_yolo.components.data.synth import SynthSpec, synthesize
    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    data_yaml = synthesize(tmp_path, SynthSpec(images=40, imgsz=64))
    data = yaml.safe_load(data_yaml.read_text())
    data_yaml.write_text(yaml.safe_dump({**data, "path": str(tmp_path)}, sort_keys=False))
    plain, disk, ram = (_batches(data_yaml, cache) for cache in (False, "disk", "ram"))
    assert all(torch.equal(a, b) for a, b in zip(plain, disk, strict=True))
    # ram switches mosaic's partners from the recent-image buffer to the whole dataset
    assert not all(torch.equal(a, b) for a, b in zip(plain, ram, strict=True))
