"""Every place kfp-yolo changes or reaches into ultralytics' internals, in one module.

Written against ultralytics 8.4.190 (pyproject pins it). Each patch is scoped: a context manager
that puts back what it replaced, an override in the trainer subclass, or an adapter that keeps a
private layout in one function. Each says why it exists and which upstream change would retire
it. tests/unit/test_ultralytics_contract.py holds one test per patch, named after it, that
fails when the installed ultralytics moves what the patch relies on.

| patch                      | kind                          | used by                   |
|----------------------------|-------------------------------|---------------------------|
| amp_check_skipped          | context manager               | LauncherTrainer           |
| cpu_ddp_device_ids         | context manager (torch class) | LauncherTrainer           |
| launcher_world_size        | __init__ override             | LauncherTrainer           |
| setup_ddp_noop             | _setup_ddp override           | LauncherTrainer           |
| final_eval_without_val     | final_eval override           | LauncherTrainer, worker   |
| mlflow_callback_off        | context manager (settings)    | training.trainer          |
| original_image_open        | read of a private name        | data.checks               |
| verify_image_label         | adapter of a positional tuple | data.checks               |
| prepare_for_loss           | attributes the trainer sets   | planner.probe             |

torch and ultralytics are imported inside functions: ultralytics reads RANK and writes its
settings at import, so it is imported only once the process's environment is settled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["CORRUPT_PREFIX", "LabelVerdict", "amp_check_skipped", "cpu_ddp_device_ids",
           "finalize_weights", "launcher_trainer_class", "mlflow_callback_off",
           "original_image_open", "prepare_for_loss", "verify_image_label"]


# ---------------------------------------------------------------------------------- the trainer


def _amp_ok(model: Any) -> bool:
    return True


@contextmanager
def amp_check_skipped() -> Iterator[None]:
    """Within the block, ultralytics' trainer takes AMP as working without checking it.

    Why: `BaseTrainer._setup_train` calls `check_amp`, which downloads yolo26n.pt and compares
    its FP32 and AMP outputs; training pods are offline, and the AMP policy is the spec's
    `precision`. The trainer looks the name up in `ultralytics.engine.trainer`'s globals, so that
    binding (only) is replaced, and put back on exit. Retire when ultralytics can skip the check
    by argument (or when check_amp honours YOLO_OFFLINE without a download attempt).
    """
    from ultralytics.engine import trainer as module

    original = module.check_amp
    module.check_amp = _amp_ok
    try:
        yield
    finally:
        module.check_amp = original


@contextmanager
def cpu_ddp_device_ids(enabled: bool = True) -> Iterator[None]:
    """Within the block, torch's DistributedDataParallel accepts ``device_ids=[None]``.

    Why: `BaseTrainer._setup_train` wraps the model with ``device_ids=[self.device.index]``,
    which is ``[None]`` for a CPU model, and DDP refuses device_ids for CPU modules; the trainer
    looks the class up on ``torch.nn.parallel`` at call time, so a subclass that drops
    ``[None]`` stands in while it runs. Only CPU runs of several processes (gloo: the tests, a
    laptop) need it. Retire when ultralytics passes ``device_ids=None`` for CPU devices.
    """
    if not enabled:
        yield
        return
    import torch

    original = torch.nn.parallel.DistributedDataParallel

    class CpuDistributedDataParallel(original):  # type: ignore[misc, valid-type]
        """DDP that reads device_ids=[None] as None."""

        def __init__(self, module: Any, device_ids: list | None = None, **kwargs: Any):
            super().__init__(module, device_ids=None if device_ids == [None] else device_ids,
                             **kwargs)

    torch.nn.parallel.DistributedDataParallel = CpuDistributedDataParallel
    try:
        yield
    finally:
        torch.nn.parallel.DistributedDataParallel = original


@contextmanager
def mlflow_callback_off(enabled: bool = True) -> Iterator[None]:
    """Within the block, a trainer being built gets no ultralytics MLflow callback.

    Why: `add_integration_callbacks` adds ultralytics' MLflow callback whenever mlflow is
    importable and `SETTINGS["mlflow"]` is true (the default). That callback sets an experiment
    of its own and starts a run, which raises when MLFLOW_RUN_ID (KFP's nested run) belongs to
    another experiment, and writes a local store when no server is set; kfp-yolo logs to MLflow
    itself (tracking.mlflow_log). The setting is read per trainer at construction, so it is off
    while the trainer is built and put back after (it is a file in this process's config
    folder). Only global rank 0 gets integrations, so only it needs this (`enabled`): ranks
    sharing a node's config folder do not write its file at once. Retire when the trainer takes
    its integrations as an argument.
    """
    from ultralytics.utils import SETTINGS

    previous = SETTINGS.get("mlflow")
    if not enabled or previous is not True:
        yield
        return
    SETTINGS.update(mlflow=False)
    try:
        yield
    finally:
        SETTINGS.update(mlflow=previous)


def finalize_weights(last: Path, best: Path | None, *, out_last: Path | None = None,
                     out_best: Path | None = None) -> None:
    """Upstream's final_eval without its validation: strips the optimizer from last.pt and best.pt
    and copies last.pt's train results (the whole results table) into best.pt.

    Each file is written to a temporary name, then moved over `out_*` (default: in place).
    """
    from ultralytics.utils.torch_utils import strip_optimizer

    from kfp_yolo.components.atomic import temporary_name

    def strip(source: Path, dest: Path, updates: dict | None = None) -> dict:
        # not atomic.staged: strip_optimizer writes nothing for a file it cannot read, and
        # then dest must stay as it is rather than fail the move
        partial = temporary_name(dest)
        stripped = strip_optimizer(source, str(partial), updates=updates)
        if partial.exists():
            os.replace(partial, dest)
        return stripped

    ckpt = strip(last, out_last or last) if last.exists() else {}
    if best is not None and best.exists():
        strip(best, out_best or best, {"train_results": ckpt.get("train_results")})


@lru_cache(maxsize=1)
def launcher_trainer_class() -> type:
    """ultralytics' DetectionTrainer, for processes that torchrun started (one per device).

    Construct as ``cls(overrides, world_size=..., local_rank=..., is_main=...)``.
    """
    import torch
    from ultralytics.models.yolo.detect import DetectionTrainer

    class LauncherTrainer(DetectionTrainer):
        """DetectionTrainer whose process group, world size and device come from torchrun."""

        def __init__(self, overrides: dict, *, world_size: int, local_rank: int,
                     is_main: bool):
            super().__init__(overrides=overrides)
            self.is_main = is_main
            # Patch launcher_world_size. Why: ultralytics counts the devices in `device` for
            # its world size (0 on CPU, 1 for "3") and would spawn its own DDP workers when it
            # counts several; under torchrun every process has one device and the world size
            # is torchrun's. _setup_train (DDP wrap) and _build_train_pipeline (batch per
            # rank) read self.world_size. Retire when BaseTrainer takes the world size from
            # an external launcher's WORLD_SIZE (upstream launches DDP only by itself).
            self.world_size = world_size
            self.ddp = False
            if self.device.type == "cuda":
                self.device = torch.device("cuda", local_rank)

        def _setup_ddp(self) -> None:
            """Patch setup_ddp_noop: the process group exists already.

            Why: training.dist.init_distributed formed it (bounded timeout, device_id binding,
            one caller of init_process_group); upstream's would form a second one with a 3 h
            timeout from its own reading of the device string. Retire with
            launcher_world_size.
            """

        def _setup_train(self) -> Any:
            cpu_group = self.device.type == "cpu" and self.world_size > 1
            with amp_check_skipped(), cpu_ddp_device_ids(enabled=cpu_group):
                return super()._setup_train()

        def final_eval(self) -> None:
            """Patch final_eval_without_val: upstream's final_eval less its validation of best.pt.

            Why: the pipeline's evaluate step validates best.pt; validating it here too would do
            that work twice, and upstream's validator gathers over all ranks (other nodes hold no
            best.pt) and picks a CUDA device even on CPU. The optimizer strip and the merge of
            last.pt's train results into best.pt are kept, as upstream writes them. Retire when
            final_eval's validation can be switched off by argument.
            """
            if self.is_main:
                finalize_weights(self.last, self.best)

    return LauncherTrainer


# ------------------------------------------------------------------------------- data checks

CORRUPT_PREFIX = "ignoring corrupt image/label: "
"""What verify_image_label puts before the reason it rejects a pair."""


@dataclass(frozen=True)
class LabelVerdict:
    """ultralytics' verdict on one image and its label file."""

    corrupt: bool
    shape: tuple[int, int] | None
    """(height, width) in pixels, None when the pair is corrupt."""
    message: str
    """ultralytics' log message (a warning, or the reason it rejects the pair)."""

    @property
    def reason(self) -> str:
        """The rejection reason without ultralytics' prefix."""
        return self.message.split(CORRUPT_PREFIX, 1)[-1]


