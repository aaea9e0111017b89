"""What torchrun starts in every training process: ultralytics' DetectionTrainer, made to work
under an external launcher (one process per device, several nodes), with AMP and checkpoints.

One process (CPU or one GPU):
    torchrun --standalone --nproc-per-node=1 -m components.worker --spec @spec.json
N processes on one node:
    torchrun --standalone --nproc-per-node=N -m components.worker --spec @spec.json
N nodes x M processes (run on every node; a PyTorchJob sets these from PET_* variables):
    torchrun --nnodes=N --nproc-per-node=M --node-rank=$NODE_RANK \
        --master-addr=$MASTER_ADDR --master-port=$MASTER_PORT --rdzv-conf=timeout=300 \
        -m components.worker --spec @spec.json --scratch /scratch

The environment is read once, in `DistEnv.from_environ`; `import ultralytics` happens after it
(ultralytics reads RANK at import). Only global rank 0 writes weights, checkpoints and outputs;
every rank records its own throughput in SCRATCH/progress/rank<R>.json.

Checkpoints: after every epoch rank 0 uploads best.pt (when it improved) and then last.pt to
checkpoint_uri/<run_id>/, each written whole or not at all. A job started again with the same
run id resumes from that last.pt at the next epoch.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from components import storage
from components.errors import JobFailed, UserError
from components.runtime import offline_environment
from components.train import TrainSpec

__all__ = ["COLLECTIVE_TIMEOUT_S", "DistEnv", "main", "run_worker"]

log = logging.getLogger("kfp_yolo.worker")

COLLECTIVE_TIMEOUT_S = 1800
"""How long a collective may wait once the group has formed: other ranks wait in one while rank
0 validates, saves and uploads a checkpoint, or while a node downloads the dataset."""


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job, from torchrun's variables."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    master_addr: str = "127.0.0.1"
    master_port: str = ""

    @property
    def is_main(self) -> bool:
        """Global rank 0: the only process that writes weights, checkpoints and outputs."""
        return self.rank == 0

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> DistEnv:
        """Reads RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT.

        Raises:
            ValueError: a variable is not an integer, out of range, or LOCAL_RANK is missing in a
                job of several processes (the worker was not started by torchrun).
        """
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
        if world < 1:
            raise ValueError(f"WORLD_SIZE must be at least 1, got: {world}")
        if world > 1 and "LOCAL_RANK" not in environ:
            # A PyTorchJob sets RANK (the node rank) and WORLD_SIZE in every pod; torchrun
            # replaces them for its workers and adds LOCAL_RANK.
            raise ValueError(f"LOCAL_RANK is not set while WORLD_SIZE is {world}; start the "
                             "worker with torchrun (see components/worker.py).")
        env = cls(rank=read("RANK", 0), local_rank=read("LOCAL_RANK", 0), world_size=world,
                  local_world_size=read("LOCAL_WORLD_SIZE", 1 if world == 1 else world),
                  master_addr=environ.get("MASTER_ADDR", "127.0.0.1"),
                  master_port=environ.get("MASTER_PORT", ""))
        if not 0 <= env.rank < env.world_size:
            raise ValueError(f"RANK must be in [0, WORLD_SIZE), got: {env.rank} of "
                             f"{env.world_size}")
        if not 1 <= env.local_world_size <= env.world_size:
            raise ValueError(f"LOCAL_WORLD_SIZE must be in [1, WORLD_SIZE], got: "
                             f"{env.local_world_size} of {env.world_size}")
        if not 0 <= env.local_rank < env.local_world_size:
            raise ValueError(f"LOCAL_RANK must be in [0, LOCAL_WORLD_SIZE), got: "
                             f"{env.local_rank} of {env.local_world_size}")
        return env


# ------------------------------------------------------------------------------ process group


def _device_type(spec: TrainSpec) -> str:
    import torch

    if spec.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda was asked for but this machine has no CUDA device; "
                        "use device=auto or cpu.")
    if spec.device not in ("cpu", "cuda"):
        raise UserError(f"device {spec.device!r} is not one of auto, cpu, cuda.")
    return spec.device


def _check_gpu(env: DistEnv) -> None:
    import torch

    if env.local_rank >= torch.cuda.device_count():
        raise UserError(f"local rank {env.local_rank} has no GPU: this node has "
                        f"{torch.cuda.device_count()}; set procs_per_node to the GPUs per node.")


def _init_distributed(env: DistEnv, device_type: str, timeout_s: int) -> None:
    """The only caller of init_process_group; a group that cannot form fails within timeout_s."""
    import torch
    import torch.distributed as dist

    if device_type == "cuda":
        torch.cuda.set_device(env.local_rank)
    cuda = device_type == "cuda"
    try:
        # device_id binds NCCL to this GPU and connects it now, not at the first collective.
        dist.init_process_group(backend="nccl" if cuda else "gloo",
                                timeout=timedelta(seconds=timeout_s),
                                device_id=torch.device("cuda", env.local_rank) if cuda else None)
        dist.barrier()  # every rank is there, under the same bound
    except (RuntimeError, dist.DistError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JobFailed(
            f"rank {env.rank} of {env.world_size}: the process group at {env.master_addr}:"
            f"{env.master_port} did not form within {timeout_s} s ({detail}); check that every "
            "node was started and reaches MASTER_ADDR, or raise init_timeout_s.") from exc
    dist.set_timeout(timedelta(seconds=COLLECTIVE_TIMEOUT_S))


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _barrier() -> None:
    if _distributed():
        import torch.distributed as dist

        dist.barrier()


def _from_main(value: Any) -> Any:
    """Rank 0's value, on every rank, so that all ranks take the same decision."""
    if not _distributed():
        return value
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


