"""The registries a run is configured with, each adapter imported only when it is configured.

Apart from the package's shared types (registries/__init__) so that the adapters, which import
those types, and the one function that imports the adapters form no cycle.
"""

from __future__ import annotations

from typing import Any

from kfp_yolo.components.registries import TIMEOUT_S

__all__ = ["open_registries"]


def open_registries(*, mlflow_tracking_uri: str = "", model_registry_address: str = "",
                    model_registry_token_path: str = "", storage_key: str = "",
                    author: str = "kfp-yolo", timeout_s: float = TIMEOUT_S) -> list[Any]:
    """The configured registries, each adapter imported only when it is configured.

    Args:
        mlflow_tracking_uri: MLFLOW_TRACKING_URI ('' = no MLflow).
        model_registry_address: Kubeflow Model Registry's URL ('' = none).
        model_registry_token_path: a file holding its bearer token ('' = the client's default:
            $KF_PIPELINES_SA_TOKEN_PATH, else the pod's service-account token).
        storage_key: the name of the Secret (KServe data connection) that reads the storage.
    """
    registries: list[Any] = []
    if mlflow_tracking_uri:
        from kfp_yolo.components.registries.mlflow_registry import MLflowRegistry

        registries.append(MLflowRegistry(mlflow_tracking_uri))  # bounded by its HTTP settings
    if model_registry_address:
        from kfp_yolo.components.registries.kubeflow_registry import KubeflowModelRegistry

        registries.append(KubeflowModelRegistry(
            model_registry_address, token_path=model_registry_token_path,
            storage_key=storage_key, author=author, timeout_s=timeout_s))
    return registries
