"""The node-pool catalog: the GPU memory classes the planner and Kueue share.

k8s/node-pools.yaml in git, shipped inside the package as package data.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, dataclass, field
from pathlib import Path

import yaml

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.names import DNS_LABEL
from kfp_yolo.components.yaml_text import parse_yaml

__all__ = ["GPU_MEMORY_LABEL", "Pool", "catalog_json", "check_flavors", "default_pools_path",
           "is_dns_label", "load_pools", "load_pools_text", "node_affinity", "pools_for_precision",
           "required_node_affinity", "runs_bf16"]

GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
# GPUs older than Ampere (compute capability < 8.0: Kepler, Maxwell, Pascal, Volta, Turing)
# have no bf16 units: torch emulates it, slower than fp32. Matched on GFD's product name.
_NO_BF16 = re.compile(r"(^|-)(T4|V100|P100|P40|P4|P6|K80|K40|M60|M40|M10|GTX|TITAN|Quadro-RTX|"
                      r"RTX-20[0-9]0|Quadro-[PMK][0-9]+|Quadro-GV100|Quadro-T[0-9]+)(-|$)",
                      re.IGNORECASE)


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
    """Optional price of one GPU-hour (the admin's, in any one currency): the planner's cost."""
    cpus_per_node: int | None = None
    """Optional CPUs of one node: the planner sizes the dataloader (its images/s cap) from it."""
    tolerations: tuple[dict, ...] = field(default_factory=tuple)
    """Tolerations a pod needs to land on the pool's tainted nodes."""


def default_pools_path() -> Path:
    """The catalog shipped inside the package (package data; k8s/node-pools.yaml in git)."""
    from importlib.resources import files

    return Path(str(files("kfp_yolo.components").joinpath("node-pools.yaml")))


_FIELDS = {name for name in Pool.__dataclass_fields__}
_REQUIRED = {name for name, f in Pool.__dataclass_fields__.items()
             if f.default is MISSING and f.default_factory is MISSING}
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_OPERATORS = ("Exists", "Equal")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def is_dns_label(value: object) -> bool:
    """True for a Kubernetes DNS-1123 label: the rule for namespaces and most object names."""
    return DNS_LABEL.matches(value)


def _read_catalog(path: str | Path | None) -> tuple[Path, str]:
    """The catalog file (default: the package's) and its text; unreadable is a UserError."""
    path = Path(path) if path else default_pools_path()
    try:
        return path, path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"{path}: cannot read the node-pool catalog ({exc.strerror}).") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: the node-pool catalog is not UTF-8 text; save it as "
                        "UTF-8.") from None


def load_pools(path: str | Path | None = None) -> list[Pool]:
    """Reads the catalog file, smallest GPU memory first; a malformed entry is a UserError."""
    path, text = _read_catalog(path)
    return load_pools_text(text, source=str(path))


def catalog_json(path: str | Path | None = None) -> str:
    """The catalog file, checked, as one line of JSON: the pipeline's `node_pools` parameter.

    One line because KFP repeats parameter defaults in a comment block of the compiled YAML,
    which a multi-line default would break.
    """
    path, text = _read_catalog(path)
    load_pools_text(text, source=str(path))  # checked: a bad catalog fails the compile
    return json.dumps(yaml.safe_load(text), separators=(",", ":"))


def load_pools_text(text: str, source: str = "the node-pool catalog") -> list[Pool]:
    """Parses catalog text (YAML or JSON), smallest GPU memory first; errors name `source`.

    The pipeline carries the catalog as a parameter, so the plan step reads the catalog that
    was compiled in, not the copy inside the image.
    """
    data = parse_yaml(text, source, what="the node-pool catalog") or {}
    entries = data.get("pools") if isinstance(data, dict) else None
    if not entries:
        raise UserError(f"{source}: no 'pools:' list; add at least one pool.")
    if not isinstance(entries, list):
        raise UserError(f"{source}: 'pools:' must be a list of pools (- name: ...), got "
                        f"{type(entries).__name__}.")
    lines = _entry_lines(text)
    pools = []
    for index, entry in enumerate(entries):
        line = f":{lines[index]}" if index < len(lines) else ""
        pools.append(_pool(entry, f"{source}{line}: pool #{index + 1}"))
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise UserError(f"{source}: two pools are named {twice!r}; pool names must be unique.")
    check_flavors(pools, source)
    return sorted(pools, key=lambda p: p.gpu_memory_mib)


