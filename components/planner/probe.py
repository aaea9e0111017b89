"""The planner's probe: one real, counted training step of the model on the CPU.

The real ultralytics DetectionModel runs forward, its own v8 loss and backward at a small image
size, for batch 1 and 2, under a TorchDispatchMode that counts every storage created, rounded as
CUDA's caching allocator rounds. From the two curves each op's live bytes are ``F + x * A`` (x =
batch x pixels / probe pixels), so one probe pair serves every batch and image size. Results are
cached in memory and, with a cache folder, on disk. torch and ultralytics are imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from kfp_yolo.components.atomic import write_atomic
from kfp_yolo.components.errors import UserError

__all__ = ["BOXES_PER_IMAGE", "Probe", "build_model", "measure"]

BOXES_PER_IMAGE = 100
"""Targets per image in the probe: a dense mosaic; the loss pads every image to the batch max."""

_PROBE_VERSION = 1  # bump when the probe changes what it counts: invalidates disk caches
_BLOCK = 512  # CUDA caching allocator rounds every block up to 512 bytes


@dataclass(frozen=True)
class Probe:
    """What one probe pair measured; everything else is arithmetic on it."""

    s0: int
    """Probe image size (twice the largest stride)."""
    stride: int
    """Largest stride: image sizes round up to a multiple of it, as ultralytics does."""
    param_bytes: int
    """Trainable parameters, fp32, each rounded to the allocator block."""
    buffer_bytes: int
    """Buffers (BN running statistics), rounded."""
    hull: tuple[tuple[int, int, int], ...]
    """(F, A, casts) of the ops that can hold the peak: live bytes = F + x * A."""

    def step_peak(self, x: float) -> tuple[int, int]:
        """Peak live bytes of forward/loss/backward at scale x, and the weight casts within."""
        fixed, per_x, casts = max(self.hull, key=lambda p: p[0] + x * p[1])
        return int(fixed + x * per_x), casts


def _round(nbytes: int) -> int:
    return -(-nbytes // _BLOCK) * _BLOCK


class _LiveCounter:
    """TorchDispatchMode factory kept lazy so importing this module does not import torch."""

    @staticmethod
    def make(param_storages: set[int]):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        def storages(tree) -> list:
            return [t.untyped_storage() for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]

        class LiveBytes(TorchDispatchMode):
            """Live bytes of storages created inside the mode, recorded after every op."""

            def __init__(self) -> None:
                super().__init__()
                self.live: dict[int, tuple[object, int, bool]] = {}
                self.total = 0
                self.casts = 0
                self.curve: list[tuple[int, int]] = []

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                inputs = {id(s) for s in storages((args, kwargs))}
                out = func(*args, **kwargs)
                # autocast's fp16 copies of the weights: cached for the forward, saved for backward
                cast = func is torch.ops.aten._to_copy.default and bool(inputs & param_storages)
                for st in storages(out):
                    key = id(st)  # storages keep one Python object while alive, so id is stable
                    if key in inputs or key in self.live or st.nbytes() == 0:
                        continue  # views and in-place results allocate nothing
                    size = _round(st.nbytes())
                    ref = weakref.ref(st, lambda _, key=key: self._free(key))
                    self.live[key] = (ref, size, cast)
                    self.total += size
                    self.casts += size if cast else 0
                self.curve.append((self.total, self.casts))
                return out

            def _free(self, key: int) -> None:
                _, size, cast = self.live.pop(key)
                self.total -= size
                self.casts -= size if cast else 0

        return LiveBytes()


@lru_cache(maxsize=1)  # fp32 and amp probes of one model share it; the probe never steps it
def build_model(model: str, nc: int):
    """The ultralytics DetectionModel of a YAML or a .pt's architecture, in train mode."""
    from kfp_yolo.components.runtime import offline_environment

    offline_environment()  # before ultralytics is imported: it reads its settings then
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from kfp_yolo.components.ultralytics_patches import prepare_for_loss

    torch.manual_seed(0)  # deterministic weights: the assigner's foreground count follows them
    cfg = model
    try:
        if model.lower().endswith(".pt"):
            ckpt = torch.load(model, map_location="cpu", weights_only=False)
            cfg = (ckpt.get("ema") or ckpt["model"]).yaml
        net = DetectionModel(cfg, nc=nc, verbose=False)
    except Exception as exc:  # a user's file: any failure to read or build it is bad input
        raise UserError(f"model {model!r} cannot be built ({type(exc).__name__}: {exc}); give an "
                        "ultralytics model YAML such as 'yolov5l.yaml' or a detection .pt "
                        "checkpoint.") from None
    prepare_for_loss(net)  # the criterion is built here, outside the probe: it persists
    return net


