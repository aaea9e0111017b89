"""A Kubernetes API scripted under the real client (ScriptedHTTP replaces urllib3's pool manager
under kubernetes' REST layer), a fake clock, and the TrainSpec and ClusterSettings of a typical
2-node x 4-GPU run, shared by the launcher, serving and job-render tests.
"""

from __future__ import annotations

import io
import json
import re
from urllib.parse import parse_qs, urlsplit

import urllib3
import yaml

from kfp_yolo.components.launchers.cluster import (
    ClusterSettings,
    Owner,
)
from kfp_yolo.components.spec import TrainSpec

NS = "team-a"


def make_spec(**changes) -> TrainSpec:
    values = dict(run_id="exp-1", dataset_uri="s3://data/exp-1/dataset", model="yolov5l.yaml",
                  imgsz=640, epochs=3, batch=32, precision="amp", optimizer="SGD", lr0=0.01,
                  seed=0, workers=4, nodes=2, procs_per_node=4, checkpoint_uri="s3://ckpt",
                  output_uri="s3://out/exp-1")
    values.update(changes)
    return TrainSpec(**values)


AFFINITY = ({"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["23033"]},)


TOLERATIONS = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)


def full_settings(**changes) -> ClusterSettings:
    values = dict(namespace=NS, queue="kfp-yolo", workload_priority_class="kfp-yolo-retraining",
                  priority_class="high", node_affinity=AFFINITY, tolerations=TOLERATIONS,
                  owner=Owner(name="step-pod", uid="1234-abcd", namespace=NS))
    values.update(changes)
    return ClusterSettings(**values)


class ScriptedHTTP:
    """Replaces urllib3's PoolManager under kubernetes' RESTClientObject.

    `routes` maps (METHOD, path regex) to answers given in order; the last answer repeats.
    An answer is (status, body) or a callable returning one. Every request is recorded.
    """

    def __init__(self, routes: dict):
        self.routes = {key: list(answers) for key, answers in routes.items()}
        self.calls: list[tuple[str, str, dict, object]] = []

    def request(self, method, url, fields=None, body=None, headers=None, **_):
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        query.update(dict(fields or []))
        self.calls.append((method, parts.path, query, json.loads(body) if body else None))
        for (route_method, pattern), answers in self.routes.items():
            if route_method == method and re.fullmatch(pattern, parts.path):
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                status, payload = answer() if callable(answer) else answer
                data = payload if isinstance(payload, str) else json.dumps(payload)
                return urllib3.HTTPResponse(body=io.BytesIO(data.encode()), status=status,
                                            headers={"Content-Type": "application/json"},
                                            preload_content=True)
        raise AssertionError(f"unscripted request {method} {parts.path}")

    def clear(self):
        pass

    def methods(self, method: str) -> list[tuple]:
        return [call for call in self.calls if call[0] == method]


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def status_error(code: int, reason: str, message: str) -> tuple[int, dict]:
    return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                  "message": message, "reason": reason, "code": code}


def render(capsys, *argv: str) -> tuple[str, dict]:
    from kfp_yolo.pipelines.cli import main

    assert main(["job", "render", *argv]) == 0
    out = capsys.readouterr().out
    return out, yaml.safe_load(out)
