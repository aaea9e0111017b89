"""Checks of single config values that RunConfig's validators share with the CLI and the steps.

Each raises ValueError with the reason (RunConfig turns it into the `key=value is invalid:
...` sentence) and imports nothing heavy: compiling a pipeline loads no torch or ultralytics.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from urllib.parse import urlparse

from kfp_yolo.components.errors import UserError

__all__ = ["FINE_TUNE_LR0", "LR0_DEFAULTS", "REGISTRY_PREFIX", "URI_FORMS", "check_dataset_hash",
           "check_detection_model", "check_local_model", "check_uri", "default_lr0"]

LR0_DEFAULTS = {"SGD": 0.01, "Adam": 0.001, "AdamW": 0.004, "auto": 0.01}
"""lr0 when the config leaves it empty, per optimizer. SGD 0.01 and Adam 0.001 are ultralytics'
own (cfg/default.yaml: "SGD=1e-2, Adam/AdamW=1e-3"); AdamW keeps 0.004, which trains the
demo's shapes from scratch to mAP50-95 0.65 in 20 epochs (0.48 with ultralytics' auto choice).
auto: ultralytics picks optimizer and lr0 itself and ignores the value."""
FINE_TUNE_LR0 = {"SGD": 0.01, "Adam": 0.001, "AdamW": 0.001, "auto": 0.01}
"""lr0 of a fine-tune (a .pt or a registry version) when the config leaves it empty: ultralytics'
own defaults (cfg/default.yaml: SGD 1e-2, Adam/AdamW 1e-3), whose warm-up (warmup_epochs 3,
warmup_momentum 0.8, warmup_bias_lr 0.1) kfp-yolo never changes: AdamW's 0.004, tuned to train
from scratch, would move pretrained weights four times further per step."""
URI_FORMS = "s3://BUCKET/PREFIX, minio://BUCKET/PREFIX, file:///PATH or a path"
_STORE_SCHEMES = ("s3", "minio", "file")
REGISTRY_PREFIX = "registry:"
"""`model: registry:champion|latest|VERSION`: a version of this run's name (warm_start.py)."""
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# ultralytics tells a model's task by these suffixes of its YAML or checkpoint name.
_OTHER_TASKS = {"cls": "classification", "seg": "segmentation", "pose": "pose",
                "obb": "oriented-box"}
# The output modules (a model YAML's last head layer) kfp-yolo's DetectionTrainer trains.
_DETECT_HEADS = ("Detect", "v10Detect")


def default_lr0(optimizer: str, *, fine_tune: bool = False) -> float:
    """The learning rate a run with this optimizer gets when lr0 is not set."""
    return (FINE_TUNE_LR0 if fine_tune else LR0_DEFAULTS)[optimizer]


def check_uri(value: str, *, synthetic: bool = False) -> None:
    """Refuses a URI whose scheme no step can read or write; ValueError says which and why."""
    parsed = urlparse(value)
    forms = URI_FORMS + (" or synthetic://shapes" if synthetic else "")
    drive = len(parsed.scheme) == 1 and value[1:3] in (":\\", ":/")  # C:\data parses as a scheme
    if "\0" in value:
        raise ValueError("contains a NUL character")
    if parsed.scheme in ("", *(("synthetic",) if synthetic else ())) or drive:
        if parsed.scheme == "synthetic":
            from kfp_yolo.components.data.synth import synthetic_spec

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
    if value.startswith(REGISTRY_PREFIX):
        which = value.removeprefix(REGISTRY_PREFIX)
        if not _VERSION.match(which):
            raise ValueError("a registry model is registry:champion, registry:latest or "
                             "registry:VERSION (a version published under registry_uri/NAME/)")
        return
    if "://" in value:
        # The plan step fetches a checkpoint (components/training/warm_start.py); a model YAML
        # is read by ultralytics from a path, so only a .pt may be a URI.
        check_uri(value)
        if not value.endswith(".pt"):
            raise ValueError("a model URI names a .pt checkpoint (s3://BUCKET/models/best.pt); "
                             "give a model YAML as a name or a path")
        return
    stem = Path(value).stem.lower()
    for suffix, task in _OTHER_TASKS.items():
        if re.search(rf"-{suffix}(\b|$)", stem):
            raise ValueError(f"{value!r} is a {task} model, and kfp-yolo trains object detectors; "
                             f"use a detection model such as {stem.split('-' + suffix)[0]}.yaml")
    head = _own_head(Path(value)) if Path(value).is_file() else _shipped_head(value)
    if stem.startswith(("rtdetr", "rt-detr")) or head == "RTDETRDecoder":
        raise ValueError(f"{value!r} is an RT-DETR model, which needs ultralytics' RT-DETR "
                         "trainer; kfp-yolo trains YOLO detectors: use a model such as "
                         "yolov8l.yaml")
    if head is not None and head not in _DETECT_HEADS:
        raise ValueError(f"{value!r} is a {head} model, and kfp-yolo trains object detectors "
                         "(a Detect head); use a detection model such as yolo11n.yaml")


