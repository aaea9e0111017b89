"""The input pipeline of each training process, sized from its pod: dataloader workers and cache.

`choose_input_pipeline` is pure arithmetic on what the pod has (CPUs and memory from its cgroup,
runtime.usable_cpus / usable_memory_bytes), how many training processes share it, and how big
the decoded dataset is. The rules:

- Workers per process (spec.workers 0 = auto; N > 0 is kept as given): the pod's CPUs divided
  by its training processes, less one CPU for each process's own training loop; at least 1, at
  most MAX_WORKERS, and no more than the pod's memory holds (each worker keeps a mosaic buffer
  and prefetched batches, WORKER_BYTES plus images).
- Image cache (spec.cache auto | ram | disk | none; anything but auto is kept as given): auto
  is `disk` (.npy files beside the images) when the dataset folder is the job's own copy (a
  downloaded dataset, never a user's folder) and the files take at most DISK_SHARE of its free
  space; otherwise `none`. Never `ram` on its own: `disk` gives the very pixels decoding gives
  (np.save of the decoded image), read through the page cache that every process of the pod
  shares, as fast as `ram` in benchmarks/dataloader.py; `ram` holds a copy per DDP rank and runs
  hosts out of memory (ultralytics issues #22307, #22944), and it changes the training data:
  with it, mosaic draws its partner images from the whole dataset instead of the recent-image
  buffer (ultralytics data/augment.py, `buffer_enabled = dataset.cache != "ram"`). A `ram` the
  user sets must fit twice (ultralytics' own margin) in what the pod's memory leaves after the
  processes and their workers; ultralytics checks the node's memory, not the pod's limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.spec import CACHES

__all__ = ["DISK_SHARE", "MAX_WORKERS", "PROCESS_BYTES", "WORKER_BYTES", "InputPipeline",
           "choose_input_pipeline", "decoded_bytes", "split_images"]

MAX_WORKERS = 16
"""Most dataloader workers per process: 16 mosaic workers at 640 outpace an H200's yolov5l step
at batch 64 (benchmarks/dataloader.py measures images/s per worker)."""
PROCESS_BYTES = 4 << 30
"""Host memory of one training process (CUDA torch, model, optimizer copies, pinned batches)."""
WORKER_BYTES = 512 << 20
"""Host memory of one dataloader worker before images: a forked interpreter's own pages."""
PREFETCH = 4
"""Batches each training worker prefetches (ultralytics' build_dataloader)."""
DISK_SHARE = 0.5
"""Largest share of the dataset filesystem's free space a disk cache may take: a pod's scratch
is node storage, and the kubelet evicts pods when that runs low."""
_GIB = 1 << 30


@dataclass(frozen=True)
class InputPipeline:
    """Dataloader workers per process and image cache, with the reason for each."""

    workers: int
    cache: str
    """ram | disk | none."""
    reason: str

    @property
    def ultralytics_cache(self) -> bool | str:
        """The value of ultralytics' `cache` argument."""
        return False if self.cache == "none" else self.cache


def _mosaic_buffer(n_images: int, batch: int) -> int:
    """Images a training worker keeps for mosaic (ultralytics BaseDataset.max_buffer_length)."""
    return min(n_images, batch * 8, 1000)