def _run_step(net, batch: int, s: int, low_precision: bool, param_storages: set[int]) -> list:
    """One counted training step; returns the (live bytes, cast bytes) curve."""
    import torch

    gen = torch.Generator().manual_seed(0)
    n = batch * BOXES_PER_IMAGE
    images = torch.randint(0, 256, (batch, 3, s, s), dtype=torch.uint8, generator=gen)
    targets = {
        "batch_idx": torch.arange(batch).repeat_interleave(BOXES_PER_IMAGE).float(),
        "cls": torch.randint(0, net.model[-1].nc, (n, 1), generator=gen).float(),
        "bboxes": torch.rand(n, 4, generator=gen) * 0.5 + 0.25,
    }
    counter = _LiveCounter.make(param_storages)
    with counter:
        # bf16 on CPU stands for CUDA's fp16: same bytes, same cast ops for conv/BN/SiLU/cat
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low_precision):
            img = images.float() / 255  # ultralytics' preprocess_batch, inside autocast
            loss, _ = net.loss({"img": img, **targets})
            loss = loss.sum()
        del img
        loss.backward()
        del loss
    return counter.curve


def _hull(c1: list, c2: list) -> tuple[tuple[int, int, int], ...]:
    """Per-op (F, A, casts) from the batch-1 and batch-2 curves, pruned to the upper hull."""
    if len(c1) == len(c2):
        points = {(2 * a - b, b - a, ca) for (a, ca), (b, _) in zip(c1, c2, strict=True)}
    else:  # the loss took a data-dependent branch: fall back to the two peaks
        (p1, k1), (p2, _) = max(c1), max(c2)
        points = {(2 * p1 - p2, p2 - p1, k1)}
    # only points on the upper convex hull of (A, F) can be the maximum for some x >= 0
    hull: list[tuple[int, int, int]] = []
    for p in sorted(points, key=lambda p: (p[1], p[0])):
        while len(hull) >= 2:
            (f1, a1, _), (f2, a2, _) = hull[-2], hull[-1]
            if (a2 - a1) * (p[0] - f1) - (f2 - f1) * (p[1] - a1) >= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    return tuple(hull)


@lru_cache(maxsize=32)
def measure(model: str, nc: int, low_precision: bool, cache_dir: str | None) -> Probe:
    """Measures (or reads from the disk cache) the probe pair of a model.

    Cached in memory too; `measure.__wrapped__` bypasses that cache.
    """
    path = Path(cache_dir) / f"{_cache_key(model, nc, low_precision)}.json" if cache_dir else None
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            return Probe(**{**data, "hull": tuple(tuple(p) for p in data["hull"])})
        except (ValueError, TypeError, KeyError):
            pass  # a damaged cache entry is measured again and overwritten
    import torch

    threads = torch.get_num_threads()
    # one thread: small ops run several times faster on a shared machine than with OpenMP
    # workers spinning for busy cores, and the float results (hence the assigner) are stable
    torch.set_num_threads(1)
    try:
        net = build_model(model, nc)
        stride = max(int(net.stride.max()), 32)
        s0 = 2 * stride
        params = [p for p in net.parameters() if p.requires_grad]
        for p in params:  # gradients exist before the step (accumulation): backward adds to them
            p.grad = torch.zeros_like(p)
        param_storages = {id(p.untyped_storage()) for p in params}
        c1 = _run_step(net, 1, s0, low_precision, param_storages)
        c2 = _run_step(net, 2, s0, low_precision, param_storages)
    finally:
        torch.set_num_threads(threads)
    probe = Probe(
        s0=s0,
        stride=stride,
        param_bytes=sum(_round(p.nbytes) for p in params),
        buffer_bytes=sum(_round(b.nbytes) for b in net.buffers()),
        hull=_hull(c1, c2),
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Atomic: concurrent planners never read half a file.
        write_atomic(path, json.dumps({**probe.__dict__, "hull": [list(p) for p in probe.hull]}))
    return probe


def _cache_key(model: str, nc: int, low_precision: bool) -> str:
    """Disk cache key: the probe's inputs, the model file's content and the library versions."""
    parts = [str(_PROBE_VERSION), metadata.version("torch"), metadata.version("ultralytics"),
             model, str(nc), "2byte" if low_precision else "fp32", str(BOXES_PER_IMAGE)]
    local = Path(model)
    if local.is_file():  # a user's YAML or .pt: the same name may hold another architecture
        parts.append(hashlib.sha256(local.read_bytes()).hexdigest())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
