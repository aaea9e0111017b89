"""kfp-yolo's storage vs the minio SDK's fget_object, and validation throughput, in one run.

Against a local SeaweedFS (tests/s3server.py), side by side:
- 2,000 objects of about 50 KB: `storage.download(prefix)` vs a sequential loop of
  `Minio.fget_object` (both list the prefix first). Goal: at least 3x faster. Here the S3 server
  shares the client's cores, so this is bound by CPU per object on both sides, not by latency
  as on a cluster: the ratio says how lean the client is more than how parallel.
- one 200 MB object: `storage.download` vs `fget_object`. Goal: ratio <= 1.1.
- `check_dataset` on 2,000 images (coco8's real 640 px JPEGs repeated, else synthetic shapes):
  images per second, ultralytics' import excluded.

    .venv/bin/python benchmarks/storage.py                  # the numbers above
    .venv/bin/python benchmarks/storage.py --files 500 --big-mb 50 --images 500   # quicker

Each timing is the best of --repeat runs (3x as many for the short 200 MB one), the two sides
alternating. Every run writes into a folder of its own, on a synced disk, and the outputs are
deleted only at the end: right after thousands of files are deleted, ext4's inode allocator
skips the recently freed inodes one by one (perf shows recently_deleted and find_inode_bit), up
to ~1 ms of system time per new file here, which would land on whichever run came next. For the
same reason, leave a minute between two invocations.
"""

import argparse
import itertools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the SeaweedFS helper the tests use

from s3server import SeaweedS3  # noqa: E402

from kfp_yolo.components import storage  # noqa: E402
from kfp_yolo.components.storage.settings import make_client  # noqa: E402

COCO8 = REPO / "tests" / "data" / "coco8"


def _best(repeat: int, *runs, setup=lambda: None):
    """Best wall time of each callable over repeat rounds, run alternately; setup is untimed."""
    times = [float("inf")] * len(runs)
    for _ in range(repeat):
        for index, run in enumerate(runs):
            setup()
            started = time.perf_counter()
            run()
            times[index] = min(times[index], time.perf_counter() - started)
    return times


def _fget_loop(client, bucket: str, prefix: str, dest: Path) -> None:
    for item in client.list_objects(bucket, prefix=prefix, recursive=True):
        client.fget_object(bucket, item.object_name,
                           str(dest / item.object_name[len(prefix):]))


def _images(root: Path, count: int) -> Path:
    """count images with labels: coco8's JPEGs under new names, or synthetic shapes."""
    if not COCO8.is_dir():
        from kfp_yolo.components.data.synth import SynthSpec, synthesize

        synthesize(root, SynthSpec(images=count, imgsz=320, seed=0))
        return root
    sources = sorted((COCO8 / "images").rglob("*.jpg"))
    for index in range(count):
        image = sources[index % len(sources)]
        split = "val" if index % 5 == 0 else "train"
        stem = f"{index:05d}_{image.stem}"
        for kind, source, suffix in (("images", image, ".jpg"),
                                     ("labels", COCO8 / "labels" / image.parent.name /
                                      f"{image.stem}.txt", ".txt")):
            target = root / kind / split / f"{stem}{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    shutil.copyfile(COCO8 / "data.yaml", root / "data.yaml")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--file-kb", type=int, default=50)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kfp-yolo-bench-") as scratch:
        scratch = Path(scratch)
        with SeaweedS3(scratch / "seaweed") as server:
            settings = storage.S3Settings(endpoint=server.endpoint, access_key=server.access_key,
                                          secret_key=server.secret_key)
            client = make_client(settings, server.endpoint)
            client.make_bucket("bench")

            small = scratch / "small"
            small.mkdir()
            for index in range(args.files):
                (small / f"{index:05d}.bin").write_bytes(os.urandom(args.file_kb * 1000))
            started = time.perf_counter()
            storage.upload(small, "s3://bench/small", settings=settings, progress=False)
            upload_s = time.perf_counter() - started

            outputs = (scratch / f"out{index}" for index in itertools.count())
            out = scratch / "out"

            def fresh() -> None:  # each run fills an empty folder of its own, from a synced disk
                nonlocal out
                out = next(outputs)
                out.mkdir()
                os.sync()

            sdk, ours = _best(
                args.repeat,
                lambda: _fget_loop(client, "bench", "small/", out),
                lambda: storage.download("s3://bench/small", out, settings=settings,
                                         progress=False),
                setup=fresh)
            print(f"{args.files} x {args.file_kb} KB: storage.download {ours:.2f} s, sequential "
                  f"fget_object {sdk:.2f} s, speed-up {sdk / ours:.1f}x (goal >= 3x); "
                  f"upload {upload_s:.2f} s")

            big = scratch / "big.bin"
            with open(big, "wb") as handle:
                for _ in range(args.big_mb):
                    handle.write(os.urandom(1 << 20))
            storage.upload(big, "s3://bench/big.bin", settings=settings, progress=False)

            def quiet() -> None:
                for name in ("big-sdk.bin", "big-ours.bin"):
                    (scratch / name).unlink(missing_ok=True)
                os.sync()

            sdk_big, ours_big = _best(
                max(9, 3 * args.repeat),
                lambda: client.fget_object("bench", "big.bin", str(scratch / "big-sdk.bin")),
                lambda: storage.download("s3://bench/big.bin", scratch / "big-ours.bin",
                                         settings=settings, progress=False),
                setup=quiet)
            print(f"{args.big_mb} MiB object: storage.download {ours_big:.2f} s, fget_object "
                  f"{sdk_big:.2f} s, ratio {ours_big / sdk_big:.2f} (goal <= 1.1)")

        from kfp_yolo.components.runtime import offline_environment

        offline_environment()
        import ultralytics.data.utils  # noqa: F401 - its import (torch) is not validation

        from kfp_yolo.components.data.prepare import check_dataset

        dataset = _images(scratch / "dataset", args.images)
        started = time.perf_counter()
        result = check_dataset(str(dataset))
        elapsed = time.perf_counter() - started
        kind = "coco8 JPEGs (640 px)" if COCO8.is_dir() else "synthetic PNGs (320 px)"
        print(f"check_dataset: {result['stats']['images']} {kind} in {elapsed:.2f} s = "
              f"{result['stats']['images'] / elapsed:.0f} images/s on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
