"""The process group: this process's place in the job, read once from torchrun's variables.

`DistEnv.from_environ` is the only reader of RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
MASTER_ADDR and MASTER_PORT; `init_distributed` is the only caller of init_process_group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kfp_yolo.components.errors import JobFailed, UserError
from kfp_yolo.components.spec import TrainSpec

__all__ = ["COLLECTIVE_TIMEOUT_S", "DistEnv", "barrier", "check_gpu", "destroy",
           "device_type_of", "from_main", "init_distributed", "is_distributed"]

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
                             "worker with torchrun (see kfp_yolo.components.training.worker).")
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


def device_type_of(spec: TrainSpec) -> str:
    import torch

    if spec.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda was asked for but this machine has no CUDA device; "
                        "use device=auto or cpu.")
    if spec.device not in ("cpu", "cuda"):
        raise UserError(f"device {spec.device!r} is not one of auto, cpu, cuda.")
    return spec.device


def check_gpu(env: DistEnv) -> None:
    import torch

    if env.local_rank >= torch.cuda.device_count():
        raise UserError(f"local rank {env.local_rank} has no GPU: this node has "
                        f"{torch.cuda.device_count()}; set procs_per_node to the GPUs per node.")


def init_distributed(env: DistEnv, device_type: str, timeout_s: int) -> None:
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


def is_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


def from_main(value: Any) -> Any:
    """Rank 0's value, on every rank, so that all ranks take the same decision."""
    if not is_distributed():
        return value
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def destroy() -> None:
    """Destroys the process group when there is one."""
    if is_distributed():
        import torch.distributed as dist

        dist.destroy_process_group()
