"""Run-time placement and cluster settings: the step functions the compiled DAG wires together.

The steps are plain functions under their KFP wrappers, so they are called here with real
KFP artifacts on local paths: prepare's class count, the plan step reading the catalog that
compile put into the pipeline, the train step handing the cluster settings to a real launcher,
and `submit` giving the run its service account (tests/integration/test_submit.py, with the
stand-in KFP API).
"""

import json
import os

import pytest
import yaml
from kfp.dsl import Dataset, Markdown
from train_step import cluster_settings_of_train_step

from kfp_yolo.components.data.synth import CLASS_NAMES
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.pools import (
    default_pools_path,
    load_pools,
    node_affinity,
)
from kfp_yolo.components.steps import (
    plan_resources_component,
    prepare_dataset_component,
)
from kfp_yolo.pipelines.cli import main
from kfp_yolo.pipelines.training import NODE_POOLS

EDGE_TOLERATION = {"key": "example.com/edge", "operator": "Equal", "value": "yes",
                   "effect": "NoSchedule"}
TINY_RUN = dict(model="yolov5n.yaml", imgsz=64, batch=8, nodes=1, procs_per_node=1,
                precision="amp", optimizer="SGD", nc=len(CLASS_NAMES),
                report=Markdown(uri=os.devnull))  # the plan's report: not looked at here


def _catalog_with(tmp_path, *extra: dict, keep: bool = True):
    data = yaml.safe_load(default_pools_path().read_text()) if keep else {"pools": []}
    data["pools"].extend(extra)
    path = tmp_path / "node-pools.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _compiled_catalog(tmp_path, pools_path) -> str:
    output = tmp_path / "pipeline.yaml"
    assert main(["compile", "-o", str(output), "--pools", str(pools_path)]) == 0
    pipeline = next(yaml.safe_load_all(output.read_text()))
    return pipeline["root"]["inputDefinitions"]["parameters"][NODE_POOLS]["defaultValue"]


def test_prepare_returns_the_class_count(tmp_path):
    dataset = Dataset(name="dataset", uri=str(tmp_path / "dataset"), metadata={})
    report = Markdown(name="report", uri=str(tmp_path / "report.md"), metadata={})
    outputs = prepare_dataset_component("synthetic://shapes?images=16&imgsz=64", 0, 0.25,
                                        dataset, report)
    assert outputs.nc == len(CLASS_NAMES) == len(
        yaml.safe_load((tmp_path / "dataset" / "data.yaml").read_text())["names"])
    assert outputs.content_hash == dataset.metadata["content_hash"]


def test_a_pool_added_in_git_reaches_the_plan_step(tmp_path):
    edge = {"name": "edge-2g", "gpu_product": "NVIDIA-Jetson", "gpu_memory_mib": 2048,
            "gpus_per_node": 1, "max_nodes": 2, "flavor": "gpu-2g",
            "tolerations": [EDGE_TOLERATION]}
    assert "edge-2g" not in {p.name for p in load_pools()}  # not in the image's copy
    text = _compiled_catalog(tmp_path, _catalog_with(tmp_path, edge))
    assert "\n" not in text and json.loads(text)["pools"][-1]["name"] == "edge-2g"

    outputs = plan_resources_component(**TINY_RUN, node_pools=text)

    assert outputs.pool == "edge-2g"  # the smallest pool that fits the tiny run
    assert outputs.tolerations == [EDGE_TOLERATION]
    need = outputs.min_gpu_memory_mib  # the NodeAffinity KFP's driver puts on the pods, as is
    assert outputs.node_affinity == {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": [str(need - 1)]}]}]}}
    for value in (outputs.node_affinity, outputs.tolerations):  # KFP passes them as JSON
        assert json.loads(json.dumps(value)) == value


def test_a_run_that_fits_no_pool_is_refused_by_the_plan_step(tmp_path):
    tiny = {"name": "tiny-512m", "gpu_product": "X", "gpu_memory_mib": 512, "gpus_per_node": 1,
            "max_nodes": 1, "flavor": "gpu-tiny"}
    text = _compiled_catalog(tmp_path, _catalog_with(tmp_path, tiny, keep=False))
    with pytest.raises(UserError, match=r"the largest node pool, 'tiny-512m', has 512 MiB"):
        plan_resources_component(**TINY_RUN, node_pools=text)


def test_the_cluster_settings_reach_the_launcher(tmp_path, monkeypatch):
    cluster = cluster_settings_of_train_step(
        tmp_path, monkeypatch, launcher="pytorchjob", queue="kfp-yolo",
        workload_priority_class="kfp-yolo-retraining", service_account="kfp-yolo-pipeline",
        queue_timeout_s=600, tolerations=[EDGE_TOLERATION])
    assert (cluster.namespace, cluster.queue, cluster.storage_secret) == (
        "team-a", "kfp-yolo", "team-s3")
    assert cluster.workload_priority_class == "kfp-yolo-retraining"
    assert cluster.service_account == "kfp-yolo-pipeline"
    assert (cluster.active_deadline_s, cluster.queue_timeout_s) == (7200, 600)
    assert cluster.node_affinity == tuple(node_affinity(12000))
    assert cluster.tolerations == (EDGE_TOLERATION,)


def test_a_bf16_run_is_planned_only_on_a_gpu_that_runs_bf16():
    from kfp_yolo.components.k8s.pools import catalog_json

    text = catalog_json()
    amp = plan_resources_component(**TINY_RUN, node_pools=text)
    bf16 = plan_resources_component(**{**TINY_RUN, "precision": "bf16"}, node_pools=text)
    products = {p.name: p.gpu_product for p in load_pools()}
    assert products[amp.pool] in ("Quadro-RTX-4000", "Tesla-T4")  # the smallest pool fits
    assert products[bf16.pool] not in ("Quadro-RTX-4000", "Tesla-T4")  # Turing: no bf16
