"""The release steps behind the quality gate: export-onnx, build-tensorrt, publish, deploy."""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Metrics, Model, Output

__all__ = ["build_tensorrt_component", "deploy_component", "export_onnx_component",
           "publish_component"]


def export_onnx_component(
    weights: Input[Model],
    imgsz: int,
    opset: int,
    dynamic: bool,
    tolerance: float,
    onnx_model: Output[Model],
    parity: Output[Metrics],
) -> NamedTuple("ExportOutputs", [("max_abs_diff", float)]):
    """KFP step: model.onnx into the Model artifact; fails when parity exceeds the tolerance."""
    from kfp_yolo.components.boundary import install

    install()  # before any work: a failure from here on becomes the step's record
    import os
    from collections import namedtuple

    from kfp_yolo.components.errors import JobFailed
    from kfp_yolo.components.export_onnx import export_onnx, head_of, parity_check

    os.makedirs(onnx_model.path, exist_ok=True)
    best = os.path.join(weights.path, "best.pt")
    onnx_path = export_onnx(best, os.path.join(onnx_model.path, "model.onnx"), imgsz=imgsz,
                            opset=opset, dynamic=dynamic)
    result = parity_check(best, onnx_path, imgsz=imgsz)
    parity.log_metric("max_abs_diff", result.max_abs_diff)
    parity.log_metric("tolerance", tolerance)
    head = head_of(onnx_path)
    onnx_model.metadata.update({"opset": opset, "dynamic": dynamic, "imgsz": imgsz,
                                "max_abs_diff": result.max_abs_diff, "head": head,
                                "output_shape": list(result.output_shape)})
    print(f"ONNX parity: max |onnx - torch| = {result.max_abs_diff:.3g} (tolerance {tolerance})")
    if result.max_abs_diff > tolerance:
        raise JobFailed(f"ONNX parity check failed: max |onnx - torch| = "
                        f"{result.max_abs_diff:.3g} exceeds onnx_tolerance={tolerance}; check the "
                        "opset or raise the tolerance.")
    return namedtuple("ExportOutputs", ["max_abs_diff"])(result.max_abs_diff)


def build_tensorrt_component(
    onnx_model: Input[Model],
    dataset: Input[Dataset],
    imgsz: int,
    precision: str,
    engine: Output[Model],
    latency: Output[Metrics],
) -> NamedTuple("TrtOutputs", [("status", str), ("reason", str)]):
    """KFP step: model.engine and its latency, or status `skipped` with the reason."""
    from kfp_yolo.components.boundary import install

    install()  # before any work: a failure from here on becomes the step's record
    import os
    from collections import namedtuple

    from kfp_yolo.components.tensorrt import availability, build_engine, measure_latency

    outputs = namedtuple("TrtOutputs", ["status", "reason"])
    reason = availability()
    if reason:
        print(f"TensorRT build skipped: {reason}")
        engine.metadata["status"] = "skipped"
        latency.log_metric("built", 0)
        return outputs("skipped", reason)
    os.makedirs(engine.path, exist_ok=True)
    max_batch = 8
    path = build_engine(os.path.join(onnx_model.path, "model.onnx"),
                        os.path.join(engine.path, "model.engine"), imgsz=imgsz,
                        precision=precision, max_batch=max_batch,
                        calibration_images=os.path.join(dataset.path, "images", "val"))
    for batch in (1, max_batch):
        milliseconds = measure_latency(path, imgsz=imgsz, batch=batch)
        latency.log_metric(f"latency_ms_batch{batch}", round(milliseconds, 4))
        latency.log_metric(f"images_per_s_batch{batch}", round(batch * 1000 / milliseconds, 1))
    latency.log_metric("built", 1)
    import tensorrt  # the plan loads only in a Triton of this TensorRT: publish records it

    engine.metadata.update({"status": "built", "precision": precision,
                            "tensorrt_version": tensorrt.__version__,
                            "version_compatible": True})
    return outputs("built", "")


