"""What torchrun starts in every training process: ultralytics' DetectionTrainer, made to work
under an external launcher (one process per device, several nodes), with AMP and checkpoints.

One process (CPU or one GPU):
    torchrun --standalone --nproc-per-node=1 -m components.worker --spec "$(cat spec.json)"
N processes on one node:
    torchrun --standalone --nproc-per-node=N -m components.worker --spec ...
N nodes x M processes (run on every node; a PyTorchJob sets these from PET_* variables):
    torchrun --nnodes=N --nproc-per-node=M --node-rank=$NODE_RANK \
        --master-addr=$MASTER_ADDR --master-port=$MASTER_PORT -m components.worker --spec ...

The environment is read once, in `DistEnv.from_environ`; `import ultralytics` happens after it
(ultralytics reads RANK at import). Only global rank 0 writes weights and uploads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from components import storage
from components.errors import UserError
from components.runtime import offline_environment
from components.train import TrainSpec

__all__ = ["DistEnv", "main", "run_worker"]


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job, from torchrun's variables."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> DistEnv:
        environ = dict(os.environ if environ is None else environ)

        def read(name: str, default: int) -> int:
            raw = environ.get(name)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"{name} must be an integer, got: {raw!r}") from None

        world = read("WORLD_SIZE", 1)
        env = cls(rank=read("RANK", 0), local_rank=read("LOCAL_RANK", 0), world_size=world,
                  local_world_size=read("LOCAL_WORLD_SIZE", world))
        if not 0 <= env.rank < env.world_size:
            raise ValueError(f"RANK must be in [0, WORLD_SIZE), got: {env.rank} of "
                             f"{env.world_size}")
        return env


def _device_type(spec: TrainSpec) -> str:
    import torch

    if spec.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda was asked for but this machine has no CUDA device; "
                        "use device=auto or cpu.")
    return spec.device


def _init_distributed(env: DistEnv, device_type: str, timeout_s: int) -> None:
    """The only caller of init_process_group; a rendezvous that cannot finish fails in timeout_s."""
    import torch
    import torch.distributed as dist

    if device_type == "cuda":
        torch.cuda.set_device(env.local_rank)
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _fetch_dataset(spec: TrainSpec, env: DistEnv, scratch: Path) -> Path:
    """The dataset folder on this node: downloaded once per node by local rank 0."""
    if not storage.is_remote(spec.dataset_uri):
        folder = storage.local_path(spec.dataset_uri)
    else:
        folder = scratch / "dataset"
        if env.local_rank == 0 and not (folder / "data.yaml").exists():
            storage.download(spec.dataset_uri, folder)
        _barrier()
    data_yaml = folder / "data.yaml"
    if not data_yaml.exists():
        raise UserError(f"{spec.dataset_uri!r} has no data.yaml; give the prepared Dataset "
                        "artifact's folder.")
    return _localised_data_yaml(data_yaml, folder, scratch, env)


def _localised_data_yaml(data_yaml: Path, folder: Path, scratch: Path, env: DistEnv) -> Path:
    """data.yaml with `path:` pointing at where the dataset lies on this node."""
    import yaml

    data = yaml.safe_load(data_yaml.read_text())
    if Path(str(data.get("path", ""))) == folder.resolve():
        return data_yaml
    data["path"] = str(folder.resolve())
    local = scratch / f"data.rank{env.rank}.yaml"
    local.write_text(yaml.safe_dump(data, sort_keys=False))
    return local


def _amp_setting(spec: TrainSpec, device_type: str) -> Any:
    if device_type != "cuda" or spec.precision == "fp32":
        return False
    return "bf16" if spec.precision == "bf16" else True


def _make_trainer(spec: TrainSpec, env: DistEnv, device_type: str, data_yaml: Path,
                  project: Path):
    """Our DetectionTrainer subclass: world size, rank and device come from torchrun."""
    import torch
    from ultralytics.engine import trainer as trainer_module
    from ultralytics.models.yolo.detect import DetectionTrainer

    if device_type == "cuda":
        # check_amp() downloads a model to compare outputs; AMP's dtype policy is torch's own.
        trainer_module.check_amp = lambda model: True

    class DistributedDetectionTrainer(DetectionTrainer):
        """DetectionTrainer whose process group, rank and device come from the launcher."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.world_size = env.world_size
            self.ddp = False  # never spawn: torchrun already did
            if device_type == "cuda":
                self.device = torch.device("cuda", env.local_rank)

        def _setup_ddp(self):
            # The process group exists already (components.worker._init_distributed).
            pass

        def _setup_train(self):
            if env.world_size > 1 and device_type == "cpu":
                # DDP refuses device_ids for CPU modules; ultralytics passes [device.index].
                original = trainer_module.nn.parallel.DistributedDataParallel

                def cpu_ddp(module, device_ids=None, **kwargs):
                    return original(module, **kwargs)

                trainer_module.nn.parallel.DistributedDataParallel = cpu_ddp
                try:
                    return super()._setup_train()
                finally:
                    trainer_module.nn.parallel.DistributedDataParallel = original
            return super()._setup_train()

    device = str(env.local_rank) if device_type == "cuda" else "cpu"
    overrides = {
        "model": spec.model, "data": str(data_yaml), "imgsz": spec.imgsz, "epochs": spec.epochs,
        "batch": spec.batch, "device": device, "workers": spec.workers, "seed": spec.seed,
        "optimizer": spec.optimizer, "lr0": spec.lr0, "amp": _amp_setting(spec, device_type),
        "project": str(project), "name": "train", "exist_ok": True, "plots": env.is_main,
        "verbose": env.is_main,
    }
    return DistributedDetectionTrainer(overrides=overrides)


def run_worker(spec: TrainSpec, env: DistEnv, scratch: Path | None = None) -> Path | None:
    """Trains per spec in this process; returns best.pt on rank 0 (None on other ranks)."""
    offline_environment()
    device_type = _device_type(spec)
    if spec.batch % env.world_size:
        raise UserError(f"batch {spec.batch} is not divisible by the world size "
                        f"{env.world_size}; use a multiple of {env.world_size}.")
    scratch = Path(scratch or tempfile.mkdtemp(prefix=f"kfp-yolo-{spec.run_id}-"))
    scratch.mkdir(parents=True, exist_ok=True)
    if env.world_size > 1:
        _init_distributed(env, device_type, spec.init_timeout_s)
    try:
        data_yaml = _fetch_dataset(spec, env, scratch)
        trainer = _make_trainer(spec, env, device_type, data_yaml, scratch / "runs")
        trainer.train()
        if not env.is_main:
            return None
        outputs = scratch / "outputs"
        outputs.mkdir(exist_ok=True)
        for name in ("best.pt", "last.pt"):
            shutil.copy2(trainer.wdir / name, outputs / name)
        if trainer.csv.exists():
            shutil.copy2(trainer.csv, outputs / "results.csv")
        storage.upload(outputs, spec.output_uri)
        return outputs / "best.pt"
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.worker")
    parser.add_argument("--spec", required=True, help="TrainSpec as JSON, or @FILE")
    parser.add_argument("--scratch", default=None, help="node-local work folder")
    args = parser.parse_args(argv)
    text = Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec
    spec = TrainSpec.from_json(text)
    env = DistEnv.from_environ()
    run_worker(spec, env, Path(args.scratch) if args.scratch else None)
    return 0


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    sys.exit(record(main)())