def check_flavors(pools: list[Pool], source: str = "the node-pool catalog") -> None:
    """The one flavor rule of plan, compile and quotas: pools sharing a Kueue flavor have one
    GPU memory size, since the flavor's node label is that size."""
    first: dict[str, Pool] = {}
    for pool in pools:
        other = first.setdefault(pool.flavor, pool)
        if other.gpu_memory_mib != pool.gpu_memory_mib:
            raise UserError(f"{source}: pools sharing flavor {pool.flavor!r} must have one GPU "
                            f"memory size (the flavor's node label), got {other.name!r} "
                            f"{other.gpu_memory_mib} MiB and {pool.name!r} "
                            f"{pool.gpu_memory_mib} MiB; give {pool.name!r} its own flavor.")


def _entry_lines(text: str) -> list[int]:
    """The line of each entry of the pools: list, for messages (empty when not found)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    for key, value in getattr(root, "value", []) if isinstance(root, yaml.MappingNode) else []:
        if key.value == "pools" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _pool(entry: object, where: str) -> Pool:
    """One catalog entry, every field checked; where names the file, line and entry."""
    if not isinstance(entry, dict):
        raise UserError(f"{where} is {entry!r}, not a mapping; write name:, gpu_product:, "
                        "gpu_memory_mib:, gpus_per_node:, max_nodes:, flavor: (see "
                        "k8s/node-pools.yaml).")
    unknown = sorted(str(k) for k in set(entry) - _FIELDS)
    if unknown:
        raise UserError(f"{where} has unknown key(s) {unknown}; known keys are "
                        f"{sorted(_FIELDS)}.")
    missing = sorted(_REQUIRED - set(entry))
    if missing:
        raise UserError(f"{where} lacks {missing}; every pool needs {sorted(_REQUIRED)}.")
    if isinstance(entry.get("name"), str):
        where = f"{where} ({entry['name']})"
    for key in ("name", "flavor"):
        if problem := DNS_LABEL.problem(entry[key]):
            raise UserError(f"{where}: {key} {entry[key]!r} is invalid: {problem}.")
    if not isinstance(entry["gpu_product"], str) or not entry["gpu_product"].strip():
        raise UserError(f"{where}: gpu_product {entry['gpu_product']!r} must be the GPU's name "
                        "as GPU Feature Discovery reports it, e.g. NVIDIA-L4.")
    for key in ("gpu_memory_mib", "gpus_per_node", "max_nodes"):
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            unit = " in MiB" if key == "gpu_memory_mib" else ""
            raise UserError(f"{where}: {key} must be a positive integer{unit}, got {value!r}.")
    cpus = entry.get("cpus_per_node")
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1):
        raise UserError(f"{where}: cpus_per_node must be a positive integer (or left out), got "
                        f"{cpus!r}.")
    price = entry.get("hourly_price")
    if price is not None and (isinstance(price, bool) or not isinstance(price, int | float)
                              or not math.isfinite(price) or price < 0):
        raise UserError(f"{where}: hourly_price must be a number of at least 0 (or left out), "
                        f"got {price!r}.")
    tolerations = entry.get("tolerations") or []
    if not isinstance(tolerations, list):
        raise UserError(f"{where}: tolerations must be a list of Kubernetes tolerations, got "
                        f"{tolerations!r}.")
    for toleration in tolerations:
        _check_toleration(toleration, where)
    return Pool(**{**entry, "tolerations": tuple(tolerations)})


def _check_toleration(toleration: object, where: str) -> None:
    fix = ("write e.g. {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}")
    if not isinstance(toleration, dict) or set(toleration) - _TOLERATION_KEYS:
        raise UserError(f"{where}: toleration {toleration!r} is not a Kubernetes toleration; "
                        f"{fix}.")
    if toleration.get("operator", "Equal") not in _OPERATORS:
        raise UserError(f"{where}: toleration operator {toleration['operator']!r} must be one "
                        f"of {list(_OPERATORS)}.")
    if "effect" in toleration and toleration["effect"] not in _EFFECTS:
        raise UserError(f"{where}: toleration effect {toleration['effect']!r} must be one of "
                        f"{list(_EFFECTS)}.")
    for key in ("key", "value"):
        if key in toleration and not isinstance(toleration[key], str):
            raise UserError(f"{where}: toleration {key} {toleration[key]!r} must be a string; "
                            f"{fix}.")
    seconds = toleration.get("tolerationSeconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
        raise UserError(f"{where}: tolerationSeconds {seconds!r} must be an integer.")


def runs_bf16(pool: Pool) -> bool:
    """Whether the pool's GPU computes in bf16 natively (Ampere or newer; unknown names: yes)."""
    return not _NO_BF16.search(pool.gpu_product)


def pools_for_precision(pools: list[Pool], precision: str) -> list[Pool]:
    """The pools a run of this precision may be placed on (bf16: only those that run it)."""
    return [p for p in pools if precision != "bf16" or runs_bf16(p)]


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