def check_dataset_hash(value: object) -> object:
    """Refuses a pinned dataset hash that is not a sha256 in hex (or empty)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        # YAML and --set read a hash of digits only as a number, and its leading zeros are lost
        raise ValueError("YAML read it as a number; quote the hash (dataset_hash: \"0123...\")")
    if isinstance(value, str) and value and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be a sha256 in 64 lower-case hex digits (the Dataset "
                         "artifact's content_hash), or empty")
    return value


def check_local_model(value: str, source: str) -> None:
    """Refuses a model path that is not there, for a run on this machine.

    Not a RunConfig rule: a path may name a file in the image of a cluster's pods, which the
    machine that compiles or submits does not have. A bare YAML name is ultralytics' own.
    """
    if "://" in value and not value.startswith("file://") or value.startswith(REGISTRY_PREFIX):
        return  # the plan step fetches it and says what is wrong in one sentence
    path = Path(value.removeprefix("file://")).expanduser()
    if ("/" in value or "\\" in value or value.endswith(".pt")) and not path.is_file():
        raise UserError(f"{source}: model={value!r} is invalid: there is no such file "
                        f"({path}); give the path of a model YAML or .pt checkpoint, or a model "
                        "ultralytics ships such as yolov5n.yaml.")


def _own_head(path: Path) -> str | None:
    """The output module of the user's own model YAML (None for a .pt: the train step checks
    a checkpoint's task, as reading it here would need torch).

    Raises ValueError for a YAML that is not an ultralytics model (no backbone and head).
    """
    if path.suffix not in (".yaml", ".yml"):
        return None
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if loaded.get("backbone"):
            return str(loaded["head"][-1][-2])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError, KeyError, IndexError,
            TypeError):
        pass
    raise ValueError(f"{str(path)!r} is not an ultralytics model YAML (one with a backbone: "
                     "and a head: list, such as ultralytics' yolov8.yaml); give such a file or a "
                     "model name such as yolov8s.yaml")


@functools.cache
def _ultralytics_models() -> Path | None:
    """ultralytics' model YAML folder, found without importing ultralytics (it loads torch)."""
    spec = importlib.util.find_spec("ultralytics")
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0]) / "cfg" / "models" if locations else None
    return folder if folder is not None and folder.is_dir() else None


def _shipped_head(value: str) -> str | None:
    """The output module of a model YAML ultralytics ships (by bare name, as ultralytics looks
    it up: yolov8s.yaml is yolov8.yaml at scale s); None for a path, a .pt or no ultralytics.

    Raises ValueError for a bare YAML name ultralytics does not ship (it would fail in the
    train step, after the data is prepared).
    """
    folder = _ultralytics_models()
    if folder is None or not value.endswith((".yaml", ".yml")) or "/" in value or "\\" in value:
        return None
    if Path(value).is_file():
        return _own_head(Path(value))  # ultralytics reads a file of that name first
    stem = Path(value).stem
    if stem in (f"yolov{d}{x}6" for x in "nsmlx" for d in (5, 8)):  # the old P6 names
        stem = re.sub(r"(\d+)([nslmx])6(.+)?$", r"\1\2-p6\3", stem)
    suffix = Path(value).suffix
    for name in (stem + suffix, re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", stem) + suffix):
        found = sorted(folder.rglob(name))
        if found:
            import yaml

            try:
                return str(yaml.safe_load(found[0].read_text())["head"][-1][-2])
            except (KeyError, IndexError, TypeError, yaml.YAMLError):
                return None
    raise ValueError(f"ultralytics has no model YAML named {value!r}; use one it ships, such as "
                     "yolov5n.yaml, yolov8s.yaml or yolo11m.yaml, or a path to your own")
