"""Checks of single config values that RunConfig's validators share with the CLI and the steps.

Each raises ValueError with the reason (RunConfig turns it into the `key=value is invalid:
...` sentence) and imports nothing heavy: compiling a pipeline loads no torch or ultralytics.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

from kfp_yolo.components.errors import UserError

__all__ = ["LR0_DEFAULTS", "URI_FORMS", "check_detection_model", "check_uri", "default_lr0"]

LR0_DEFAULTS = {"SGD": 0.01, "Adam": 0.001, "AdamW": 0.004, "auto": 0.01}
"""lr0 when the config leaves it empty, per optimizer. SGD 0.01 and Adam 0.001 are ultralytics'
own (cfg/default.yaml: "SGD=1e-2, Adam/AdamW=1e-3"); AdamW keeps 0.004, which trains the
demo's shapes from scratch to mAP50-95 0.65 in 20 epochs (0.48 with ultralytics' auto choice).
auto: ultralytics picks optimizer and lr0 itself and ignores the value."""
URI_FORMS = "s3://BUCKET/PREFIX, minio://BUCKET/PREFIX, file:///PATH or a path"
_STORE_SCHEMES = ("s3", "minio", "file")
# ultralytics tells a model's task by these suffixes of its YAML or checkpoint name.
_OTHER_TASKS = {"cls": "classification", "seg": "segmentation", "pose": "pose",
                "obb": "oriented-box"}


def default_lr0(optimizer: str) -> float:
    """The learning rate a run with this optimizer gets when lr0 is not set."""
    return LR0_DEFAULTS[optimizer]


def check_uri(value: str, *, synthetic: bool = False) -> None:
    """Refuses a URI whose scheme no step can read or write; ValueError says which and why."""
    parsed = urlparse(value)
    forms = URI_FORMS + (" or synthetic://shapes" if synthetic else "")
    drive = len(parsed.scheme) == 1 and value[1:3] in (":\\", ":/")  # C:\data parses as a scheme
    if "\0" in value:
        raise ValueError("contains a NUL character")
    if parsed.scheme in ("", *(("synthetic",) if synthetic else ())) or drive:
        if parsed.scheme == "synthetic":
            from kfp_yolo.components.synth import synthetic_spec

            try:
                synthetic_spec(value)
            except UserError as exc:  # the parser's sentence, without its own URI prefix
                raise ValueError(str(exc).split(": ", 1)[-1].rstrip(".")) from None
        return
    if parsed.scheme not in _STORE_SCHEMES:
        raise ValueError(f"unsupported scheme {parsed.scheme!r}; use {forms}")
    if parsed.scheme == "file" and (parsed.netloc not in ("", "localhost") or not parsed.path):
        raise ValueError("a file URI is file:///ABSOLUTE/PATH (three slashes)")
    if parsed.scheme != "file" and not parsed.netloc:
        raise ValueError(f"no bucket; write {parsed.scheme}://BUCKET/PREFIX")


def check_detection_model(value: str) -> None:
    """Refuses a model of another task (yolov8n-cls.yaml) or family (rtdetr-l.yaml).

    kfp-yolo's trainer is ultralytics' DetectionTrainer: RT-DETR needs its own trainer and
    loss, and a classifier, segmenter or pose model another head; both ended in a raw
    AttributeError deep in training before this check.
    """
    stem = Path(value).stem.lower()
    if stem.startswith("rtdetr") or stem.startswith("rt-detr"):
        raise ValueError(f"{value!r} is an RT-DETR model, which needs ultralytics' RT-DETR "
                         "trainer; kfp-yolo trains YOLO detectors: use a model such as "
                         "yolov8l.yaml")
    for suffix, task in _OTHER_TASKS.items():
        if re.search(rf"-{suffix}(\b|$)", stem):
            raise ValueError(f"{value!r} is a {task} model, and kfp-yolo trains object detectors; "
                             f"use a detection model such as {stem.split('-' + suffix)[0]}.yaml")
