"""The trainer of one training process: ultralytics' DetectionTrainer under torchrun
(ultralytics_patches.launcher_trainer_class), set up from the spec, and the per-rank progress
record (batches, images, seconds, images/s and peak memory per epoch; workers and cache).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from kfp_yolo.components.atomic import write_atomic
from kfp_yolo.components.spec import TrainSpec
from kfp_yolo.components.training.checkpoints import Checkpoint, write_results_csv
from kfp_yolo.components.training.dist import DistEnv
from kfp_yolo.components.training.inputs import InputPipeline

__all__ = ["Progress", "job_summary", "make_trainer"]


class Progress:
    """Per-rank record of the training loop (batches, images, seconds per epoch)."""

    def __init__(self, path: Path, env: DistEnv, device_type: str,
                 pipeline: InputPipeline | None = None):
        self.path = path
        self.device_type = device_type
        self.record: dict[str, Any] = {"rank": env.rank, "world_size": env.world_size,
                                       "local_world_size": env.local_world_size,
                                       "device": device_type, "epochs": []}
        if device_type == "cuda":  # the throughput history's key, named as GFD names it
            import torch

            self.record["gpu_product"] = torch.cuda.get_device_name().replace(" ", "-")
        if pipeline is not None:
            self.record["input_pipeline"] = {"workers": pipeline.workers, "cache": pipeline.cache,
                                             "reason": pipeline.reason}
        self.started = 0.0
        self.batches = 0

    def epoch_start(self, trainer: Any) -> None:
        self.started, self.batches = time.perf_counter(), 0

    def batch_end(self, trainer: Any) -> None:
        self.batches += 1

    def epoch_end(self, trainer: Any) -> None:
        import torch
        from torch.nn.parallel import DistributedDataParallel

        self.record["ddp"] = isinstance(trainer.model, DistributedDataParallel)
        loader = trainer.train_loader
        # What ultralytics really used: it caps the workers (CPUs per GPU, batches per epoch;
        # none on CPU) and drops a cache that its own memory or disk check refuses.
        self.record["batch_per_process"] = loader.batch_size
        self.record["workers"] = loader.num_workers
        self.record["cache"] = getattr(loader.dataset, "cache", None) or "none"
        entry = {"epoch": trainer.epoch + 1, "batches": self.batches}
        if self.device_type == "cuda":
            torch.cuda.synchronize()  # queued kernels belong to this epoch's time
            entry["max_memory_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
            entry["max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        entry["seconds"] = time.perf_counter() - self.started
        # The sampler holds this rank's share of the images (all of them in one process).
        entry["images"] = min(len(loader.sampler), self.batches * loader.batch_size)
        entry["images_per_s"] = entry["images"] / entry["seconds"] if entry["seconds"] else 0.0
        self.record["epochs"].append(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self.record, indent=1))


def job_summary(record: dict[str, Any], spec: TrainSpec) -> dict[str, Any]:
    """The job's training shape and speed from rank 0's progress record, for the run summary.

    Every rank trains an equal share of each epoch, so the job's images/s is rank 0's times
    the world size; the first epoch (dataloader start, caches, cuDNN tuning) is left out when
    there are later ones.
    """
    epochs = record.get("epochs", [])
    timed = epochs[1:] or epochs
    seconds = sum(e["seconds"] for e in timed)
    world = record.get("world_size", spec.world_size)
    per_rank = sum(e["images"] for e in timed) / seconds if seconds else 0.0
    return {"nodes": spec.nodes, "procs_per_node": spec.procs_per_node, "world_size": world,
            "device": record.get("device", ""), "gpu_product": record.get("gpu_product", "cpu"),
            "batch": spec.batch,
            "batch_per_gpu": record.get("batch_per_process", spec.batch // world),
            "workers": record.get("workers"), "cache": record.get("cache"),
            # kfp-yolo's choice, which input_reason explains; ultralytics may lower it
            "workers_planned": record.get("input_pipeline", {}).get("workers"),
            "input_reason": record.get("input_pipeline", {}).get("reason", ""),
            "epochs_timed": len(timed), "images_per_s": round(per_rank * world, 1),
            **({"fine_tune": record["fine_tune"]} if "fine_tune" in record else {}),
            # per epoch, for the training report: the job's images/s, rank 0's peak memory
            "epochs": [{"epoch": e["epoch"], "seconds": round(e["seconds"], 3),
                        "images_per_s": round(e["images_per_s"] * world, 2),
                        **({"gpu_memory_mib": round(e["max_memory_reserved_mib"], 1)}
                           if "max_memory_reserved_mib" in e else {})} for e in epochs]}


def _amp_setting(spec: TrainSpec, device_type: str) -> bool | str:
    if device_type != "cuda" or spec.precision == "fp32":
        return False
    return "bf16" if spec.precision == "bf16" else True


def check_checkpoint_task(weights: str) -> None:
    """Refuses a .pt checkpoint of another task (a classifier, a segmenter) in one sentence: its
    name need not say so, and ultralytics' DetectionTrainer would end in an AttributeError."""
    from ultralytics.nn.tasks import load_checkpoint

    from kfp_yolo.components.errors import UserError

    if not Path(weights).is_file():
        return  # ultralytics says what is missing
    model, _ = load_checkpoint(weights)
    kind = type(model).__name__  # segment, pose, OBB, World and RT-DETR models subclass it
    if kind != "DetectionModel":
        raise UserError(f"model {weights!r} is a {kind.removesuffix('Model') or kind} checkpoint, "
                        "and kfp-yolo trains YOLO object detectors; give a detection checkpoint "
                        "or a model YAML such as yolo11n.yaml.")