def verify_image_label(image: Path, label: Path, num_classes: int) -> LabelVerdict:
    """ultralytics' own check of one detection image and label file, read by name.

    Why: `ultralytics.data.utils.verify_image_label` is a worker function for a process pool; it
    takes one positional 8-tuple and returns a 10-tuple, and this is the only function that
    knows those positions. Retire when ultralytics offers a keyword API for one pair.
    """
    from ultralytics.data.utils import verify_image_label as verify

    # (im_file, lb_file, prefix, keypoint, num_cls, nkpt, ndim, single_cls)
    result = verify((str(image), str(label), "", False, num_classes, 0, 0, False))
    # -> (im_file, lb, shape, segments, keypoints, nm, nf, ne, nc, msg)
    shape = result[2]
    return LabelVerdict(corrupt=bool(result[8]), message=str(result[9]),
                        shape=(int(shape[0]), int(shape[1])) if shape is not None else None)


def original_image_open() -> Callable:
    """PIL's Image.open as it was before ultralytics replaced it.

    Why: importing ultralytics replaces PIL.Image.open for the whole process with a wrapper that
    tries to pip-install pi-heif when Pillow cannot identify a file; the original raises
    UnidentifiedImageError, which the dataset check turns into one sentence naming the file.
    ultralytics keeps the original as `ultralytics.utils.patches._image_open`. Retire when
    ultralytics stops patching Image.open at import (or its wrapper re-raises when installs are
    off).
    """
    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is None:  # the contract test fails first; meanwhile behave like Pillow
        from PIL import Image

        return Image.open
    return original


# ---------------------------------------------------------------------------------- planner


def prepare_for_loss(net: Any) -> None:
    """Gives a bare DetectionModel what the trainer gives it before its first loss.

    Why: `DetectionModel.loss` builds its criterion from `model.args` (the box, cls and dfl
    gains); the trainer sets `args` (set_model_attributes) and the criterion is built lazily on
    the first call, inside whatever measures it. The planner's probe needs both set beforehand,
    and the criterion's tensors outside its count. Retire when DetectionModel takes its loss
    hyperparameters in its constructor.
    """
    from ultralytics.cfg import get_cfg

    net.args = get_cfg()
    net.train()
    net.criterion = net.init_criterion()