# ------------------------------------------------------------------------------------ dataset


def _fetch_dataset(spec: TrainSpec, env: DistEnv, scratch: Path) -> Path:
    """This node's data.yaml, with the label caches built by exactly one writer per folder.

    A remote dataset is downloaded once per node by local rank 0 into the node's scratch folder;
    a local one is shared by every process (and node), so global rank 0 builds its caches.
    """
    remote = storage.is_remote(spec.dataset_uri)
    if remote:
        folder = scratch / "dataset"
        if env.local_rank == 0 and not folder.exists():
            # Downloaded under another name, so a restarted container never sees half of it.
            partial = scratch / "dataset.partial"
            shutil.rmtree(partial, ignore_errors=True)
            storage.download(spec.dataset_uri, partial)
            partial.rename(folder)
        _barrier()
    else:
        folder = storage.local_path(spec.dataset_uri).resolve()
    if not (folder / "data.yaml").exists():
        raise UserError(f"{spec.dataset_uri!r} has no data.yaml; give the prepared Dataset "
                        "artifact's folder.")
    data_yaml = _localised_data_yaml(folder / "data.yaml", folder, scratch, env)
    if env.world_size > 1:
        # Ultralytics writes a missing .cache under torch_distributed_zero_first(LOCAL_RANK):
        # one writer per node, so nodes sharing a folder would write the same file at once.
        if (env.local_rank == 0) if remote else env.is_main:
            _build_label_caches(data_yaml, spec.imgsz)
        _barrier()
    return data_yaml


def _localised_data_yaml(data_yaml: Path, folder: Path, scratch: Path, env: DistEnv) -> Path:
    """data.yaml with `path:` pointing at where the dataset lies on this node."""
    import yaml

    data = yaml.safe_load(data_yaml.read_text())
    if Path(str(data.get("path", ""))) == folder:
        return data_yaml
    data["path"] = str(folder)
    local = scratch / f"data.rank{env.rank}.yaml"
    local.write_text(yaml.safe_dump(data, sort_keys=False))
    return local


