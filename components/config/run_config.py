"""One typed config: the pipeline's parameters, a config file and `--set KEY=VALUE` share its keys.

Validated once at the edge (CLI, file, UI parameters) and passed down as a frozen value.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kfp_yolo.components.config import hpo_keys as hk
from kfp_yolo.components.config import serving_keys as sk
from kfp_yolo.components.config import warm_start_keys as wk
from kfp_yolo.components.config.values import (
    URI_FORMS,
    check_detection_model,
    check_uri,
    default_lr0,
)
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s import names as k8s_names
from kfp_yolo.components.k8s.quotas import PRIORITY_CLASSES
from kfp_yolo.components.launchers import LAUNCHERS
from kfp_yolo.components.spec import CACHES, OPTIMIZERS, PRECISIONS, check_batch_shape
from kfp_yolo.components.tensorrt import TRT_PRECISIONS

__all__ = ["COMPILE_TIME", "RunConfig", "check_detection_model", "check_uri", "format_error",
           "parameter_specs", "run_time_values"]

Precision = Literal[PRECISIONS]
Optimizer = Literal[OPTIMIZERS]
Launcher = Literal[LAUNCHERS]
TrtPrecision = Literal[TRT_PRECISIONS]
Cache = Literal[CACHES]
Objective = Literal["smallest", "cost", "time"]

COMPILE_TIME = frozenset({"launcher", "image", "procs_per_node", "job_timeout_s",
                          "queue_timeout_s"})
"""Keys the compiled pipeline fixes (`kfp-yolo compile --set/--config`), not UI parameters:
launcher decides whether the train step's own pod holds the GPUs; image is every step's
container image; procs_per_node is that pod's GPU count; job_timeout_s and queue_timeout_s
give the train step's pod its deadline. Every other key is a run-time parameter."""
_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$")
_MEMORY = re.compile(r"^[0-9]+(Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$")
# Which name rules each key's value must follow (a queue is also a label value).
_NAME_RULES = {
    "name": (k8s_names.MODEL_NAME,),
    "namespace": (k8s_names.DNS_LABEL,),
    "queue": (k8s_names.DNS_SUBDOMAIN, k8s_names.LABEL_VALUE),
    "storage_secret": (k8s_names.DNS_SUBDOMAIN,),
    "service_account": (k8s_names.DNS_SUBDOMAIN,),
    "priority_class": (k8s_names.DNS_SUBDOMAIN,),
    "mlflow_secret": (k8s_names.DNS_SUBDOMAIN,),
}
_OPTIONAL_NAMES = ("queue", "service_account", "priority_class", "mlflow_secret")