def make_trainer(spec: TrainSpec, env: DistEnv, device_type: str, data_yaml: Path,
                 scratch: Path, checkpoint: Checkpoint | None,
                 pipeline: InputPipeline) -> Any:
    """ultralytics' DetectionTrainer for this process: rank, world size and device from torchrun."""
    from kfp_yolo.components.ultralytics_patches import launcher_trainer_class, mlflow_callback_off

    if spec.model.endswith(".pt") and checkpoint is None:
        check_checkpoint_task(spec.model)
    main = env.is_main
    overrides = {
        "model": spec.model, "data": str(data_yaml), "imgsz": spec.imgsz, "epochs": spec.epochs,
        "batch": spec.batch, "device": str(env.local_rank) if device_type == "cuda" else "cpu",
        "workers": pipeline.workers, "cache": pipeline.ultralytics_cache, "seed": spec.seed,
        "optimizer": spec.optimizer, "lr0": spec.lr0, "amp": _amp_setting(spec, device_type),
        "exist_ok": True,
        # Separate folders: what other ranks might write never mixes with rank 0's weights.
        "save_dir": str(scratch / "runs" / ("train" if main else f"rank{env.rank}")),
        "plots": main, "verbose": main,
        **spec.hyp,  # a search's values (components/hpo/space.py checked their names)
    }
    if checkpoint is not None:
        # Ultralytics restores args (data, save_dir, ...) from the checkpoint; data and
        # save_dir given here win, so a restarted pod's own paths are used.
        overrides["resume"] = str(checkpoint.last)
    with mlflow_callback_off(enabled=main):  # kfp-yolo logs to MLflow itself (reporting.py)
        trainer = launcher_trainer_class()(overrides, world_size=env.world_size,
                                           local_rank=env.local_rank, is_main=main)
    if checkpoint is not None and main:
        # best.pt and results.csv of the earlier epochs, as the interrupted run left them.
        if checkpoint.best is not None:
            shutil.copy2(checkpoint.best, trainer.best)
        write_results_csv(checkpoint.results, trainer.csv)
    return trainer