def _build_label_caches(data_yaml: Path, imgsz: int) -> None:
    """Builds (or checks) the train and val label caches, as the trainer would."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml))
    cfg = get_cfg(overrides={"imgsz": imgsz})
    for split in ("train", "val"):
        build_yolo_dataset(cfg, data[split], 1, data, mode="val")


# -------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class _Checkpoint:
    """A run's checkpoint, copied to this node."""

    last: Path
    best: Path | None
    epoch: int
    """Last completed epoch, 0-based (ultralytics' numbering)."""
    results: dict[str, list]
    """The results table up to that epoch, column by column."""


def _uri(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *names])


def _fetch_checkpoint(spec: TrainSpec, env: DistEnv, scratch: Path) -> _Checkpoint | None:
    """The run's checkpoint when one exists: rank 0 decides, local rank 0 of every node copies."""
    if not spec.checkpoint_uri:
        return None
    folder_uri = _uri(spec.checkpoint_uri, spec.run_id)
    found = _from_main(env.is_main and storage.exists(_uri(folder_uri, "last.pt")))
    if not found:
        return None
    folder = scratch / "resume"
    if env.local_rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        storage.download(_uri(folder_uri, "last.pt"), folder / "last.pt")
        if storage.exists(_uri(folder_uri, "best.pt")):
            storage.download(_uri(folder_uri, "best.pt"), folder / "best.pt")
    _barrier()
    from ultralytics.utils.patches import torch_load

    try:
        ckpt = torch_load(folder / "last.pt", map_location="cpu", weights_only=False)
        epoch = int(ckpt["epoch"])
    except Exception as exc:  # torch raises many types for a damaged file
        raise JobFailed(f"{_uri(folder_uri, 'last.pt')} cannot be read ({exc}); delete it to "
                        "start the run over, or use another run_id.") from exc
    best = folder / "best.pt"
    return _Checkpoint(last=folder / "last.pt", best=best if best.exists() else None,
                       epoch=epoch, results=ckpt.get("train_results") or {})


def _write_results_csv(results: dict[str, list], path: Path) -> None:
    """The results table in ultralytics' own format (save_metrics writes %.6g)."""
    if not results:
        return
    keys = list(results)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(keys)
        for row in zip(*(results[k] for k in keys), strict=True):
            writer.writerow([f"{v:.6g}" if isinstance(v, int | float) else v for v in row])


def _upload_checkpoint(trainer: Any, spec: TrainSpec) -> None:
    """on_model_save (rank 0): best.pt first, then last.pt, so last.pt never points past best."""
    folder_uri = _uri(spec.checkpoint_uri, spec.run_id)
    if trainer.best.exists() and trainer.best_fitness == trainer.fitness:
        storage.upload(trainer.best, _uri(folder_uri, "best.pt"))
    storage.upload(trainer.last, _uri(folder_uri, "last.pt"))


# ---------------------------------------------------------------------------------- progress


class _Progress:
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
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.record, indent=1))
        os.replace(partial, self.path)


# ----------------------------------------------------------------------------------- trainer


def _amp_setting(spec: TrainSpec, device_type: str) -> bool | str:
    if device_type != "cuda" or spec.precision == "fp32":
        return False
    return "bf16" if spec.precision == "bf16" else True


def _make_trainer(spec: TrainSpec, env: DistEnv, device_type: str, data_yaml: Path,
                  scratch: Path, checkpoint: _Checkpoint | None) -> Any:
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
            """The process group exists already (components.worker._init_distributed)."""

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
        _write_results_csv(checkpoint.results, trainer.csv)
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


# ---------------------------------------------------------------------------------- the run


def _publish(files: dict[str, Path], output_uri: str, scratch: Path) -> Path:
    """Uploads best.pt, last.pt, results.csv to output_uri; returns the local best.pt."""
    outputs = scratch / "outputs"
    shutil.rmtree(outputs, ignore_errors=True)
    outputs.mkdir(parents=True)
    for name, source in files.items():
        if source.exists():
            shutil.copy2(source, outputs / name)
    storage.upload(outputs, output_uri)
    return outputs / "best.pt"


