"""The published model card reads as a person expects: counts as counts, nested metadata as JSON.

KFP hands artifact metadata back through protobuf Structs, so every number arrives a float and
nested dicts are common (the training's shape, the dataset's conversion)."""

from __future__ import annotations

from kfp_yolo.components.reports.model_card import render_model_card


def test_whole_floats_are_counts_and_nested_values_are_json():
    card = render_model_card("shapes", "v1", {
        "metrics": {"mAP50-95": 0.612345},
        "training": {"nodes": 1.0, "images_per_s": 46.25,
                     "shape": {"world_size": 2.0, "device": "cuda", "epochs": [1.0, 2.0]}},
    }, {"best.pt": (9, "0" * 64)})
    assert "| mAP50-95 | 0.6123 |" in card
    assert "| nodes | 1 |" in card and "| images_per_s | 46.25 |" in card
    # brackets escaped (they could start a link); rendered, the cell reads as the JSON
    assert '| shape | {"world_size": 2, "device": "cuda", "epochs": \\[1, 2\\]} |' in card
    assert "'world_size'" not in card and "1.0" not in card
