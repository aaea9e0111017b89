"""`kfp-yolo serve render [--config FILE] [--set KEY=VALUE] [--version V] [--pools FILE]`.

Prints the InferenceService (serving.kserve.io/v1beta1, KServe's Triton runtime) that serves a
published version of the config's model, as YAML that `kubectl apply -f -` takes; the deploy
step creates the same object. The version: `--version V`, else the one `latest` names when the
registry can be read from here (a local registry, or S3 credentials in the environment), else
the placeholder VERSION, said in the header.
"""

from __future__ import annotations

import argparse
import os
import sys

import yaml

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.config.run_config import RunConfig
from kfp_yolo.components.k8s.pools import load_pools
from kfp_yolo.components.registries import serving_uri
from kfp_yolo.components.release.kserve import (
    ServingSettings,
    build_inferenceservice,
    pool_tolerations,
)
from kfp_yolo.pipelines.published import latest_version, registry_root

__all__ = ["PLACEHOLDER", "render_service", "serving_settings", "run"]

PLACEHOLDER = "VERSION"


def serving_settings(cfg: RunConfig, pools_path: str | None = None) -> ServingSettings:
    """The config's serving keys, with the tolerations of the smallest pool that fits."""
    return ServingSettings(
        namespace=cfg.namespace, runtime_version=cfg.serving_runtime_version,
        model_format=cfg.serving_format,
        service_account=cfg.serving_service_account, gpu_memory_mib=cfg.serving_gpu_memory_mib,
        tolerations=pool_tolerations(load_pools(pools_path), cfg.serving_gpu_memory_mib))


def _latest_version(cfg: RunConfig) -> tuple[str, str]:
    """(version, note): the `latest` pointer's version when it can be read here."""
    from kfp_yolo.components import storage

    remote = storage.is_remote(cfg.registry_uri)
    if remote and not os.environ.get("AWS_ACCESS_KEY_ID"):
        return PLACEHOLDER, (f"storageUri names {PLACEHOLDER}: no S3 credentials here to read "
                             "`latest`; pass --version")
    latest = latest_version(cfg)
    if latest is None:
        return PLACEHOLDER, (f"storageUri names {PLACEHOLDER}: nothing is published under "
                             f"{cfg.registry_uri} yet; pass --version")
    return latest, f"the version `latest` names ({latest})"


def render_service(cfg: RunConfig, version: str | None = None, *,
                   pools_path: str | None = None) -> tuple[dict, str]:
    """The InferenceService for a version of cfg's model and a note on which version."""
    registry_root(cfg, "serve")
    if version:
        from kfp_yolo.components import storage
        from kfp_yolo.components.release.publish import finished_version

        # readable here: a typo, a missing or a changed file is caught now
        if not storage.is_remote(cfg.registry_uri) or os.environ.get("AWS_ACCESS_KEY_ID"):
            finished_version(cfg.registry_uri, cfg.name, version,
                             command="kfp-yolo serve render --version")
        note = f"version {version}"
    else:
        version, note = _latest_version(cfg)
    uri = serving_uri(f"{cfg.registry_uri.rstrip('/')}/{cfg.name}/{version}/triton")
    return build_inferenceservice(cfg.name, version, uri, serving_settings(cfg, pools_path)), note


def run(args: argparse.Namespace) -> int:
    """Prints the manifest to stdout."""
    cfg = load_config(args.config, args.overrides)
    service, note = render_service(cfg, args.version, pools_path=args.pools)
    model = service["spec"]["predictor"]["model"]
    header = (f"# InferenceService for config {args.config or '(built-in defaults)'}; {note}.\n"
              f"# Runtime {model['runtime']}:{model['runtimeVersion']} (a TensorRT plan needs the "
              "Triton of the TensorRT that built it); the service account "
              f"{cfg.serving_service_account!r} must carry the S3 Secret (k8s/serving).\n")
    if cfg.serving_format == "tensorrt":
        from kfp_yolo.components.release.tensorrt_runtimes import plan_problem

        verdict, sentence = plan_problem(cfg.serving_runtime_version)
        if verdict == "unknown":  # a known mismatch was refused when the config was read
            header += f"# Before applying: {sentence}.\n"
    sys.stdout.write(header + yaml.safe_dump(service, sort_keys=False, width=100))
    return 0
