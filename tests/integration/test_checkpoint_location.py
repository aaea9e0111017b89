"""Checkpoints of a cluster job go to object storage (issue 18): with checkpoint_uri empty,
beside the train step's weights artifact under the pipeline root, the very place `kfp-yolo job
render` prints, never a folder inside the step's own pod.

The train step is the real function of components/steps.py, given artifacts at the URIs the
render uses as placeholders; only the launcher it would start is replaced by one that keeps
the TrainSpec it is handed.
"""

from __future__ import annotations

import pytest
from kfp import dsl
from kube_fakes import render
from train_step import train_step_arguments

from kfp_yolo.components import launchers
from kfp_yolo.components.spec import TrainSpec, default_checkpoint_uri
from kfp_yolo.components.steps import train_component
from kfp_yolo.pipelines.cmd_job import PIPELINE_ROOT


class _Handed(Exception):
    """Stops the step once the launcher has the spec."""


def _rendered_spec(job: dict) -> TrainSpec:
    if job["kind"] == "TrainJob":
        args = job["spec"]["trainer"]["args"]
    else:
        args = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"][
            "containers"][0]["args"]
    return TrainSpec.from_json(args[args.index("--spec") + 1].replace("$$", "$"))


def _step_spec(monkeypatch, rendered: TrainSpec, launcher: str) -> TrainSpec:
    handed: list[TrainSpec] = []

    class Keep:
        kind = launcher

        def launch(self, spec: TrainSpec) -> None:
            handed.append(spec)
            raise _Handed

    monkeypatch.setattr(launchers, "get_launcher", lambda name, **settings: Keep())
    dataset = dsl.Dataset(name="dataset", uri=rendered.dataset_uri)
    weights = dsl.Model(name="weights", uri=rendered.output_uri)
    with pytest.raises(_Handed):
        train_component(
            dataset=dataset, weights=weights,
            report=dsl.HTML(name="report", uri=f"{rendered.output_uri}-report"),
            metrics=dsl.Metrics(name="metrics", uri=f"{rendered.output_uri}-metrics"),
            **train_step_arguments(
                run_id=rendered.run_id, model=rendered.model, imgsz=rendered.imgsz,
                epochs=rendered.epochs, batch=rendered.batch, precision=rendered.precision,
                optimizer=rendered.optimizer, lr0=rendered.lr0, seed=rendered.seed,
                workers=rendered.workers, cache=rendered.cache, nodes=rendered.nodes,
                procs_per_node=rendered.procs_per_node, launcher=launcher, checkpoint_uri="",
                image="ghcr.io/kfp-yolo/kfp-yolo:0.1.0", namespace="kubeflow-user",
                storage_secret="kfp-yolo-storage", job_timeout_s=3600,
                min_gpu_memory_mib=40960))
    (spec,) = handed
    return spec


@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_the_train_step_checkpoints_where_job_render_shows(capsys, monkeypatch, launcher):
    _, job = render(capsys, "--launcher", launcher, "--set", "checkpoint_uri=")
    rendered = _rendered_spec(job)
    assert rendered.checkpoint_uri == f"{PIPELINE_ROOT}/demo/train/checkpoints"

    step = _step_spec(monkeypatch, rendered, launcher)

    assert step.checkpoint_uri == rendered.checkpoint_uri
    assert step.output_uri == rendered.output_uri
    assert step.checkpoint_uri.startswith("minio://")  # object storage, not the step's disk


def test_a_configured_checkpoint_uri_is_kept(capsys):
    _, job = render(capsys, "--launcher", "trainjob", "--set", "checkpoint_uri=s3://ckpt/runs")
    assert _rendered_spec(job).checkpoint_uri == "s3://ckpt/runs"


@pytest.mark.parametrize(("output", "expected"), [
    ("minio://mlpipeline/v2/artifacts/p/run-1/train-component/weights",
     "minio://mlpipeline/v2/artifacts/p/run-1/train-component/checkpoints"),
    ("s3://bucket/a/weights/", "s3://bucket/a/checkpoints"),
    ("/work/pipeline_root/run/train-component/weights",
     "/work/pipeline_root/run/train-component/checkpoints"),
])
def test_default_checkpoint_uri_is_beside_the_weights(output, expected):
    assert default_checkpoint_uri(output) == expected
