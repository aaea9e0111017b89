"""Where a fine-tune starts: a .pt checkpoint fetched once, checked, and handed on unchanged.

`model` may name a checkpoint where users keep them (s3://, minio://, file:// or a path to a
.pt) or a version of this run's registry (`registry:champion`, `registry:latest`,
`registry:<version>`); `warm_start: champion|latest` asks for the registry's version and falls
back to `model` when there is none yet. The plan step calls `fetch_base_model`: it downloads the
bytes once into its output artifact (base.pt), records their sha256, and refuses, in one
sentence and before any GPU, a checkpoint of another task, a corrupt file, one this ultralytics
cannot read, or a registry version that is missing or half-written. The training pods read
that artifact as they read the dataset (`localise_base_model`) and check its sha256.

    base = fetch_base_model("registry:champion", out_dir, registry_uri=..., name="shapes")
    base.metadata()  # source, uri, version, sha256, nc, names, ultralytics_version

No kfp here; torch and ultralytics are imported inside the functions that read a checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kfp_yolo.components import storage
from kfp_yolo.components.errors import Fault, UserError

__all__ = ["BASE_FILE", "REGISTRY_PREFIX", "WARM_STARTS", "BaseModel", "fetch_base_model",
           "is_fetched", "localise_base_model", "registry_source", "sha256_of",
           "transfer_report"]

log = logging.getLogger(__name__)

REGISTRY_PREFIX = "registry:"
"""`model: registry:champion|latest|<version>` names a version of this run's `name`."""
WARM_STARTS = ("none", "champion", "latest")
"""`warm_start`: none (train from `model`), or the registry's champion / newest version."""
BASE_FILE = "base.pt"
"""The checkpoint's name inside the plan step's `base_model` artifact."""
MAX_BYTES = 4 * 2**30
"""The largest checkpoint fetched: a YOLO .pt is 5-300 MB; more is not a detector checkpoint."""


