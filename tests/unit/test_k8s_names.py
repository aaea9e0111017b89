"""One table of Kubernetes name rules, and every place that names something uses it."""

from __future__ import annotations

import json

import pytest

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.names import DNS_LABEL, DNS_SUBDOMAIN, LABEL_VALUE, MODEL_NAME, check
from kfp_yolo.components.k8s.pools import load_pools_text
from kfp_yolo.components.k8s.quotas import render_quotas
from kfp_yolo.components.launchers.cluster import ClusterSettings, check_name


@pytest.mark.parametrize(("rule", "good", "bad"), [
    (DNS_LABEL, ["a", "team-a", "x" * 63], ["", "-a", "a-", "Team", "a.b", "x" * 64, "a_b"]),
    (DNS_SUBDOMAIN, ["a", "kfp-yolo.team", "x" * 253], ["", "a..b", ".a", "A", "x" * 254]),
    (LABEL_VALUE, ["", "a", "Kfp_Yolo.1", "x" * 63], ["-a", "a-", "x" * 64, "a b"]),
    (MODEL_NAME, ["demo", "x" * 40], ["x" * 41, "My_Model"]),
])
def test_each_rule_takes_what_the_api_server_takes(rule, good, bad):
    assert [v for v in good if not rule.matches(v)] == []
    assert [v for v in bad if rule.matches(v)] == []


def test_a_too_long_value_is_told_its_length_and_the_rule():
    with pytest.raises(UserError) as err:
        check(LABEL_VALUE, "queue", "q" * 70)
    assert str(err.value) == (f"queue='{'q' * 70}' is invalid: 70 characters long; a Kubernetes "
                              "label value is at most 63 letters, digits, '-', '_' or '.', "
                              "starting and ending with a letter or digit.")


def test_the_launchers_refuse_what_the_config_refuses():
    queue, too_long = "q" * 70, "70 characters long; a Kubernetes label value is at most 63"
    with pytest.raises(UserError, match=too_long):
        load_config(None, [f"queue={queue}"])
    with pytest.raises(UserError, match=too_long):
        check_name("queue", queue)
    with pytest.raises(UserError, match="a Kubernetes name is 1-63"):
        ClusterSettings(namespace="team.a")  # a namespace is a label: no dots
    ClusterSettings(service_account="kfp-yolo.pipeline")  # a subdomain: dots are fine


def test_the_catalog_and_the_quotas_state_the_rule():
    entry = {"name": "p" * 64, "gpu_product": "NVIDIA-L4", "gpu_memory_mib": 23034,
             "gpus_per_node": 1, "max_nodes": 1, "flavor": "gpu-24g"}
    with pytest.raises(UserError, match="64 characters long; a Kubernetes name is 1-63"):
        load_pools_text(json.dumps({"pools": [entry]}))
    pools = load_pools_text(json.dumps({"pools": [{**entry, "name": "l4"}]}))
    with pytest.raises(UserError, match="'Team_A' is invalid: a Kubernetes name is 1-63"):
        render_quotas(pools, namespace="Team_A")


def test_publish_uses_the_run_name_rule(tmp_path):
    from kfp_yolo.components.release.publish import publish

    model = tmp_path / "best.pt"
    model.write_bytes(b"x")
    with pytest.raises(UserError, match="'My_Model' is invalid: a run and model name is 1-40"):
        publish(registry_uri=str(tmp_path / "r"), name="My_Model", version="",
                files={"best.pt": model}, metadata={})


@pytest.mark.parametrize("run_id", ["kfp-yolo-training-2026-12-02-06-44-04-216651", "Exp 1/a",
                                    "x" * 90, "---", "a" * 62 + "-b"])
def test_a_run_id_becomes_a_valid_label_value(run_id):
    from kfp_yolo.components.k8s.names import label_value

    assert LABEL_VALUE.matches(label_value(run_id))