def publish_component(
    weights: Input[Model],
    onnx_model: Input[Model],
    engine: Input[Model],
    dataset: Input[Dataset],
    metrics: Input[Metrics],
    registry_uri: str,
    name: str,
    version: str,
    model_registry_address: str = "",
    model_registry_token_path: str = "",
    storage_key: str = "",
    run_id: str = "",
    run_name: str = "",
    namespace: str = "",
    dataset_uri: str = "",
    config: dict = {},  # noqa: B006 (KFP reads the default; the step never changes it)
    image: str = "",
) -> str:
    """KFP step: publishes the gated model; the version URI, or '' when registry_uri is ''.

    The version holds a Triton model repository (triton/), and is registered in MLflow's
    registry when MLFLOW_TRACKING_URI is set and in the Kubeflow Model Registry when
    model_registry_address is; `latest` moves after both. Its lineage (dataset_uri and the
    dataset's content hash, the parent checkpoint the weights name, the checked config and its
    hash, the package version, image) goes into lineage.json, the model card and both registries.
    """
    from kfp_yolo.components.boundary import install

    install()  # before any work: a failure from here on becomes the step's record
    import json
    import os
    import tempfile
    from pathlib import Path

    from kfp_yolo.components.registries import RunSource
    from kfp_yolo.components.registries.configured import open_registries
    from kfp_yolo.components.release.lineage import LINEAGE_FILE, build_lineage, flat_lineage
    from kfp_yolo.components.release.publish import publish
    from kfp_yolo.components.release.serving_check import CHECK_JSON, expected_boxes
    from kfp_yolo.components.release.triton import build_repository

    if not registry_uri:
        print("publish skipped: registry_uri is empty")
        return ""
    files = {"best.pt": Path(weights.path) / "best.pt",
             "model.onnx": Path(onnx_model.path) / "model.onnx",
             "data.yaml": Path(dataset.path) / "data.yaml"}
    engine_file = Path(engine.path) / "model.engine"
    if engine.metadata.get("status") == "built" and engine_file.is_file():
        files["model.engine"] = engine_file
    # KFP keeps Metrics values in the artifact's metadata, not in its file.
    values = {k: v for k, v in metrics.metadata.items() if isinstance(v, int | float)}
    lineage = build_lineage(dataset_uri=dataset_uri,
                            dataset_hash=str(dataset.metadata.get("content_hash", "")),
                            parent=dict(weights.metadata.get("parent", {})), name=name,
                            config=dict(config), image=image)
    card_lineage = {k.removeprefix("lineage."): v for k, v in flat_lineage(lineage).items()}
    training = {k: v for k, v in weights.metadata.items() if k != "search"}
    metadata = {"metrics": values, "lineage": card_lineage, "training": training,
                "dataset": dict(dataset.metadata), "onnx": dict(onnx_model.metadata),
                "tensorrt": dict(engine.metadata) or {"status": "not built"}}
    if weights.metadata.get("search"):  # the search's trials and the values it chose
        metadata["search"] = dict(weights.metadata["search"])
    # The environment is read here, at the step's edge: KFP's MLflow plugin injects it.
    registries = open_registries(mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
                                 model_registry_address=model_registry_address,
                                 model_registry_token_path=model_registry_token_path,
                                 storage_key=storage_key)
    with tempfile.TemporaryDirectory() as tmp:
        metrics_file = os.path.join(tmp, "metrics.json")
        with open(metrics_file, "w") as handle:
            json.dump(values, handle, indent=1, sort_keys=True)
        files["metrics.json"] = Path(metrics_file)
        files[LINEAGE_FILE] = Path(tmp) / LINEAGE_FILE
        files[LINEAGE_FILE].write_text(json.dumps(lineage, indent=1, sort_keys=True))
        # One validation image and ultralytics' boxes for it: deploy checks the served ones.
        val = sorted(p for p in (Path(dataset.path) / "images" / "val").glob("*")
                     if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".webp"})
        if val:
            check = expected_boxes(files["model.onnx"], val[0],
                                   imgsz=int(onnx_model.metadata.get("imgsz", 640)))
            check["image"] = f"serving_check{val[0].suffix.lower()}"
            files[check["image"]] = val[0]
            Path(tmp, CHECK_JSON).write_text(json.dumps(check))
            files[CHECK_JSON] = Path(tmp, CHECK_JSON)
        triton = Path(tmp) / "triton"
        models = build_repository(
            triton, name, files["model.onnx"], files.get("model.engine"),
            tensorrt_version=str(engine.metadata.get("tensorrt_version", "")))
        print(f"Triton model repository: {', '.join(models)}")
        uri = publish(registry_uri=registry_uri, name=name, version=version, files=files,
                      metadata=metadata, folders={"triton": triton}, registries=registries,
                      source=RunSource(run_id, run_name, namespace) if run_id else None,
                      dataset_hash=str(dataset.metadata.get("content_hash", "")),
                      tensorrt_version=str(engine.metadata.get("tensorrt_version", "")),
                      lineage=lineage)
    parent = lineage["parent"]
    print(f"published {uri}" + "".join(f"; registered in {r.label}" for r in registries)
          + f"; lineage: parent {parent['kind']} {parent['version'] or parent['source']}, "
            f"dataset {lineage['dataset']['content_hash'][:12]}")
    return uri


