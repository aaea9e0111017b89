"""The config keys of registries and serving, as typed fields RunConfig lists at its end.

Each key is an Annotated type (its check) and a Field (its default and description), kept here
so that config.py stays one screenful per concern. Credentials are never keys: the Model
Registry's token is a file the pod mounts, S3 credentials a Secret the service account names.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import AfterValidator, Field

from kfp_yolo.components.k8s import names as k8s_names

__all__ = ["DEPLOY_FIELD", "DEPLOY_TIMEOUT_FIELD", "DEPLOY_TIMEOUT_MAX", "Deploy",
           "FORMAT_FIELD", "GPU_MEMORY_FIELD",
           "REGISTRY_ADDRESS_FIELD", "RUNTIME_VERSION_FIELD", "RegistryAddress",
           "RuntimeVersion", "SERVICE_ACCOUNT_FIELD", "ServiceAccount", "ServingFormat",
           "TOKEN_PATH_FIELD", "TokenPath", "check_release_keys"]

DEFAULT_RUNTIME_VERSION = "25.08-py3"
DEPLOY_TIMEOUT_MAX = 86400
"""deploy_timeout_s's upper bound; also the deploy pod's deadline (less its margin)."""
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _address(value: str) -> str:
    if not value:
        return value
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("give the Model Registry's URL, e.g. "
                         "http://model-registry-service.kubeflow.svc.cluster.local:8080, or "
                         "leave it empty")
    if parsed.path.strip("/") or parsed.query:
        raise ValueError("give only scheme, host and port; the client adds "
                         "/api/model_registry/v1alpha3 itself")
    return value.rstrip("/")


def _token_path(value: str) -> str:
    if value and not value.startswith("/"):
        raise ValueError("give the absolute path of a mounted token file (never the token), "
                         "or leave it empty for the pod's service-account token")
    return value


def _runtime_version(value: str) -> str:
    if not _TAG.match(value):
        raise ValueError(f"give a Triton image tag such as {DEFAULT_RUNTIME_VERSION}")
    return value


def _service_account(value: str) -> str:
    # the one table of name rules (components/k8s/names.py): a service account is a subdomain
    if problem := k8s_names.DNS_SUBDOMAIN.problem(value):
        raise ValueError(f"must be a Kubernetes name such as kfp-yolo-serving: {problem}")
    return value


def check_release_keys(key: str, value: str, registry_uri: str) -> None:
    """Refuses a release key (deploy, model_registry_address) that would be ignored: publish
    runs only with a registry_uri, and both the Model Registry and deploy take what publish
    wrote (without one, the run trained for hours and then skipped them in silence)."""
    if registry_uri:
        return
    if key == "deploy" and value == "kserve":
        raise ValueError("it serves the version publish writes, and publish needs "
                         "registry_uri; set registry_uri (e.g. s3://models/kfp-yolo) or "
                         "deploy=none")
    if key == "model_registry_address" and value:
        raise ValueError("it registers the version publish writes, and "
                         "publish needs registry_uri; set registry_uri (e.g. "
                         "s3://models/kfp-yolo) or leave model_registry_address empty")


RegistryAddress = Annotated[str, AfterValidator(_address)]
TokenPath = Annotated[str, AfterValidator(_token_path)]
RuntimeVersion = Annotated[str, AfterValidator(_runtime_version)]
ServiceAccount = Annotated[str, AfterValidator(_service_account)]
Deploy = Literal["none", "kserve"]
ServingFormat = Literal["onnx", "tensorrt"]

REGISTRY_ADDRESS_FIELD = Field(
    "", description="Kubeflow Model Registry URL (http:// or https://, host and port) where "
    "publish registers each version (needs registry_uri); empty = not registered there. "
    "MLflow's registry is used when MLFLOW_TRACKING_URI is set.")
TOKEN_PATH_FIELD = Field(
    "", description="Absolute path of a file holding the Model Registry's bearer token; empty "
    "= $KF_PIPELINES_SA_TOKEN_PATH, else the pod's service-account token.")
RUNTIME_VERSION_FIELD = Field(
    DEFAULT_RUNTIME_VERSION, description="Triton image tag of KServe's kserve-tritonserver "
    "runtime (the InferenceService's runtimeVersion); a TensorRT plan loads only in a Triton "
    "of the TensorRT that built it.")
SERVICE_ACCOUNT_FIELD = Field(
    "kfp-yolo-serving", description="Service account of the InferenceService's predictor: the "
    "one bound to the Secret with the S3 credentials and KServe's serving.kserve.io/s3-* "
    "annotations; 1-253 lower-case letters, digits, '-' or '.'.")
GPU_MEMORY_FIELD = Field(
    15360, ge=0, le=10_000_000, description="GPU memory (MiB) a serving node needs "
    "(node affinity nvidia.com/gpu.memory Gt this - 1, one GPU), 0 to 10000000; 0 = serve on "
    "CPU; with deploy kserve, at most the largest GPU memory of the node-pool catalog.")
FORMAT_FIELD = Field(
    "onnx", description="Model Triton serves from the version's repository: onnx (any recent "
    "Triton) or tensorrt (the plan; needs an engine built and serving_runtime_version's "
    "TensorRT to be the one that built it).")
DEPLOY_FIELD = Field(
    "none", description="After publish: none, or kserve (needs registry_uri; create or update "
    "the InferenceService of the new version and wait until it is Ready).")
DEPLOY_TIMEOUT_FIELD = Field(
    900, ge=30, le=DEPLOY_TIMEOUT_MAX, description="Longest the deploy step waits for the "
    "InferenceService to be Ready, in seconds (30-86400).")
