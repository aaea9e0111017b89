"""train: run training through a launcher backend and return the best weights.

The KFP step knows nothing of torchrun or Kubernetes: it builds a TrainSpec and hands it to
the launcher named by the config (`local` or `pytorchjob`). (No `from __future__ import
annotations` in component modules: KFP reads the annotations of component functions.)
"""

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from kfp.dsl import Dataset, Input, Model, Output

if TYPE_CHECKING:  # launchers.base imports this module
    from components.launchers.base import Launcher

__all__ = ["TrainSpec", "get_launcher", "train_component"]


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """Everything every training process needs; serialised to JSON into the worker's argv."""

    run_id: str
    """Names the run; a restarted job with the same run id resumes from its checkpoint."""
    dataset_uri: str
    """Folder (path or object-store prefix) holding the prepared data.yaml, images/ and labels/."""
    model: str
    """Model YAML (from scratch) or .pt checkpoint."""
    imgsz: int
    epochs: int
    batch: int
    """Global batch over all processes."""
    precision: str
    """amp | fp32 | bf16 (CUDA only; CPU always trains in fp32)."""
    optimizer: str
    lr0: float
    seed: int
    workers: int
    nodes: int
    procs_per_node: int
    checkpoint_uri: str
    """Checkpoints go to checkpoint_uri/run_id/ every epoch."""
    output_uri: str
    """best.pt, last.pt and results.csv are uploaded here at the end."""
    device: str = "auto"
    """auto (cuda when there is one), cpu or cuda."""
    init_timeout_s: int = 300
    """Seconds a rendezvous or process-group init may take before failing."""

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainSpec":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def get_launcher(name: str, **settings) -> "Launcher":
    """The launcher backend for `launcher=name`, imported lazily (local runs need no kubernetes)."""
    if name == "local":
        from components.launchers.local import LocalLauncher

        return LocalLauncher(**settings)
    if name == "pytorchjob":
        from components.launchers.pytorchjob import PyTorchJobLauncher

        return PyTorchJobLauncher(**settings)
    raise ValueError(f"unknown launcher {name!r}; use local or pytorchjob")


def train_component(
    dataset: Input[Dataset],
    run_id: str,
    model: str,
    imgsz: int,
    epochs: int,
    batch: int,
    precision: str,
    optimizer: str,
    lr0: float,
    seed: int,
    workers: int,
    nodes: int,
    procs_per_node: int,
    launcher: str,
    checkpoint_uri: str,
    image: str,
    namespace: str,
    queue: str,
    storage_secret: str,
    pool: str,
    min_gpu_memory_mib: int,
    weights: Output[Model],
):
    """KFP step: trains through the launcher; best.pt, last.pt, results.csv into `weights`."""
    import os

    from components import storage
    from components.memory import node_affinity
    from components.train import TrainSpec, get_launcher

    remote = launcher != "local"
    # Training pods are not KFP tasks: on a cluster they read and write object storage directly.
    output_uri = weights.uri if remote else weights.path
    spec = TrainSpec(
        run_id=run_id, dataset_uri=dataset.uri if remote else dataset.path, model=model,
        imgsz=imgsz, epochs=epochs, batch=batch, precision=precision, optimizer=optimizer,
        lr0=lr0, seed=seed, workers=workers, nodes=nodes, procs_per_node=procs_per_node,
        checkpoint_uri=checkpoint_uri or os.path.join(os.path.dirname(weights.path), "checkpoints"),
        output_uri=output_uri)
    # The pods require the planner's need (Gt need-1 MiB) and tolerate the chosen pool.
    settings = {} if not remote else {
        "image": image, "namespace": namespace, "queue": queue,
        "storage_secret": storage_secret, "pool": pool,
        "node_affinity": tuple(node_affinity(min_gpu_memory_mib))}
    get_launcher(launcher, **settings).launch(spec)
    if remote:
        storage.download(output_uri, weights.path)
    weights.metadata.update({"run_id": run_id, "epochs": epochs, "imgsz": imgsz, "batch": batch})
