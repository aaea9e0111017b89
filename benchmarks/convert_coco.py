"""COCO JSON to the YOLO layout: kfp-yolo's converter vs ultralytics' convert_coco, side by side.

A synthetic CVAT-style export (annotations/instances_default.json + images/) of 20,000 images
and 200,000 boxes in 80 categories (ids 1..80, so that convert_coco's `category_id - 1` holds)
is converted twice, each in a process of its own that reports its wall time and peak RSS
(resource.getrusage ru_maxrss), and the RSS it had after its imports:

- kfp-yolo: `formats.convert(root, dest)` - reads the JSON one annotation at a time, checks
  every image exists (a stat) and every box, hard-links the 20,000 images, writes labels and
  data.yaml. It reads no pixels: the JSON gives every image's size, so the image files are
  empty here.
- ultralytics 8.4.190 `convert_coco(..., cls91to80=False)`: json.load of the whole file,
  labels only (no images, no checks).

    .venv/bin/python benchmarks/convert_coco.py                     # 20,000 images, 200,000 boxes
    .venv/bin/python benchmarks/convert_coco.py --images 2000 --boxes 20000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
which, root, dest = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
if which == "kfp-yolo":
    from kfp_yolo.components.data import formats
    def run():
        formats.convert(root, dest, "hard")
else:
    from ultralytics.data.converter import convert_coco
    def run():
        convert_coco(str(root / "annotations"), str(dest), cls91to80=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
run()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
labels = sum(1 for _ in dest.rglob("*.txt"))
print(json.dumps({"seconds": seconds, "rss_after_imports_mib": before, "rss_peak_mib": peak,
                  "label_files": labels}))
"""


def build_export(root: Path, images: int, boxes: int, seed: int = 0) -> int:
    """Writes the export; returns the JSON file's size in bytes. Streams the JSON out, so the
    parent process never holds the document."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    path = root / "annotations" / "instances_default.json"
    with path.open("w") as out:
        out.write('{"licenses": [], "info": {"description": "benchmark"},\n"categories": ')
        json.dump([{"id": i, "name": f"class{i}", "supercategory": ""} for i in range(1, 81)], out)
        out.write(',\n"images": [\n')
        for i in range(1, images + 1):
            name = f"{i:012d}.jpg"
            (root / "images" / name).touch()
            out.write(("," if i > 1 else "") + json.dumps(
                {"id": i, "file_name": name, "width": 640, "height": 480, "license": 0}) + "\n")
        out.write('],\n"annotations": [\n')
        for a in range(1, boxes + 1):
            w, h = rng.uniform(4, 200), rng.uniform(4, 200)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            record = {"id": a, "image_id": rng.randint(1, images),
                      "category_id": rng.randint(1, 80), "segmentation": [],
                      "area": round(w * h, 2), "bbox": [round(v, 2) for v in (x, y, w, h)],
                      "iscrowd": 0, "attributes": {"occluded": False}}
            out.write(("," if a > 1 else "") + json.dumps(record) + "\n")
        out.write("]}\n")
    return path.stat().st_size


def measure(which: str, root: Path, dest: Path) -> dict:
    env = {**os.environ, "YOLO_OFFLINE": "true", "YOLO_AUTOINSTALL": "false",
           "YOLO_CONFIG_DIR": str(dest.parent / "yolo-config"), "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, which, str(root), str(dest)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)
    if done.returncode:
        raise SystemExit(f"{which} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--boxes", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kfp-yolo-bench-coco-") as scratch:
        root = Path(scratch) / "export"
        size = build_export(root, args.images, args.boxes)
        print(f"export: {args.images:,} images (empty files), {args.boxes:,} boxes, 80 "
              f"categories; instances_default.json {size / 2**20:.1f} MiB")
        results = {which: measure(which, root, Path(scratch) / f"out-{which}")
                   for which in ("kfp-yolo", "ultralytics")}
    print(f"{'':34} {'seconds':>8} {'peak RSS MiB':>13} {'after imports':>14} {'growth':>7}")
    for which, r in results.items():
        label = ("kfp-yolo convert (+links, checks)" if which == "kfp-yolo"
                 else "ultralytics convert_coco (labels)")
        print(f"{label:34} {r['seconds']:8.2f} {r['rss_peak_mib']:13.0f} "
              f"{r['rss_after_imports_mib']:14.0f} "
              f"{r['rss_peak_mib'] - r['rss_after_imports_mib']:7.0f}")
    ours, theirs = results["kfp-yolo"], results["ultralytics"]
    for which, r in results.items():
        growth = (r["rss_peak_mib"] - r["rss_after_imports_mib"]) * 2**20
        print(f"{which}: {growth / args.boxes:.0f} bytes of peak RSS per box; "
              f"{args.boxes / r['seconds']:,.0f} boxes/s")
    print(f"label files: kfp-yolo {ours['label_files']:,}, ultralytics "
          f"{theirs['label_files']:,}; time ratio (ultralytics / kfp-yolo) "
          f"{theirs['seconds'] / ours['seconds']:.2f}")


if __name__ == "__main__":
    main()