def choose_input_pipeline(*, cpus: int, mem_bytes: int, procs_per_node: int, n_images: int,
                          imgsz: int, batch_per_proc: int = 16, workers_override: int = 0,
                          cache_override: str = "auto", disk_bytes: int | None = None,
                          disk_free_bytes: int = 0) -> InputPipeline:
    """Workers and cache for each of `procs_per_node` training processes sharing a pod.

    Args:
        cpus: CPUs of the pod (its cgroup quota).
        mem_bytes: memory of the pod (its cgroup limit).
        procs_per_node: training processes sharing those CPUs and that memory.
        n_images: images of the dataset (train and val: ultralytics caches both).
        imgsz: training image size; a cached image is at most imgsz x imgsz x 3 bytes.
        batch_per_proc: batch of each process (sizes the workers' buffers).
        workers_override: spec.workers; 0 = choose.
        cache_override: spec.cache; "auto" = choose.

    Raises:
        UserError: a bad setting, or a `ram` cache the pod's memory cannot hold.
        disk_bytes: the images decoded at their own size (what `disk` writes); None = at imgsz.
        disk_free_bytes: free space beside the images; 0 = `disk` is not allowed there.
    """
    if cache_override not in CACHES:
        raise UserError(f"cache must be one of {list(CACHES)}, got {cache_override!r}.")
    if workers_override < 0:
        raise UserError(f"workers must be 0 (chosen from the pod's CPUs) or a positive number "
                        f"of dataloader workers per process, got {workers_override}.")
    procs = max(1, procs_per_node)
    image = imgsz * imgsz * 3
    per_worker = WORKER_BYTES + (_mosaic_buffer(n_images, batch_per_proc)
                                 + PREFETCH * batch_per_proc) * image
    mem_per_proc = mem_bytes // procs - PROCESS_BYTES
    if workers_override:
        workers = workers_override
        why_workers = f"{workers} workers per process (set)"
    else:
        by_cpu = max(1, cpus // procs - 1)
        by_memory = max(0, mem_per_proc // per_worker)
        workers = min(by_cpu, by_memory, MAX_WORKERS)
        limit = ("memory" if workers == by_memory < min(by_cpu, MAX_WORKERS) else
                 f"at most {MAX_WORKERS}" if workers == MAX_WORKERS < by_cpu else "CPUs")
        why_workers = (f"{workers} worker{'' if workers == 1 else 's'} per process ({cpus} CPUs"
                       f" / {procs} process"
                       f"{'es' if procs > 1 else ''}, one CPU left for each training loop; "
                       f"limited by {limit})")
    left = mem_bytes - procs * (PROCESS_BYTES + workers * per_worker)
    if cache_override == "ram" and 2 * procs * n_images * image > left:
        raise UserError(
            f"cache ram needs {procs} x {n_images * image / _GIB:.1f} GiB ({n_images} images at "
            f"imgsz {imgsz}, a copy per process) twice over, but the pod's "
            f"{mem_bytes / _GIB:.1f} GiB leave {max(0, left) / _GIB:.1f} GiB after the "
            "processes and their workers; use cache disk (shared by the processes) or auto.")
    cache, why_cache = _choose_cache(
        n_images=n_images, disk_bytes=n_images * image if disk_bytes is None else disk_bytes,
        disk_free_bytes=disk_free_bytes, override=cache_override)
    return InputPipeline(workers=workers, cache=cache, reason=f"{why_workers}; {why_cache}")


def _choose_cache(*, n_images: int, disk_bytes: int, disk_free_bytes: int, override: str
                  ) -> tuple[str, str]:
    if override != "auto":
        return override, f"cache {override} (set)"
    if n_images == 0:
        return "none", "cache none (no images)"
    if disk_free_bytes <= 0:
        return "none", ("cache none (a disk cache writes .npy files beside the images, and the "
                        "dataset folder is not this job's copy)")
    if disk_bytes > DISK_SHARE * disk_free_bytes:
        return "none", (f"cache none (the .npy files would take {disk_bytes / _GIB:.1f} GiB of "
                        f"{disk_free_bytes / _GIB:.1f} GiB free)")
    return "disk", (f"cache disk ({n_images} images, {disk_bytes / _GIB:.1f} GiB of .npy shared "
                    "by the pod's processes through the page cache; the same pixels as decoding)")


def decoded_bytes(images: Iterable[Path]) -> tuple[int, int]:
    """(images, bytes they take decoded at their own size, 3 channels), from file headers."""
    from kfp_yolo.components.ultralytics_patches import original_image_open

    open_image = original_image_open()
    count = total = 0
    for path in images:
        count += 1
        try:
            with open_image(path) as image:
                width, height = image.size
        except Exception:  # noqa: BLE001 - data prep validated them; an odd one is skipped
            continue
        total += width * height * 3
    return count, total


def split_images(source: str | list) -> list[Path]:
    """The image files of a data.yaml split, by ultralytics' rules (BaseDataset.get_img_files,
    which also times reads, so it is not called here): folders searched, .txt lists with
    `./` lines relative to the list, image suffixes only."""
    from ultralytics.data.utils import IMG_FORMATS

    files: list[Path] = []
    for entry in source if isinstance(source, list) else [source]:
        path = Path(entry)
        if path.is_dir():
            files += path.rglob("*.*")
        elif path.is_file():
            lines = path.read_text(encoding="utf-8-sig").strip().splitlines()
            files += [path.parent / ln[2:] if ln.startswith("./") else Path(ln) for ln in lines]
    return [p for p in files if p.suffix[1:].lower() in IMG_FORMATS]