@dataclass(frozen=True)
class BaseModel:
    """The checkpoint a run fine-tunes from, as fetched by the plan step."""

    source: str
    """What the config said (`registry:champion`, `s3://.../best.pt`, a path)."""
    uri: str
    """Where the bytes came from (a registry version's best.pt, or the URI/path itself)."""
    version: str
    """The registry version ('' when the checkpoint is a file or URI)."""
    sha256: str
    nc: int
    names: list[str]
    ultralytics_version: str
    path: Path
    """The fetched file (in the plan step's artifact)."""

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description (the artifact's metadata, the lineage's parent)."""
        return {k: v for k, v in asdict(self).items() if k != "path"} | {"file": BASE_FILE}


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def is_fetched(model: str) -> bool:
    """Whether the plan step fetches `model` (a URI, a registry version, or a .pt file here)."""
    return ("://" in model or model.startswith(REGISTRY_PREFIX)
            or (model.endswith(".pt") and Path(model).expanduser().is_file()))


def registry_source(which: str, registry_uri: str, name: str) -> tuple[str, str]:
    """(version, version URI) of `which` (champion, latest or a version) of model `name`.

    champion is the version `latest` points at (what publish and `kfp-yolo promote` move);
    latest is the newest finished version, champion or not. UserError when there is none, or
    the named one is missing or half-written.
    """
    from kfp_yolo.components.release.publish import finished_version, read_latest, version_uri

    where = f"{registry_uri.rstrip('/')}/{name}"
    if which == "champion":
        pointer = read_latest(registry_uri, name)
        if pointer is None:
            raise UserError(f"model='registry:champion' is invalid: {where} has no champion "
                            "(nothing published yet); train from a model YAML or a .pt first, "
                            "or set warm_start=champion, which falls back to `model`.")
        return str(pointer["version"]), str(pointer["uri"])
    if which == "latest":
        versions = _finished_versions(registry_uri, name)
        if not versions:
            raise UserError(f"model='registry:latest' is invalid: {where} has no finished "
                            "version; publish one first, or set warm_start=latest, which falls "
                            "back to `model`.")
        return versions[-1], version_uri(registry_uri, name, versions[-1])
    try:
        return which, finished_version(registry_uri, name, which, command="model=registry:")
    except UserError:
        raise UserError(f"model='registry:{which}' is invalid: {where}/{which} is missing or "
                        "only partly published; give one of the finished versions under "
                        f"{where}/ (`kfp-yolo lineage` lists a version's chain).") from None


def _finished_versions(registry_uri: str, name: str) -> list[str]:
    """Finished version names, oldest first (names start with their UTC time)."""
    where = f"{registry_uri.rstrip('/')}/{name}"
    if not storage.exists(where):
        return []
    names = {n.split("/", 1)[0] for n in storage.list_prefix(where) if "/" in n}
    return sorted(v for v in names if storage.finished(f"{where}/{v}"))


def resolve(model: str, *, warm_start: str, registry_uri: str, name: str
            ) -> tuple[str, str, str]:
    """(source, uri, version) of the checkpoint to fetch, or ('', '', '') for none.

    warm_start champion/latest takes the registry's version when there is one, else `model`
    (and says so).
    """
    if warm_start != "none":
        try:
            version, uri = registry_source(warm_start, registry_uri, name)
            return f"{REGISTRY_PREFIX}{warm_start}", f"{uri}/best.pt", version
        except UserError:
            print(f"warm start: {registry_uri.rstrip('/')}/{name} has no {warm_start} yet; "
                  f"training from model={model!r} as configured")
    if model.startswith(REGISTRY_PREFIX):
        version, uri = registry_source(model.removeprefix(REGISTRY_PREFIX), registry_uri, name)
        return model, f"{uri}/best.pt", version
    if is_fetched(model):
        return model, model, ""
    return "", "", ""


def fetch_base_model(model: str, out_dir: str | Path, *, warm_start: str = "none",
                     registry_uri: str = "", name: str = "") -> BaseModel | None:
    """Fetches and checks the checkpoint a run starts from; None when it trains a model YAML.

    The bytes go to out_dir/base.pt once; a file of the same sha256 already there (a retried
    plan step) is kept.

    Raises:
        UserError: missing, corrupt, another task, unreadable by this ultralytics, too large.
    """
    source, uri, version = resolve(model, warm_start=warm_start, registry_uri=registry_uri,
                                   name=name)
    if not source:
        return None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / BASE_FILE
    if not storage.exists(uri):
        raise UserError(f"model={source!r} is invalid: {uri} does not exist; give a .pt "
                        "checkpoint that is there (s3://, minio://, file:// or a path).")
    partial = out / f".{BASE_FILE}.partial"
    print(f"warm start: fetching {uri}")
    storage.download(uri, partial, progress=True)
    size = partial.stat().st_size
    if size > MAX_BYTES:
        partial.unlink()
        raise UserError(f"model={source!r} is invalid: {uri} is {size / 2**30:.1f} GiB, more "
                        f"than any YOLO detector checkpoint ({MAX_BYTES // 2**30} GiB at most); "
                        "give a detection model's .pt.")
    digest = sha256_of(partial)
    if target.exists() and sha256_of(target) == digest:
        partial.unlink()
    else:
        partial.replace(target)
    nc, names, made_by = inspect_checkpoint(target, source)
    base = BaseModel(source=source, uri=uri, version=version, sha256=digest, nc=nc,
                     names=names, ultralytics_version=made_by, path=target)
    print(f"warm start: {source} = {uri} (sha256 {digest[:12]}, {size / 2**20:.1f} MiB, "
          f"{nc} classes, ultralytics {made_by or 'unknown'})")
    return base


def inspect_checkpoint(path: Path, source: str) -> tuple[int, list[str], str]:
    """(nc, class names, ultralytics version that wrote it) of a detection checkpoint.

    Raises UserError for a file that is not a readable ultralytics detection checkpoint.
    """
    import pickle

    import torch
    import ultralytics

    try:
        # weights_only=False: an ultralytics checkpoint pickles its model class; the file
        # comes from the user's own store or registry (as `YOLO(path)` would read it).
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        raise UserError(f"model={source!r} is invalid: ultralytics {ultralytics.__version__} "
                        f"cannot read it ({exc}): it was most likely written by a newer "
                        f"ultralytics; save it again with ultralytics {ultralytics.__version__} "
                        "or train from its model YAML.") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as exc:
        raise UserError(f"model={source!r} is invalid: it is not a readable PyTorch checkpoint "
                        f"(empty, truncated or not a .pt: {type(exc).__name__}); fetch or "
                        "export it again.") from None
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if model is None or not hasattr(model, "yaml"):
        raise UserError(f"model={source!r} is invalid: it is a PyTorch file but not an "
                        "ultralytics checkpoint (no 'model' with its YAML); give a best.pt or "
                        "last.pt that ultralytics wrote.")
    kind = type(model).__name__  # segment, pose, OBB, World and RT-DETR models subclass it
    if kind != "DetectionModel":
        task = kind.removesuffix("Model") or kind
        raise UserError(f"model={source!r} is invalid: it is a {task} checkpoint, and kfp-yolo "
                        "trains YOLO object detectors; give a detection checkpoint or a model "
                        "YAML such as yolo11n.yaml.")
    names = getattr(model, "names", {}) or {}
    names = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else list(names)
    made_by = str(ckpt.get("version", "") or "")
    if made_by and _newer(made_by, ultralytics.__version__):
        log.warning("%s was written by ultralytics %s, newer than %s: it loaded, but check "
                    "the transfer line of the training log", source, made_by,
                    ultralytics.__version__)
    return int(model.yaml.get("nc", len(names))), names, made_by


def _newer(a: str, b: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", v)[:3])
    return key(a) > key(b)


def localise_base_model(model: str, sha256: str, folder: Path, *, fetch: bool) -> str:
    """The local path of the run's base checkpoint on this node.

    A remote one (the plan step's artifact on object storage) is downloaded into folder when
    fetch is True (one process per node) and checked against the plan step's sha256.

    Raises:
        Fault: the bytes differ from what the plan step fetched.
    """
    if not storage.is_remote(model):
        local = storage.local_path(model)
    else:
        local = folder / BASE_FILE
        if fetch and not local.exists():
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f".{BASE_FILE}.partial"
            storage.download(model, partial)
            partial.replace(local)
    if fetch and sha256 and sha256_of(local) != sha256:
        raise Fault(f"{model} has sha256 {sha256_of(local)}, not {sha256} as the plan step "
                    "fetched it: the run's artifact changed; run again.")
    return str(local)


def transfer_report(model: Any, base_path: str, names: list[str]) -> dict[str, Any]:
    """What ultralytics' transfer kept: tensors equal to the checkpoint's, per the model just
    built (before the first step), and whether the class list changed.

    Returns {"transferred", "tensors", "head_reinitialised", "nc", "base_nc", "names_changed",
    "sentence"}.
    """
    import torch

    ckpt = torch.load(base_path, map_location="cpu", weights_only=False)
    base = ckpt.get("ema") or ckpt["model"]
    source = {k: v.float() for k, v in base.state_dict().items()}
    target = getattr(model, "module", model).state_dict()
    same = sum(1 for k, v in target.items() if k in source and v.shape == source[k].shape
               and torch.equal(v.detach().float().cpu(), source[k]))
    base_names = getattr(base, "names", {}) or {}
    base_names = [str(base_names[k]) for k in sorted(base_names)] \
        if isinstance(base_names, dict) else list(base_names)
    nc, base_nc = len(names), int(base.yaml.get("nc", len(base_names)))
    reinit = nc != base_nc
    sentence = f"transferred {same}/{len(target)} tensors from the base checkpoint"
    if reinit:
        sentence += (f"; the head was re-initialised for {nc} classes (the checkpoint had "
                     f"{base_nc})")
    elif base_names and base_names != names:
        sentence += "; the class names differ from the checkpoint's: the dataset's names win"
    sentence += f"; classes: {', '.join(names)}"
    return {"transferred": same, "tensors": len(target), "head_reinitialised": reinit,
            "nc": nc, "base_nc": base_nc, "names_changed": base_names != names,
            "sentence": sentence}