class RunConfig(BaseModel):
    """Everything one training run needs: a config file's keys, `--set` keys and, for the keys
    not in COMPILE_TIME, the pipeline's parameters of the same name."""

    name: str = Field("demo", description="Run name: 1-40 lower-case letters, digits or '-', "
                      "starting and ending with a letter or digit; names the model in the "
                      "registry.")
    dataset_uri: str = Field("synthetic://shapes", description="YOLO dataset, or a COCO JSON, "
                             "NDJSON or Pascal VOC export (detected from its files): "
                             "s3://bucket/prefix, minio://bucket/prefix, file:///path, a path, "
                             "or synthetic://shapes.")
    model: str = wk.MODEL_FIELD  # a YAML, a .pt (path or URI) or a registry version
    imgsz: int = Field(128, ge=32, le=4096, description="Training and export image size in pixels: "
                       "a multiple of 32 from 32 to 4096.")
    epochs: int = Field(20, ge=1, le=10000, description="Training epochs: 1 to 10000.")
    batch: int = Field(16, ge=0, description="Global batch size over all GPUs/processes, a "
                       "multiple of nodes x procs_per_node; 0 = auto: the largest of 64, 32, "
                       "16, ... in total that fits the GPU memory (ultralytics' nominal batch "
                       "64, so the same optimisation).")
    precision: Precision = Field("amp", description="amp (fp16 autocast + GradScaler), fp32 or "
                                 "bf16 (needs an Ampere or newer GPU); on a CPU training runs in "
                                 "fp32 whatever is set.")
    optimizer: Optimizer = Field("AdamW", description="SGD, Adam, AdamW, or auto (ultralytics' "
                                 "choice by run length).")
    lr0: float = Field(0, ge=0, le=1, description="Initial learning rate, 0 to 1; 0 = the "
                       "optimizer's default (from scratch: SGD 0.01, Adam 0.001, AdamW 0.004; "
                       "fine-tuning a checkpoint: ultralytics' own, SGD 0.01, Adam and AdamW "
                       "0.001); ignored by optimizer auto.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for the split and training: 0 to "
                      "4294967295.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of images held out for "
                                "validation when the dataset has no val split: more than 0, "
                                "less than 1.")
    workers: int = Field(0, ge=0, le=64, description="Dataloader workers per training process, "
                         "0 to 64; 0 = from the CPUs the training pod really has (its CPU limit) "
                         "divided by its processes.")
    cache: Cache = Field("auto", description="Image cache of the training dataloader: disk "
                         "(decoded .npy files beside the images), ram (per process), none, or "
                         "auto (disk for the job's own copy of the dataset when it fits, else "
                         "none).")
    nodes: int = Field(1, ge=1, le=1024, description="Training nodes, 1 to 1024 (PyTorchJob "
                       "Master + Workers; locally, torchrun node groups on loopback).")
    procs_per_node: int = Field(1, ge=1, le=64, description="GPUs per node on a cluster; "
                                "processes per node locally: 1 to 64.")
    launcher: Launcher = Field("local", description="local (torchrun on this machine), "
                               "pytorchjob (Kubeflow PyTorchJob), trainjob (Kubeflow Trainer v2 "
                               "TrainJob) or auto (TrainJob if the cluster serves it, else "
                               "PyTorchJob; what cluster configs use).")
    min_map50_95: float = Field(0.5, ge=0, le=1, description="Quality gate, 0 to 1: export and "
                                "publish only when validation mAP50-95 reaches this.")
    onnx_opset: int = Field(17, ge=11, le=22, description="ONNX opset for export: 11 to 22.")
    onnx_dynamic: bool = Field(True, description="Export ONNX with a dynamic batch axis: true or "
                               "false.")
    onnx_tolerance: float = Field(1e-2, ge=1e-6, le=1, description="Largest allowed max |onnx - "
                                  "torch| of the raw outputs, 1e-6 to 1; export fails above it.")
    trt_precision: TrtPrecision = Field("fp16", description="TensorRT engine precision: fp16, "
                                        "int8 (calibrated on the validation split) or fp32.")
    checkpoint_uri: str = Field("", description="Where every epoch's checkpoint goes (s3://, "
                                "minio://, file:// or a path); empty = beside the train step's "
                                "weights: the work folder locally, the pipeline root on a "
                                "cluster.")
    registry_uri: str = Field("", description="Model registry root (s3://, minio://, file:// or "
                              "a path); empty = do not publish.")
    image: str = Field("ghcr.io/kfp-yolo/kfp-yolo:0.1.0", description="Container image of every "
                       "step and training pod: a reference without spaces.")
    namespace: str = Field("kubeflow-user", description="Namespace of the training job: 1-63 "
                           "lower-case letters, digits or '-'.")
    queue: str = Field("", description="Kueue LocalQueue name for the training job, at most 63 "
                       "lower-case letters, digits, '-' or '.'; empty = none.")
    storage_secret: str = Field("kfp-yolo-storage", description="Name of the Kubernetes Secret "
                                "with AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: "
                                "1-253 lower-case letters, digits, '-' or '.'.")
    workload_priority_class: str = Field("", description="Kueue WorkloadPriorityClass of the "
                                         "training job (needs a queue): kfp-yolo-interactive or "
                                         "kfp-yolo-retraining; empty = none.")
    service_account: str = Field("", description="Service account of the training pods, 1-253 "
                                 "lower-case letters, digits, '-' or '.'; `kfp-yolo submit` also "
                                 "runs the step pods as it (in the Kubeflow UI that is the run's "
                                 "own service account field); empty = the namespace's default.")
    step_cpu: str = Field("2", description="CPU request of the steps without a GPU (prepare, "
                          "plan, export, publish, and train unless launcher is local), e.g. 2 or "
                          "500m.")
    step_memory: str = Field("8Gi", description="Memory request of the steps without a GPU, "
                             "e.g. 8Gi or 512Mi.")
    job_timeout_s: int = Field(7 * 86400, gt=0, description="Longest the training job may run "
                               "once started (activeDeadlineSeconds), in seconds: more than 0.")
    queue_timeout_s: int = Field(0, ge=0, description="Longest wait for Kueue to admit the "
                                 "training job, in seconds; 0 = as long as the queue takes.")
    priority_class: str = Field("", description="Kubernetes PriorityClass of the training pods, "
                                "1-253 lower-case letters, digits, '-' or '.' (launcher "
                                "pytorchjob only: a TrainJob takes its runtime's); empty = the "
                                "cluster's default.")
    backoff_limit: int = Field(3, ge=0, le=100, description="A PyTorchJob's runPolicy."
                               "backoffLimit, 0 to 100: failures before the job fails (a "
                               "restart resumes from the checkpoint); the Training Operator v1 "
                               "does not count the recreated pods of restartPolicy ExitCode "
                               "(kubeflow/trainer#2045), so job_timeout_s bounds those; a "
                               "TrainJob takes its runtime's.")
    ttl_after_finished_s: int = Field(86400, ge=0, description="Seconds a finished PyTorchJob "
                                      "stays for inspection before the operator deletes it: 0 "
                                      "or more; a TrainJob stays until its owner is deleted.")
    # registries and serving (components/config/serving_keys.py holds their checks and descriptions)
    model_registry_address: sk.RegistryAddress = sk.REGISTRY_ADDRESS_FIELD
    model_registry_token_path: sk.TokenPath = sk.TOKEN_PATH_FIELD
    serving_runtime_version: sk.RuntimeVersion = sk.RUNTIME_VERSION_FIELD
    serving_format: sk.ServingFormat = sk.FORMAT_FIELD
    serving_service_account: sk.ServiceAccount = sk.SERVICE_ACCOUNT_FIELD
    serving_gpu_memory_mib: int = sk.GPU_MEMORY_FIELD
    deploy: sk.Deploy = sk.DEPLOY_FIELD
    deploy_timeout_s: int = sk.DEPLOY_TIMEOUT_FIELD
    objective: Objective = Field("smallest", description="How the plan step chooses the node "
                                 "pool: smallest (the least GPU memory that runs the largest "
                                 "batch), cost (the lowest cost per epoch, from the catalog's "
                                 "hourly_price and the estimated or measured images/s) or time "
                                 "(the shortest epoch).")
    deadline_h: float = Field(0.0, ge=0, le=8760, description="Hours the whole training may "
                              "take (0 = no deadline, up to 8760): cost and time only choose "
                              "pools whose estimated run finishes within it.")
    mlflow_secret: str = Field("", description="Kubernetes Secret with MLflow credentials "
                               "(MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                               "MLFLOW_TRACKING_PASSWORD) the training pods read; a Secret name, "
                               "or empty = none (MLflow logging needs MLFLOW_TRACKING_URI in the "
                               "train step's environment).")
    # hyperparameter search before the training (components/hpo; checks in hpo_keys.py)
    hpo_trials: int = hk.TRIALS_FIELD
    hpo_epochs: int = hk.EPOCHS_FIELD
    hpo_fraction: float = hk.FRACTION_FIELD
    hpo_parallel: int = hk.PARALLEL_FIELD
    hpo_algorithm: hk.HpoAlgorithm = hk.ALGORITHM_FIELD
    hpo_budget_gpu_h: float = hk.BUDGET_FIELD
    hpo_lr0: str = hk.LR0_FIELD
    hpo_momentum: str = hk.MOMENTUM_FIELD
    hpo_weight_decay: str = hk.WEIGHT_DECAY_FIELD
    hpo_mosaic: str = hk.MOSAIC_FIELD
    hpo_scale: str = hk.SCALE_FIELD
    hpo_hsv: str = hk.HSV_FIELD
    hpo_imgsz: str = hk.IMGSZ_FIELD
    # fine-tuning and lineage (components/training/warm_start.py; checks in warm_start_keys.py)
    warm_start: wk.WarmStart = wk.WARM_START_FIELD
    dataset_hash: wk.DatasetHash = wk.DATASET_HASH_FIELD

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
            raise ValueError(f"give the dataset: {URI_FORMS} or synthetic://shapes")
        check_uri(value, synthetic=True)
        return value

    @field_validator("checkpoint_uri", "registry_uri")
    @classmethod
    def _store_uri_scheme(cls, value: str) -> str:
        if value:
            check_uri(value)
        return value

    @field_validator(*_NAME_RULES)
    @classmethod
    def _kubernetes_name(cls, value: str, info: Any) -> str:
        if value or info.field_name not in _OPTIONAL_NAMES:
            for rule in _NAME_RULES[info.field_name]:
                if problem := rule.problem(value):
                    raise ValueError(problem)
        return value

    @field_validator("image")
    @classmethod
    def _image_is_a_reference(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("give a container image reference such as "
                             "ghcr.io/kfp-yolo/kfp-yolo:0.1.0")
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
        wk.check_model(value)
        return value

    @field_validator("priority_class")
    @classmethod
    def _priority_class_needs_a_pytorchjob(cls, value: str, info: ValidationInfo) -> str:
        if value and info.data.get("launcher") not in ("pytorchjob", None):
            raise ValueError("only a PyTorchJob sets a pod PriorityClass per run (a TrainJob's "
                             "runtimePatches cannot); set launcher=pytorchjob, or use "
                             "workload_priority_class")
        return value

    @model_validator(mode="after")
    def _registry_model_needs_a_registry(self) -> RunConfig:
        wk.check_registry_model(self)
        return self

    @model_validator(mode="after")
    def _batch_divides(self) -> RunConfig:
        try:
            check_batch_shape(self.batch, self.world_size,
                              shape=f" (nodes x procs_per_node = {self.nodes} x "
                                    f"{self.procs_per_node})")
        except UserError as exc:
            raise ValueError(str(exc).rstrip(".")) from None
        return self

    @field_validator("serving_format")
    @classmethod
    def _plan_loads_in_the_runtime(cls, value: str, info: ValidationInfo) -> str:
        if value == "tensorrt" and "serving_runtime_version" in info.data:
            from kfp_yolo.components.release.tensorrt_runtimes import plan_problem

            verdict, sentence = plan_problem(info.data["serving_runtime_version"])
            if verdict == "refuse":
                raise ValueError(sentence)
        return value

    @field_validator("model_registry_address", "deploy")
    @classmethod
    def _release_keys_are_used(cls, value: str, info: ValidationInfo) -> str:
        # registry_uri comes earlier in the class, so info.data has it (unless it was refused)
        if "registry_uri" in info.data:
            sk.check_release_keys(info.field_name, value, info.data["registry_uri"])
        return value

    @field_validator(*hk.RANGE_KEYS, mode="before")
    @classmethod
    def _hpo_range(cls, value: str, info: ValidationInfo) -> str:
        return hk.check_range_key(info.field_name, value)

    @model_validator(mode="after")
    def _hpo_search(self) -> RunConfig:
        hk.check_search(self)
        return self

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node

    @property
    def learning_rate(self) -> float:
        """lr0, or the optimizer's default when lr0 is 0 (not set): ultralytics' own for a
        fine-tune, kfp-yolo's from-scratch value otherwise (values.FINE_TUNE_LR0)."""
        return self.lr0 or default_lr0(self.optimizer, fine_tune=wk.fine_tunes(self.model))


def run_time_values(cfg: RunConfig) -> dict[str, Any]:
    """cfg's run-time keys (the pipeline's parameters) as JSON values."""
    return {key: value for key, value in cfg.model_dump(mode="json").items()
            if key not in COMPILE_TIME}


def parameter_specs() -> list[tuple[str, type, Any, str]]:
    """(name, python type, default, description) of every run-time key (pipeline parameter),
    in RunConfig's order."""
    specs = []
    for name, field in RunConfig.model_fields.items():
        if name in COMPILE_TIME:
            continue
        py_type = {bool: bool, int: int, float: float}.get(field.annotation, str)
        specs.append((name, py_type, field.default, field.description or ""))
    return specs


def format_error(err: ValidationError, source: str) -> str:
    """The one sentence for a refused config: `SOURCE: key=value is invalid: why.`"""
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

