"""Kubeflow Model Registry (REST API v1alpha3) through its Python client, `model-registry`.

A published version becomes a RegisteredModel `name`, a ModelVersion `version` whose custom
properties are the metrics, the dataset's hash and where the version lives, and a
ModelArtifact per served format: `name` (format onnx 1) and, when an engine was built,
`name-trt` (format tensorrt, the TensorRT version that built it). Each artifact's URI is the
version's Triton model repository (what KServe's storageUri takes), its storage key the Secret
that reads it, its source the pipeline run (kind kfp, class pipelinerun, id, name, group = the
namespace). The champion is the RegisteredModel's custom property `champion`.

The client's `register_model` refuses a version that exists, so a retry after a failure
between creating the version and its artifact could never finish: here each piece is looked
up first and only what is missing is created. Every call runs on our own event loop under one
deadline (the client's `async_runner` hook), so a registry that hangs fails the publish in
bounded time; the client is imported only when model_registry_address is set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kfp_yolo.components.bounded import Bound, run_bounded
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.redact import register as register_secret
from kfp_yolo.components.registries import CHAMPION, Release, registry_fault
from kfp_yolo.components.release.lineage import flat_lineage

__all__ = ["KubeflowModelRegistry", "TRT_SUFFIX"]

TRT_SUFFIX = "-trt"


class KubeflowModelRegistry:
    """Registers published versions in a Kubeflow Model Registry."""

    label = "Kubeflow Model Registry"

    def __init__(self, address: str, *, token_path: str = "", storage_key: str = "",
                 author: str = "kfp-yolo", timeout_s: float = 60.0):
        self.address = address
        self.storage_key = storage_key or None
        self.timeout_s = timeout_s
        self._connected = False
        token = None
        if token_path:
            try:
                token = Path(token_path).read_text().strip()
                register_secret(token)
            except OSError as exc:
                raise UserError(f"model_registry_token_path {token_path!r} cannot be read "
                                f"({exc.strerror}); mount the token file there or leave the "
                                "key empty for the pod's service-account token.") from None
        self.client = self._call(lambda: self._connect(author, token))
        self._connected = True

    def _connect(self, author: str, token: str | None) -> Any:
        import warnings

        from model_registry import ModelRegistry

        # The address carries scheme and port; the client infers is_secure and port from it.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client = ModelRegistry(self.address, author=author, user_token=token,
                                   async_runner=self._run)
        if any("token is missing" in str(w.message) for w in caught):
            # the client's own warning points at its source line; this one says what to do
            logging.getLogger(__name__).warning(
                "the Kubeflow Model Registry at %s gets no bearer token: "
                "model_registry_token_path is empty and neither $KF_PIPELINES_SA_TOKEN_PATH nor "
                "a service-account token was found", self.address)
        return client

    def _run(self, coro: Any) -> Any:
        # the client opens and closes its HTTP session per call too
        return run_bounded(coro, Bound(timeout_s=self.timeout_s))

    def _call(self, work: Any) -> Any:
        """work(), with every failure of the client or the network as one Fault sentence."""
        import aiohttp
        from model_registry.exceptions import StoreError
        from mr_openapi.exceptions import (
            ApiException,
            ForbiddenException,
            NotFoundException,
            OpenApiException,
            UnauthorizedException,
        )

        try:
            return work()
        except (UnauthorizedException, ForbiddenException) as exc:
            raise UserError(f"{self.label} at {self.address} refused the token ({exc.status} "
                            f"{exc.reason}); check model_registry_token_path or the service "
                            "account's access to the registry.") from None
        except NotFoundException as exc:
            if self._connected:
                raise registry_fault(self.label, self.address, exc,
                                     f"HTTP 404: {getattr(exc.data, 'message', '')}") from exc
            # model-registry 0.3.18 calls /api/model_registry/v1 (kubeflow/hub#2992).
            raise UserError(f"{self.label} at {self.address} does not serve "
                            "/api/model_registry/v1/registered_models (404); check the address, "
                            "or the server predates the v1 API the model-registry 0.3.18 "
                            "client speaks.") from None
        except StoreError as exc:
            if "token" in str(exc):
                raise UserError(f"{self.label} at {self.address}: {exc}; set "
                                "model_registry_token_path to a mounted token file.") from None
            raise registry_fault(self.label, self.address, exc) from exc
        except ApiException as exc:  # the status and the server's message, not the headers
            message = getattr(exc.data, "message", None) or exc.body or ""
            raise registry_fault(self.label, self.address, exc,
                                 f"HTTP {exc.status} {exc.reason}: {message}") from exc
        except (OpenApiException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise registry_fault(self.label, self.address, exc) from exc

    def _artifact(self, release: Release, model_format: str, format_version: str) -> dict:
        source = release.source
        return {
            "model_format_name": model_format, "model_format_version": format_version,
            "storage_key": self.storage_key, "model_source_kind": "kfp",
            "model_source_class": "pipelinerun",
            "model_source_id": source.run_id if source else None,
            "model_source_name": source.run_name if source else None,
            "model_source_group": source.namespace if source else None,
        }

    def _metadata(self, release: Release) -> dict[str, Any]:
        metadata: dict[str, Any] = {k: float(v) for k, v in release.metrics.items()}
        metadata.update({"kfp_yolo_uri": release.uri, "dataset_hash": release.dataset_hash})
        metadata.update(flat_lineage(release.lineage, sep="_"))  # custom properties
        return metadata

    def _register(self, release: Release) -> None:
        from model_registry.types import ModelArtifact

        client, name, version = self.client, release.name, release.version
        uri = release.serving_uri or release.uri
        found = client.get_registered_model(name) and client.get_model_version(name, version)
        if not found:
            client.register_model(
                name, uri, version=version, version_description=f"kfp-yolo {release.uri}",
                metadata=self._metadata(release), **self._artifact(release, "onnx", "1"))
            found = client.get_model_version(name, version)
        wanted = {name: ("onnx", release.formats.get("onnx", "1"))}
        if "tensorrt" in release.formats:
            wanted[name + TRT_SUFFIX] = ("tensorrt", release.formats["tensorrt"])
        for artifact_name, (model_format, format_version) in wanted.items():
            if client.async_runner(client._api.get_model_artifact_by_params(
                    artifact_name, found.id)) is None:
                # What register_model does for its one artifact; the client has no public call
                # that adds an artifact to an existing version.
                artifact = ModelArtifact(name=artifact_name, uri=uri,
                                         **self._artifact(release, model_format, format_version))
                client.async_runner(client._api.upsert_model_version_artifact(artifact, found.id))

    def _champion(self, release: Release) -> None:
        model = self.client.get_registered_model(release.name)
        if model is None or self.client.get_model_version(release.name, release.version) is None:
            raise UserError(f"{self.label} at {self.address} has no version "
                            f"{release.version!r} of {release.name!r}; it was published before "
                            "the registry was configured, promote another version.")
        if (model.custom_properties or {}).get(CHAMPION) != release.version:
            model.custom_properties = {**(model.custom_properties or {}),
                                       CHAMPION: release.version}
            self.client.update(model)

    def register(self, release: Release, *, champion: bool) -> None:
        """Registers what is missing of release; makes it the champion when asked."""
        self._call(lambda: self._register(release))
        if champion:
            self._call(lambda: self._champion(release))

    def promote(self, release: Release) -> None:
        """Makes an already registered version the champion."""
        self._call(lambda: self._champion(release))
