"""Per-epoch checkpoints in object storage, and resuming a restarted job from them.

After every epoch rank 0 uploads best.pt (when it improved) and then last.pt to
checkpoint_uri/<run_id>/, each written whole or not at all. A job started again with the same
run id resumes from that last.pt at the next epoch.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp_yolo.components import storage
from kfp_yolo.components.errors import JobFailed
from kfp_yolo.components.spec import TrainSpec
from kfp_yolo.components.training.dist import DistEnv, barrier, from_main

__all__ = ["Checkpoint", "fetch_checkpoint", "join_uri", "upload_checkpoint",
           "write_results_csv"]


@dataclass(frozen=True)
class Checkpoint:
    """A run's checkpoint, copied to this node."""

    last: Path
    best: Path | None
    epoch: int
    """Last completed epoch, 0-based (ultralytics' numbering)."""
    results: dict[str, list]
    """The results table up to that epoch, column by column."""


def join_uri(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *names])


def fetch_checkpoint(spec: TrainSpec, env: DistEnv, scratch: Path) -> Checkpoint | None:
    """The run's checkpoint when one exists: rank 0 decides, local rank 0 of every node copies."""
    if not spec.checkpoint_uri:
        return None
    folder_uri = join_uri(spec.checkpoint_uri, spec.run_id)
    found = from_main(env.is_main and storage.exists(join_uri(folder_uri, "last.pt")))
    if not found:
        return None
    folder = scratch / "resume"
    if env.local_rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        storage.download(join_uri(folder_uri, "last.pt"), folder / "last.pt")
        if storage.exists(join_uri(folder_uri, "best.pt")):
            storage.download(join_uri(folder_uri, "best.pt"), folder / "best.pt")
    barrier()
    from ultralytics.utils.patches import torch_load

    try:
        ckpt = torch_load(folder / "last.pt", map_location="cpu", weights_only=False)
        epoch = int(ckpt["epoch"])
    except Exception as exc:  # torch raises many types for a damaged file
        raise JobFailed(f"{join_uri(folder_uri, 'last.pt')} cannot be read ({exc}); delete it to "
                        "start the run over, or use another run_id.") from exc
    best = folder / "best.pt"
    return Checkpoint(last=folder / "last.pt", best=best if best.exists() else None,
                       epoch=epoch, results=ckpt.get("train_results") or {})


def write_results_csv(results: dict[str, list], path: Path) -> None:
    """The results table in ultralytics' own format (save_metrics writes %.6g)."""
    if not results:
        return
    keys = list(results)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(keys)
        for row in zip(*(results[k] for k in keys), strict=True):
            writer.writerow([f"{v:.6g}" if isinstance(v, int | float) else v for v in row])


def upload_checkpoint(trainer: Any, spec: TrainSpec) -> None:
    """on_model_save (rank 0): best.pt first, then last.pt, so last.pt never points past best."""
    folder_uri = join_uri(spec.checkpoint_uri, spec.run_id)
    if trainer.best.exists() and trainer.best_fitness == trainer.fitness:
        storage.upload(trainer.best, join_uri(folder_uri, "best.pt"))
    storage.upload(trainer.last, join_uri(folder_uri, "last.pt"))
