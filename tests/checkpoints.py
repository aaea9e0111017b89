"""Real ultralytics checkpoints of a few kinds, made in a second, for the warm-start tests.

Saved as ultralytics saves them (a dict whose "model" is the pickled model and "version" the
ultralytics that wrote it), built from the model YAMLs ultralytics ships: nothing downloads.
"""

from __future__ import annotations

from pathlib import Path


def save_checkpoint(path: Path, yaml: str = "yolov5n.yaml",
                    names: tuple[str, ...] = ("circle", "square", "triangle"),
                    version: str | None = None) -> Path:
    """A checkpoint of the model `yaml` (its task from its head) with these class names."""
    import torch
    from ultralytics import __version__
    from ultralytics.nn.tasks import DetectionModel, SegmentationModel

    kind = SegmentationModel if "-seg" in yaml else DetectionModel
    model = kind(yaml, nc=len(names), verbose=False)
    model.names = dict(enumerate(names))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "ema": None, "version": version or __version__}, path)
    return path


def save_future_checkpoint(path: Path) -> Path:
    """A checkpoint that names a module class this ultralytics lacks, as one written by a newer
    ultralytics does (its pickle says ultralytics.nn.modules.block.FutureBlock)."""
    import torch
    import ultralytics.nn.modules.block as block

    class FutureBlock(torch.nn.Module):
        pass

    FutureBlock.__module__, FutureBlock.__qualname__ = block.__name__, "FutureBlock"
    block.FutureBlock = FutureBlock
    try:
        from ultralytics.nn.tasks import DetectionModel

        model = DetectionModel("yolov5n.yaml", nc=3, verbose=False)
        model.model.append(FutureBlock())
        torch.save({"model": model, "ema": None, "version": "9.0.0"}, path)
    finally:
        del block.FutureBlock
    return path
