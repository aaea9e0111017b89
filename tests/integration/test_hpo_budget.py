"""What a search trial costs, from the plan of a real model (the planner's probe: integration
lane, as the planner's other tests that probe yolov5l)."""

from __future__ import annotations

import pytest

from kfp_yolo.components.hpo.budget import trial_cost


def test_a_trials_gpu_hours_come_from_the_plans_epoch_time(probe_cache):
    from kfp_yolo.components.planner import plan

    result = plan("yolov5l.yaml", imgsz=640, batch=16, nc=80, train_images=100_000,
                  objective="cost", epochs=3, cache_dir=probe_cache)
    row = next(r for r in result.pools if r.name == result.pool.name)
    cost = trial_cost(result, epochs=3, fraction=0.5)
    assert cost.gpu_h == pytest.approx(row.world_size * row.epoch_s * 3 * 0.5 / 3600)
    assert cost.dollars == pytest.approx(cost.gpu_h * result.pool.hourly_price)
    assert cost.pool == result.pool.name
