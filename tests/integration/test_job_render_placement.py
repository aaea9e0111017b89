"""`kfp-yolo job render` places a YOLOv5l job where the planner says (the planner's probes of
yolov5l at 640 make it an integration test: tens of seconds of torch on a CPU)."""

from __future__ import annotations

import yaml

from kfp_yolo.components.spec import TrainSpec
from kfp_yolo.pipelines.cli import main


def render(capsys, *argv: str) -> tuple[str, dict]:
    assert main(["job", "render", *argv]) == 0
    out = capsys.readouterr().out
    return out, yaml.safe_load(out)


def test_job_render_places_the_job_where_the_planner_says(capsys):
    from kfp_yolo.components.k8s.pools import load_pools
    from kfp_yolo.components.planner import plan

    out, job = render(capsys, "--launcher", "pytorchjob", "--set", "batch=16", "--set",
                      "model=yolov5l.yaml", "--set", "imgsz=640", "--set", "precision=amp",
                      "--set", "optimizer=SGD")
    expected = plan("yolov5l.yaml", imgsz=640, batch=16, precision="amp", optimizer="SGD",
                    nc=80, pools=load_pools())
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [{
        "key": "nvidia.com/gpu.memory", "operator": "Gt",
        "values": [str(expected.min_gpu_memory_mib - 1)]}]
    assert pod["tolerations"] == list(expected.pool.tolerations)
    assert f"planned for pool {expected.pool.name}" in out.splitlines()[0]
    # batch 0: the planner's largest batch for that pool goes into the worker's spec
    _, job = render(capsys, "--launcher", "pytorchjob", "--set", "batch=0", "--set",
                    "model=yolov5l.yaml", "--set", "imgsz=640")
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert TrainSpec.from_json(pod["containers"][0]["args"][-1].replace("$$", "$")).batch > 0
