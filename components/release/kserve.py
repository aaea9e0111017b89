"""kserve: the InferenceService (serving.kserve.io/v1beta1) that serves a published version.

KServe's Triton runtime reads the version's `triton/` folder (a Triton model repository) as its
storageUri. The runtime is named, not auto-selected: an OpenVINO runtime would win an ONNX
model at a higher priority. `runtimeVersion` pins the Triton image tag, because a TensorRT plan
loads only in a Triton built on the TensorRT that built the plan. The predictor's service
account carries the storage credentials: a Secret annotated `serving.kserve.io/s3-endpoint`
and `serving.kserve.io/s3-usehttps` listed under it (k8s/serving). The GPU placement is the
planner's: required node affinity `nvidia.com/gpu.memory` Gt need-1 MiB and the tolerations of
the smallest pool that has that much.

(No `from __future__ import annotations` in component modules: KFP reads the annotations.)
"""

from dataclasses import dataclass, field

from kfp_yolo.components.k8s.pools import Pool, node_affinity, required_node_affinity
from kfp_yolo.components.release.triton import ONNX_SUFFIX, TRT_SUFFIX

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "RUNTIME", "ServingSettings",
           "build_inferenceservice", "pool_tolerations", "served_model"]

GROUP, VERSION, KIND, PLURAL = "serving.kserve.io", "v1beta1", "InferenceService", \
    "inferenceservices"
API_VERSION = f"{GROUP}/{VERSION}"
RUNTIME = "kserve-tritonserver"
"""KServe's ClusterServingRuntime for Triton (formats tensorrt 8, onnx 1, triton 2)."""
MODEL_FORMAT = {"name": "triton", "version": "2"}
"""The storageUri is a Triton model repository (ONNX and, when built, TensorRT models)."""
VERSION_ANNOTATION = "kfp-yolo.io/version"
LABELS = {"app.kubernetes.io/name": "kfp-yolo", "app.kubernetes.io/component": "serving"}


@dataclass(frozen=True)
class ServingSettings:
    """Where and how the model is served (the config's serving_* keys)."""

    namespace: str = "kubeflow-user"
    runtime_version: str = "25.08-py3"
    model_format: str = "onnx"
    """Which model of the repository Triton loads: onnx (`<name>`) or tensorrt (`<name>-trt`)."""
    service_account: str = "kfp-yolo-serving"
    gpu_memory_mib: int = 15360
    """0 = no GPU: Triton runs the ONNX model on CPU."""
    tolerations: tuple[dict, ...] = field(default_factory=tuple)
    cpu: str = "1"
    memory: str = "4Gi"


def pool_tolerations(pools: list[Pool], gpu_memory_mib: int) -> tuple[dict, ...]:
    """The tolerations of the smallest pool with at least that much GPU memory (none fits: ())."""
    fitting = sorted((p for p in pools if p.gpu_memory_mib >= gpu_memory_mib),
                     key=lambda p: p.gpu_memory_mib)
    return tuple(dict(t) for t in fitting[0].tolerations) if fitting and gpu_memory_mib else ()


def served_model(name: str, settings: ServingSettings) -> str:
    """The raw detector the InferenceService loads (ultralytics' client puts it in the URL);
    every other client calls the end-to-end model `name`, which runs this detector."""
    return name + (TRT_SUFFIX if settings.model_format == "tensorrt" else ONNX_SUFFIX)


def _resources(settings: ServingSettings) -> dict:
    requests = {"cpu": settings.cpu, "memory": settings.memory}
    limits = {"memory": settings.memory}
    if settings.gpu_memory_mib:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = "1"
    return {"requests": requests, "limits": limits}


def build_inferenceservice(name: str, version: str, storage_uri: str,
                           settings: ServingSettings) -> dict:
    """The InferenceService for one published version (a plain dict, kubectl-appliable).

    Args:
        name: the model's name: the InferenceService's and the Triton model's.
        version: the published version (an annotation: what is being served).
        storage_uri: the version's triton/ folder, as KServe reads it (s3://...).
        settings: namespace, runtime version, service account, placement.
    """
    predictor: dict = {
        "serviceAccountName": settings.service_account,
        "minReplicas": 1,
        "model": {
            "modelFormat": dict(MODEL_FORMAT),
            "runtime": RUNTIME,
            "runtimeVersion": settings.runtime_version,
            "protocolVersion": "v2",
            "storageUri": storage_uri,
            # Only the chosen model: a plan from another TensorRT would fail to load, and a
            # model that fails at start-up stops Triton (--exit-on-error), ONNX model and all.
            "args": ["--model-control-mode=explicit",
                     f"--load-model={served_model(name, settings)}", f"--load-model={name}",
                     # plans are built version-compatible (components/tensorrt.py)
                     *(["--backend-config=tensorrt,version-compatible=true"]
                       if settings.model_format == "tensorrt" else [])],
            "resources": _resources(settings),
        },
    }
    if settings.gpu_memory_mib:
        predictor["affinity"] = {"nodeAffinity": required_node_affinity(
            node_affinity(settings.gpu_memory_mib))}
        if settings.tolerations:
            predictor["tolerations"] = [dict(t) for t in settings.tolerations]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": settings.namespace, "labels": dict(LABELS),
                     "annotations": {VERSION_ANNOTATION: version}},
        "spec": {"predictor": predictor},
    }
