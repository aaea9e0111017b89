"""One typed config: the pipeline's parameters, a config file and `--set KEY=VALUE` share its keys.

Validated once at the edge (CLI, file, UI parameters) and passed down as a frozen value.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.launchers import LAUNCHERS
from kfp_yolo.components.pools import is_dns_label
from kfp_yolo.components.quotas import PRIORITY_CLASSES
from kfp_yolo.components.spec import CACHES, OPTIMIZERS, PRECISIONS, check_batch_shape

__all__ = ["RunConfig", "check_detection_model", "check_uri", "load_config", "parse_overrides",
           "parameter_specs"]

Precision = Literal[PRECISIONS]
Optimizer = Literal[OPTIMIZERS]
Launcher = Literal[LAUNCHERS]
TrtPrecision = Literal["fp16", "int8", "fp32"]
Cache = Literal[CACHES]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
# Kubernetes names and the resource quantities both KFP and Kubernetes accept.
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")
_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$")
_MEMORY = re.compile(r"^[0-9]+(Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# ultralytics tells a model's task by these suffixes of its YAML or checkpoint name.
_OTHER_TASKS = {"cls": "classification", "seg": "segmentation", "pose": "pose",
                "obb": "oriented-box"}
_STORE_SCHEMES = ("s3", "minio", "file")
_URI_FORMS = "s3://BUCKET/PREFIX, minio://BUCKET/PREFIX, file:///PATH or a path"


def check_uri(value: str, *, synthetic: bool = False) -> None:
    """Refuses a URI whose scheme no step can read or write; ValueError says which and why."""
    parsed = urlparse(value)
    forms = _URI_FORMS + (" or synthetic://shapes" if synthetic else "")
    drive = len(parsed.scheme) == 1 and value[1:3] in (":\\", ":/")  # C:\data parses as a scheme
    if "\0" in value:
        raise ValueError("contains a NUL character")
    if parsed.scheme in ("", *(("synthetic",) if synthetic else ())) or drive:
        if parsed.scheme == "synthetic":
            from kfp_yolo.components.synth import synthetic_spec

            synthetic_spec(value)  # raises UserError, turned into a ValueError by the caller
        return
    if parsed.scheme not in _STORE_SCHEMES:
        raise ValueError(f"unsupported scheme {parsed.scheme!r}; use {forms}")
    if parsed.scheme == "file" and (parsed.netloc not in ("", "localhost") or not parsed.path):
        raise ValueError("a file URI is file:///ABSOLUTE/PATH (three slashes)")
    if parsed.scheme != "file" and not parsed.netloc:
        raise ValueError(f"no bucket; write {parsed.scheme}://BUCKET/PREFIX")


def check_detection_model(value: str) -> None:
    """Refuses a model of another task (yolov8n-cls.yaml): kfp-yolo trains detectors."""
    stem = Path(value).stem.lower()
    for suffix, task in _OTHER_TASKS.items():
        if re.search(rf"-{suffix}(\b|$)", stem):
            raise ValueError(f"{value!r} is a {task} model, and kfp-yolo trains object detectors; "
                             f"use a detection model such as {stem.split('-' + suffix)[0]}.yaml")


class RunConfig(BaseModel):
    """Everything one training run needs; each field is a pipeline parameter of the same name."""

    name: str = Field("demo", description="Run name: lower-case letters, digits and '-'; "
                      "names the model in the registry and the PyTorchJob.")
    dataset_uri: str = Field("synthetic://shapes", description="YOLO dataset: s3://bucket/prefix, "
                             "minio://bucket/prefix, file:///path, a path, or synthetic://shapes.")
    model: str = Field("yolov5n.yaml", description="Ultralytics model YAML (e.g. yolov5l.yaml, "
                       "trained from scratch) or a .pt checkpoint path or URI.")
    imgsz: int = Field(128, ge=32, le=4096, description="Training and export image size in pixels "
                       "(a multiple of 32).")
    epochs: int = Field(20, ge=1, le=10000, description="Training epochs.")
    batch: int = Field(16, ge=0, description="Global batch size over all GPUs/processes; 0 = "
                       "auto: the largest of 64, 32, 16, ... in total that fits the GPU memory "
                       "(ultralytics' nominal batch 64, so the same optimisation).")
    precision: Precision = Field("amp", description="amp (fp16 autocast + GradScaler), fp32 or "
                                 "bf16; on a CPU training runs in fp32 whatever is set.")
    optimizer: Optimizer = Field("AdamW", description="SGD, Adam, AdamW, or auto (ultralytics' "
                                 "choice by run length).")
    lr0: float = Field(0.004, gt=0, le=1, description="Initial learning rate (ignored by auto); "
                       "the default suits AdamW from scratch, use 0.01 for SGD.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for the split and training.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of images held out for "
                                "validation when the dataset has no val split.")
    workers: int = Field(0, ge=0, le=64, description="Dataloader workers per training process; "
                         "0 = from the CPUs the training pod really has (its CPU limit) divided "
                         "by its processes.")
    cache: Cache = Field("auto", description="Image cache of the training dataloader: disk "
                         "(decoded .npy files beside the images), ram (per process), none, or "
                         "auto (disk for the job's own copy of the dataset when it fits, else "
                         "none).")
    nodes: int = Field(1, ge=1, le=1024, description="Training nodes (PyTorchJob Master + Workers; "
                       "locally, torchrun node groups on loopback).")
    procs_per_node: int = Field(1, ge=1, le=64, description="GPUs per node on a cluster; "
                                "processes per node locally.")
    launcher: Launcher = Field("local", description="local (torchrun on this machine), "
                               "pytorchjob (Kubeflow PyTorchJob), trainjob (Kubeflow Trainer v2 "
                               "TrainJob) or auto (TrainJob if the cluster serves it, else "
                               "PyTorchJob; what cluster configs use).")
    min_map50_95: float = Field(0.5, ge=0, le=1, description="Quality gate: export and publish "
                                "only when validation mAP50-95 reaches this.")
    onnx_opset: int = Field(17, ge=11, le=22, description="ONNX opset for export.")
    onnx_dynamic: bool = Field(True, description="Export ONNX with a dynamic batch axis.")
    onnx_tolerance: float = Field(1e-2, gt=0, description="Largest allowed max |onnx - torch| of "
                                  "the raw outputs; export fails above it.")
    trt_precision: TrtPrecision = Field("fp16", description="TensorRT engine precision.")
    checkpoint_uri: str = Field("", description="Where every epoch's checkpoint goes (s3://, "
                                "minio://, a path); empty = under the run's work folder.")
    registry_uri: str = Field("", description="Model registry root (s3://, minio://, a path); "
                              "empty = do not publish.")
    image: str = Field("ghcr.io/kfp-yolo/kfp-yolo:0.1.0", description="Container image of every "
                       "step and training pod.")
    namespace: str = Field("kubeflow-user", description="Namespace of the training job.")
    queue: str = Field("", description="Kueue LocalQueue name for the training job; empty = none.")
    storage_secret: str = Field("kfp-yolo-storage", description="Name of the Kubernetes Secret "
                                "with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.")
    workload_priority_class: str = Field("", description="Kueue WorkloadPriorityClass of the "
                                         "training job (needs a queue): kfp-yolo-interactive or "
                                         "kfp-yolo-retraining; empty = none.")
    service_account: str = Field("", description="Service account of the run's step pods (the "
                                 "train step creates the training job with it) and of the "
                                 "training pods; empty = the namespace's default.")
    step_cpu: str = Field("2", description="CPU request of the steps without a GPU (prepare, "
                          "plan, export, publish, and train unless launcher is local), e.g. 2 or "
                          "500m.")
    step_memory: str = Field("8Gi", description="Memory request of the steps without a GPU, "
                             "e.g. 8Gi or 512Mi.")
    job_timeout_s: int = Field(7 * 86400, gt=0, description="Longest the training job may run "
                               "once started (activeDeadlineSeconds), in seconds.")
    queue_timeout_s: int = Field(0, ge=0, description="Longest wait for Kueue to admit the "
                                 "training job, in seconds; 0 = as long as the queue takes.")
    mlflow_secret: str = Field("", description="Kubernetes Secret with MLflow credentials "
                               "(MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                               "MLFLOW_TRACKING_PASSWORD) the training pods read; a Secret name, "
                               "or empty = none (MLflow logging needs MLFLOW_TRACKING_URI in the "
                               "train step's environment).")

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, value: Any, info: Any) -> Any:
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and annotation in (int, float):
            raise ValueError(f"{value} is a boolean; give a number")
        if annotation is bool and not isinstance(value, bool):
            raise ValueError("give true or false")
        if isinstance(value, float) and annotation in (int, float) and not math.isfinite(value):
            raise ValueError("give a finite number")
        return value

    @field_validator("dataset_uri")
    @classmethod
    def _dataset_uri_scheme(cls, value: str) -> str:
        if not value:
            raise ValueError(f"give the dataset: {_URI_FORMS} or synthetic://shapes")
        return _uri(value, synthetic=True)

    @field_validator("checkpoint_uri", "registry_uri")
    @classmethod
    def _store_uri_scheme(cls, value: str) -> str:
        return _uri(value) if value else value

    @field_validator("namespace")
    @classmethod
    def _namespace_is_dns_label(cls, value: str) -> str:
        if not is_dns_label(value):
            raise ValueError("not a valid Kubernetes name; a namespace is 1-63 lower-case "
                             "letters, digits or '-', starting and ending with a letter or digit")
        return value

    @field_validator("queue", "storage_secret", "mlflow_secret")
    @classmethod
    def _object_name(cls, value: str, info: Any) -> str:
        if (value or info.field_name == "storage_secret") and not _DNS_SUBDOMAIN.match(value):
            raise ValueError("not a valid Kubernetes name; use lower-case letters, digits, '-' "
                             "and '.', starting and ending with a letter or digit")
        return value

    @field_validator("image")
    @classmethod
    def _image_is_a_reference(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("give a container image reference such as "
                             "ghcr.io/kfp-yolo/kfp-yolo:0.1.0")
        return value

    @field_validator("name")
    @classmethod
    def _name_is_dns_label(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be 1-40 lower-case letters, digits or '-', starting and ending "
                             "with a letter or digit")
        return value

    @field_validator("service_account")
    @classmethod
    def _service_account_is_a_name(cls, value: str) -> str:
        if value and not _K8S_NAME.match(value):
            raise ValueError("must be a Kubernetes name (at most 63 lower-case letters, digits, "
                             "'-' or '.'), such as kfp-yolo-pipeline")
        return value

    @field_validator("workload_priority_class")
    @classmethod
    def _priority_class_is_generated(cls, value: str, info: ValidationInfo) -> str:
        if value and value not in PRIORITY_CLASSES:
            raise ValueError(f"must be one of the classes `kfp-yolo quotas` generates: "
                             f"{', '.join(PRIORITY_CLASSES)} (or empty)")
        if value and not info.data.get("queue"):
            raise ValueError("Kueue reads it only on queued jobs; set queue too, or leave "
                             "workload_priority_class empty")
        return value

    @field_validator("step_cpu", "step_memory", mode="before")
    @classmethod
    def _number_is_a_quantity(cls, value: Any) -> Any:
        # YAML and --set read `step_cpu: 4` as a number; a quantity is a string.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("step_cpu")
    @classmethod
    def _cpu_is_a_quantity(cls, value: str) -> str:
        if not _CPU.match(value) or not float(value.rstrip("m")):
            raise ValueError("must be a positive CPU quantity such as 2, 0.5 or 500m")
        return value

    @field_validator("step_memory")
    @classmethod
    def _memory_is_a_quantity(cls, value: str) -> str:
        if not _MEMORY.match(value) or not int(value.rstrip("KMGTPEi")):
            raise ValueError("must be a positive memory quantity such as 8Gi or 512Mi")
        return value

    @field_validator("imgsz")
    @classmethod
    def _imgsz_multiple_of_32(cls, value: int) -> int:
        if value % 32:
            raise ValueError(f"must be a multiple of 32 (the model's largest stride); try "
                             f"{max(32, round(value / 32) * 32)}")
        return value

    @field_validator("model")
    @classmethod
    def _model_is_yaml_or_pt(cls, value: str) -> str:
        if not value.endswith((".yaml", ".yml", ".pt")):
            raise ValueError("must be a model YAML such as yolov5l.yaml or a .pt checkpoint")
        check_detection_model(value)
        return value

    @model_validator(mode="after")
    def _batch_divides(self) -> RunConfig:
        try:
            check_batch_shape(self.batch, self.world_size,
                              shape=f" (nodes x procs_per_node = {self.nodes} x "
                                    f"{self.procs_per_node})")
        except UserError as exc:
            raise ValueError(str(exc).rstrip(".")) from None
        return self

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node


def _uri(value: str, *, synthetic: bool = False) -> str:
    try:
        check_uri(value, synthetic=synthetic)
    except UserError as exc:  # the synthetic:// parser's sentence, without its own URI prefix
        raise ValueError(str(exc).split(": ", 1)[-1].rstrip(".")) from None
    return value


def parameter_specs() -> list[tuple[str, type, Any, str]]:
    """(name, python type, default, description) of every pipeline parameter, in order."""
    specs = []
    for name, field in RunConfig.model_fields.items():
        py_type = {bool: bool, int: int, float: float}.get(field.annotation, str)
        specs.append((name, py_type, field.default, field.description or ""))
    return specs


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "config"
    if first["type"] == "extra_forbidden":
        known = ", ".join(RunConfig.model_fields)
        return f"{source}: unknown key {key!r}; known keys are: {known}."
    value = repr(first.get("input"))
    value = value if len(value) <= 80 else value[:77] + "..."
    message = first["msg"].removeprefix("Value error, ")
    if first["loc"]:
        return f"{source}: {key}={value} is invalid: {message}."
    return f"{source}: {message}."


def _coerce(raw: str) -> Any:
    """A --set value in YAML's scalar syntax: 16 -> int, 0.5 -> float, true -> bool."""
    try:
        return yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turns ['epochs=3', 'model=yolov5s.yaml'] into a dict; a malformed item is a UserError."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r} is not KEY=VALUE; write for example --set epochs=3.")
        overrides[key.strip()] = _coerce(raw.strip())
    return overrides


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Reads a YAML config file (optional) and applies --set overrides; errors are UserErrors."""
    values: dict[str, Any] = {}
    source = "built-in defaults"
    if path is not None:
        if not str(path).strip():
            raise UserError("--config is empty; give the config file's path.")
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise UserError(f"{path}: cannot read the config file ({exc.strerror}).") from None
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[:exc.start].count(b"\n") + 1
            raise UserError(f"{path}: line {line} is not UTF-8 text; save the config file as "
                            "UTF-8.") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or exc
            raise UserError(f"{path}:{where} is not valid YAML ({' '.join(str(problem).split())})"
                            "; fix the syntax.") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: a config file must be a mapping of KEY: VALUE, "
                            f"got {type(loaded).__name__}.")
        for key in loaded:
            if not isinstance(key, str):
                raise UserError(f"{path}: key {key!r} is not a name; keys are the names of "
                                f"config settings, e.g. epochs: 3.")
        values.update(loaded)
    set_values = parse_overrides(overrides or [])
    values.update(set_values)
    try:
        return RunConfig(**values)
    except ValidationError as err:
        first_key = str(err.errors()[0]["loc"][0]) if err.errors()[0]["loc"] else ""
        where = "--set" if first_key in set_values else source
        if where == source and path is not None and first_key:
            where = _locate_key(Path(path), first_key)
        raise UserError(_format_error(err, where)) from None


def _locate_key(path: Path, key: str) -> str:
    """'file:LINE' of a top-level key in a YAML file, or just the file when it is not found."""
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if re.match(rf"^{re.escape(key)}\s*:", line):
            return f"{path}:{number}"
    return str(path)
