"""Our DetectionTrainer subclass: world size, rank and device come from torchrun, not ultralytics.

Also the per-rank progress record (batches, images, seconds and peak memory per epoch).
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

__all__ = ["Progress", "make_trainer"]


class Progress:
    """Per-rank record of the training loop (batches, images, seconds per epoch)."""

    def __init__(self, path: Path, env: DistEnv, device_type: str):
        self.path = path
        self.device_type = device_type
        self.record: dict[str, Any] = {"rank": env.rank, "world_size": env.world_size,
                                       "device": device_type, "epochs": []}
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
        entry = {"epoch": trainer.epoch + 1, "batches": self.batches}
        if self.device_type == "cuda":
            torch.cuda.synchronize()  # queued kernels belong to this epoch's time
            entry["max_memory_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
            entry["max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        entry["seconds"] = time.perf_counter() - self.started
        # The sampler holds this rank's share of the images (all of them in one process).
        entry["images"] = min(len(trainer.train_loader.sampler),
                              self.batches * trainer.train_loader.batch_size)
        self.record["epochs"].append(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self.record, indent=1))


def _amp_setting(spec: TrainSpec, device_type: str) -> bool | str:
    if device_type != "cuda" or spec.precision == "fp32":
        return False
    return "bf16" if spec.precision == "bf16" else True


def make_trainer(spec: TrainSpec, env: DistEnv, device_type: str, data_yaml: Path,
                  scratch: Path, checkpoint: Checkpoint | None) -> Any:
    """Our DetectionTrainer subclass: world size, rank and device come from torchrun."""
    import torch
    from ultralytics.engine import trainer as trainer_module
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils.torch_utils import strip_optimizer

    if device_type == "cuda":
        # check_amp() downloads a model to compare outputs; the AMP policy is the spec's.
        trainer_module.check_amp = _amp_ok

    class DistributedDetectionTrainer(DetectionTrainer):
        """DetectionTrainer whose process group, rank and device come from the launcher."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            # Ultralytics counts the devices in `device` and would spawn its own DDP workers.
            self.world_size = env.world_size
            self.ddp = False
            if device_type == "cuda":
                self.device = torch.device("cuda", env.local_rank)

        def _setup_ddp(self) -> None:
            """The process group exists already (training.dist.init_distributed)."""

        def _setup_train(self) -> Any:
            if device_type != "cpu" or env.world_size == 1:
                return super()._setup_train()
            # Ultralytics wraps with device_ids=[device.index], [None] on CPU, which DDP refuses;
            # it looks the class up on torch.nn.parallel, so a CPU-safe one stands in meanwhile.
            original = torch.nn.parallel.DistributedDataParallel
            torch.nn.parallel.DistributedDataParallel = _cpu_ddp_class()
            try:
                return super()._setup_train()
            finally:
                torch.nn.parallel.DistributedDataParallel = original

        def final_eval(self) -> None:
            # The evaluate step validates best.pt; validating it here too would do that work
            # twice (and ultralytics' validator gathers over all ranks, which hold no best.pt
            # on other nodes, and picks a CUDA device even on CPU). Only the optimizer strip
            # is kept, as upstream does it.
            if env.is_main:
                if self.last.exists():
                    strip_optimizer(self.last)
                if self.best.exists():
                    strip_optimizer(self.best)
            return None

    main = env.is_main
    overrides = {
        "model": spec.model, "data": str(data_yaml), "imgsz": spec.imgsz, "epochs": spec.epochs,
        "batch": spec.batch, "device": str(env.local_rank) if device_type == "cuda" else "cpu",
        "workers": spec.workers, "seed": spec.seed, "optimizer": spec.optimizer,
        "lr0": spec.lr0, "amp": _amp_setting(spec, device_type), "exist_ok": True,
        # Separate folders: what other ranks might write never mixes with rank 0's weights.
        "save_dir": str(scratch / "runs" / ("train" if main else f"rank{env.rank}")),
        "plots": main, "verbose": main,
    }
    if checkpoint is not None:
        # Ultralytics restores args (data, save_dir, ...) from the checkpoint; data and
        # save_dir given here win, so a restarted pod's own paths are used.
        overrides["resume"] = str(checkpoint.last)
    trainer = DistributedDetectionTrainer(overrides=overrides)
    if checkpoint is not None and main:
        # best.pt and results.csv of the earlier epochs, as the interrupted run left them.
        if checkpoint.best is not None:
            shutil.copy2(checkpoint.best, trainer.best)
        write_results_csv(checkpoint.results, trainer.csv)
    return trainer


def _amp_ok(model: Any) -> bool:
    return True


def _cpu_ddp_class() -> type:
    from torch.nn.parallel import DistributedDataParallel

    class CpuDistributedDataParallel(DistributedDataParallel):
        """DDP that ignores device_ids=[None], which ultralytics passes for CPU modules."""

        def __init__(self, module: Any, device_ids: list | None = None, **kwargs: Any):
            super().__init__(module, device_ids=None if device_ids == [None] else device_ids,
                             **kwargs)

    return CpuDistributedDataParallel