def deploy_component(
    published_uri: str,
    name: str,
    namespace: str,
    serving_runtime_version: str,
    serving_format: str,
    serving_service_account: str,
    serving_gpu_memory_mib: int,
    deploy_timeout_s: int,
    node_pools: str,
) -> str:
    """KFP step: creates or updates the InferenceService of the published version, waits until
    it is Ready; returns its URL ('' when nothing was published)."""
    from kfp_yolo.components.boundary import install

    install()  # before any work: a failure from here on becomes the step's record
    from kfp_yolo.components import storage
    from kfp_yolo.components.errors import UserError
    from kfp_yolo.components.k8s.pools import load_pools_text
    from kfp_yolo.components.registries import serving_uri
    from kfp_yolo.components.release.deploy import deploy_inferenceservice
    from kfp_yolo.components.release.kserve import (
        ServingSettings,
        build_inferenceservice,
        pool_tolerations,
        served_model,
    )
    from kfp_yolo.components.release.publish import verify_version

    if not published_uri:
        print("deploy skipped: nothing was published (registry_uri is empty)")
        return ""
    # a version changed or emptied since publish is never served
    verify_version(published_uri, fix="publish it again; nothing was deployed")
    pools = load_pools_text(node_pools, source="the node_pools parameter")
    settings = ServingSettings(
        namespace=namespace, runtime_version=serving_runtime_version,
        model_format=serving_format, service_account=serving_service_account,
        gpu_memory_mib=serving_gpu_memory_mib,
        tolerations=pool_tolerations(pools, serving_gpu_memory_mib))
    repository = f"{published_uri.rstrip('/')}/triton"
    if not storage.exists(f"{repository}/{served_model(name, settings)}/config.pbtxt"):
        raise UserError(f"{repository} has no {serving_format} model (no TensorRT engine is "
                        "built without a GPU pool); set serving_format: onnx.")
    if serving_format == "tensorrt":
        from kfp_yolo.components.release.tensorrt_runtimes import plan_problem

        verdict, sentence = plan_problem(serving_runtime_version)
        if verdict == "refuse":
            raise UserError(f"serving_format tensorrt: {sentence}.")
        if verdict == "unknown":
            print(f"deploy: {sentence}.")
    service = build_inferenceservice(name, published_uri.rstrip("/").rsplit("/", 1)[-1],
                                     serving_uri(repository), settings)
    url = deploy_inferenceservice(service, timeout_s=deploy_timeout_s)
    from kfp_yolo.components.release.serving_check import CHECK_JSON, check_served

    check_uri = f"{published_uri.rstrip('/')}/{CHECK_JSON}"
    if url and storage.exists(check_uri):  # versions published before the check have none
        import json

        expected = json.loads(storage.read_bytes(check_uri))
        image = storage.read_bytes(f"{published_uri.rstrip('/')}/{expected['image']}")
        compared = check_served(url.rstrip("/"), name, image, expected)
        print(f"deploy: the served boxes of {expected['image']} are ultralytics' "
              f"({compared} compared)")
    return url
