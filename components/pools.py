"""The node-pool catalog: the GPU memory classes the planner and Kueue share.

k8s/node-pools.yaml in git, shipped inside the package as package data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kfp_yolo.components.errors import UserError

__all__ = ["GPU_MEMORY_LABEL", "Pool", "catalog_json", "default_pools_path", "load_pools",
           "load_pools_text", "node_affinity", "required_node_affinity"]

GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"


@dataclass(frozen=True, kw_only=True)
class Pool:
    """One GPU node pool."""

    name: str
    """Pool name, also used in object names."""
    gpu_product: str
    """nvidia.com/gpu.product as GPU Feature Discovery reports it."""
    gpu_memory_mib: int
    """nvidia.com/gpu.memory as GFD reports it (MiB, an integer)."""
    gpus_per_node: int
    """GPUs on one node."""
    max_nodes: int
    """Most nodes the pool scales to."""
    flavor: str
    """Kueue ResourceFlavor name of this memory class."""
    hourly_price: float | None = None
    """Optional price of one node-hour, for the cost column of `kfp-yolo plan`."""
    tolerations: tuple[dict, ...] = field(default_factory=tuple)
    """Tolerations a pod needs to land on the pool's tainted nodes."""


def default_pools_path() -> Path:
    """The catalog shipped inside the package (package data; k8s/node-pools.yaml in git)."""
    from importlib.resources import files

    return Path(str(files("kfp_yolo.components").joinpath("node-pools.yaml")))


_FIELDS = {name for name in Pool.__dataclass_fields__}


def load_pools(path: str | Path | None = None) -> list[Pool]:
    """Reads the catalog file, smallest GPU memory first; a malformed entry is a UserError."""
    path = Path(path) if path else default_pools_path()
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the node-pool catalog ({exc.strerror}).") from None
    return load_pools_text(text, source=str(path))


def catalog_json(path: str | Path | None = None) -> str:
    """The catalog file, checked, as one line of JSON: the pipeline's `node_pools` parameter.

    One line because KFP repeats parameter defaults in a comment block of the compiled YAML,
    which a multi-line default would break.
    """
    path = Path(path) if path else default_pools_path()
    load_pools(path)
    return json.dumps(yaml.safe_load(path.read_text()), separators=(",", ":"))


def load_pools_text(text: str, source: str = "the node-pool catalog") -> list[Pool]:
    """Parses catalog text (YAML or JSON), smallest GPU memory first; errors name `source`.

    The pipeline carries the catalog as a parameter, so the plan step reads the catalog that
    was compiled in, not the copy inside the image.
    """
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: the node-pool catalog is not valid YAML ({exc}).") from None
    entries = data.get("pools") if isinstance(data, dict) else None
    if not entries:
        raise UserError(f"{source}: no 'pools:' list; add at least one pool.")
    pools = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise UserError(f"{source}: pool #{index + 1} is not a mapping of KEY: VALUE.")
        unknown = set(entry) - _FIELDS
        if unknown:
            raise UserError(f"{source}: pool #{index + 1} has unknown key(s) {sorted(unknown)}; "
                            f"known keys are {sorted(_FIELDS)}.")
        try:
            pool = Pool(**{**entry, "tolerations": tuple(entry.get("tolerations") or ())})
        except TypeError as exc:
            raise UserError(f"{source}: pool #{index + 1} is incomplete ({exc}).") from None
        if not isinstance(pool.gpu_memory_mib, int) or pool.gpu_memory_mib <= 0:
            raise UserError(f"{source}: pool {pool.name!r} gpu_memory_mib must be a positive "
                            f"integer in MiB, got {pool.gpu_memory_mib!r}.")
        pools.append(pool)
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise UserError(f"{source}: pool names must be unique, got {names}.")
    return sorted(pools, key=lambda p: p.gpu_memory_mib)


def node_affinity(need_mib: int) -> list[dict]:
    """Required node-affinity match expressions: GPU memory label strictly above need - 1 MiB."""
    if not isinstance(need_mib, int) or need_mib < 1:
        raise UserError(f"GPU memory need must be a positive integer of MiB, got {need_mib!r}.")
    # GFD labels are integers and Gt is strict: Gt (need - 1) means at least `need` MiB
    return [{"key": GPU_MEMORY_LABEL, "operator": "Gt", "values": [str(need_mib - 1)]}]


def required_node_affinity(match_expressions: list[dict]) -> dict:
    """A Kubernetes NodeAffinity requiring every expression (what add_node_affinity_json takes)."""
    return {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [dict(e) for e in match_expressions]}]}}