def _finish_from_checkpoint(checkpoint: _Checkpoint, spec: TrainSpec, scratch: Path) -> Path:
    """The run had trained every epoch before it stopped: publish what its checkpoint holds."""
    from ultralytics.utils.torch_utils import strip_optimizer

    final = scratch / "final"
    final.mkdir(parents=True, exist_ok=True)
    strip_optimizer(checkpoint.last, str(final / "last.pt"))
    strip_optimizer(checkpoint.best or checkpoint.last, str(final / "best.pt"))
    _write_results_csv(checkpoint.results, final / "results.csv")
    return _publish({name: final / name for name in ("best.pt", "last.pt", "results.csv")},
                    spec.output_uri, scratch)


def run_worker(spec: TrainSpec, env: DistEnv, scratch: Path | None = None) -> Path | None:
    """Trains per spec in this process; returns best.pt on rank 0 (None on other ranks).

    Raises:
        UserError: the spec cannot work here (batch not divisible, no data.yaml, no CUDA).
        JobFailed: the process group did not form within spec.init_timeout_s, or the run's
            checkpoint cannot be read.
    """
    if spec.batch % env.world_size:
        raise UserError(f"batch {spec.batch} is not divisible by the world size "
                        f"{env.world_size}; use a multiple of {env.world_size}.")
    scratch = Path(scratch or tempfile.mkdtemp(prefix=f"kfp-yolo-{spec.run_id}-"))
    scratch.mkdir(parents=True, exist_ok=True)
    # One settings folder per node: nodes sharing a machine must not write one settings file.
    offline_environment(scratch / "ultralytics")
    device_type = _device_type(spec)
    if device_type == "cuda":
        _check_gpu(env)
    if env.world_size > 1:
        _init_distributed(env, device_type, spec.init_timeout_s)
    try:
        # Importing ultralytics runs a barrier (its settings file is written under
        # torch_distributed_zero_first) once the group exists: every rank imports it here.
        import ultralytics  # noqa: F401

        data_yaml = _fetch_dataset(spec, env, scratch)
        checkpoint = _fetch_checkpoint(spec, env, scratch)
        if checkpoint is not None and checkpoint.epoch + 1 >= spec.epochs:
            log.info("run %s finished all %d epochs before it stopped; publishing its "
                     "checkpoint", spec.run_id, spec.epochs)
            return _finish_from_checkpoint(checkpoint, spec, scratch) if env.is_main else None
        if checkpoint is not None:
            log.info("run %s resumes after epoch %d of %d", spec.run_id, checkpoint.epoch + 1,
                     spec.epochs)
        trainer = _make_trainer(spec, env, device_type, data_yaml, scratch, checkpoint)
        progress = _Progress(scratch / "progress" / f"rank{env.rank}.json", env, device_type)
        trainer.add_callback("on_train_epoch_start", progress.epoch_start)
        trainer.add_callback("on_train_batch_end", progress.batch_end)
        trainer.add_callback("on_train_epoch_end", progress.epoch_end)
        if env.is_main and spec.checkpoint_uri:
            trainer.add_callback("on_model_save", lambda t: _upload_checkpoint(t, spec))
        trainer.train()
        if not env.is_main:
            return None
        return _publish({"best.pt": trainer.best, "last.pt": trainer.last,
                         "results.csv": trainer.csv}, spec.output_uri, scratch)
    finally:
        if _distributed():
            import torch.distributed as dist

            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """`python -m components.worker --spec JSON|@FILE [--scratch DIR]`, under torchrun."""
    parser = argparse.ArgumentParser(prog="python -m components.worker")
    parser.add_argument("--spec", required=True, help="TrainSpec as JSON, or @FILE")
    parser.add_argument("--scratch", default=None, help="node-local work folder")
    args = parser.parse_args(argv)
    text = Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec
    spec = TrainSpec.from_json(text)
    env = DistEnv.from_environ()
    logging.basicConfig(level=logging.INFO, format=f"[rank{env.rank}] %(message)s")
    run_worker(spec, env, Path(args.scratch) if args.scratch else None)
    return 0


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    sys.exit(record(main)())
