"""The planner by cost and time: throughput model, history, per-pool rows, objectives, CLI.

The yolov5l/yolov5n probes are shared with the other planner tests (one cache per session).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from planner_helpers import plan_json

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.pools import default_pools_path, load_pools
from kfp_yolo.components.planner import plan
from kfp_yolo.components.planner.history import (
    history_uri,
    nearest,
    read_history,
    record,
    record_from_training,
    record_training,
    write_record,
)
from kfp_yolo.components.planner.throughput import (
    MULTI_GPU_EFFICIENCY,
    REFERENCE,
    ModelWork,
    estimate_images_per_s,
    gpu_spec,
    input_images_per_s,
)
from kfp_yolo.components.training.trainer import job_summary
from kfp_yolo.pipelines.cli import main as cli_main

V5L = ModelWork(gflops_640=REFERENCE["gflops_640"], conv_layers=REFERENCE["conv_layers"],
                activation_mib_640=REFERENCE["activation_mib_640"]["amp"])
ISSUE = ("--model", "yolov5l.yaml", "--imgsz", "640", "--batch", "0", "--precision", "amp",
         "--train-images", "10000")


def _catalog(tmp_path: Path, edit) -> str:
    data = yaml.safe_load(default_pools_path().read_text())
    for pool in data["pools"]:
        edit(pool)
    path = tmp_path / f"pools-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


# ---- the throughput model ----------------------------------------------------------------------


def test_gpu_names_from_gfd_and_torch_find_their_figures():
    cases = {"NVIDIA-H100-80GB-HBM3": "H100", "NVIDIA H100 80GB HBM3": "H100",
             "NVIDIA-H100-PCIe": "H100-PCIe", "NVIDIA-A100-SXM4-40GB": "A100-40GB",
             "NVIDIA A100-SXM4-80GB": "A100-80GB", "NVIDIA-A100-80GB-PCIe": "A100-80GB",
             "Tesla-T4": "T4", "NVIDIA-L4": "L4", "NVIDIA-L40S": "L40S", "NVIDIA-A10G": "A10G",
             "Tesla-V100-SXM2-16GB": "V100", "Quadro-RTX-4000": "RTX-4000", "NVIDIA-H200": "H200"}
    assert {name: gpu_spec(name).name for name in cases} == cases
    assert gpu_spec("Acme-X1") is None and gpu_spec("cpu") is None
    assert gpu_spec("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb") is None  # a slice: no figures


def test_the_model_reproduces_the_h200_measurements():
    h200 = gpu_spec("NVIDIA-H200")
    at = {(p, b): estimate_images_per_s(h200, V5L if p == "amp" else ModelWork(
        V5L.gflops_640, V5L.conv_layers, REFERENCE["activation_mib_640"]["fp32"]), imgsz=640,
        batch_per_gpu=b, precision=p, workers=64).images_per_s
        for p in ("amp", "fp32") for b in (16, 64)}
    # measured with the batch on the GPU: AMP 235.5 / 487.7, FP32 225.6 / 284.2
    assert at[("amp", 64)] == pytest.approx(487.7, rel=0.01)
    assert at[("fp32", 64)] == pytest.approx(284.2, rel=0.01)
    assert at[("amp", 16)] == pytest.approx(235.5, rel=0.01)
    assert at[("fp32", 16)] == pytest.approx(225.6, rel=0.05)
    # the real trainer with 8 workers ran 200.9 at b16: below what 8 workers can feed
    assert input_images_per_s(8, 640) > 200.9


def test_published_points_are_within_2x_and_bigger_gpus_are_faster():
    def v5l(product: str, batch: int = 16, **kw) -> float:
        return estimate_images_per_s(gpu_spec(product), V5L, imgsz=640, batch_per_gpu=batch,
                                     precision="amp", workers=16, **kw).images_per_s

    # YOLOv5l b16 (torch 1.9): about 95 images/s on an A100-40GB, 68 on a V100
    assert 0.5 <= v5l("NVIDIA-A100-SXM4-40GB") / 95 <= 2
    assert 0.5 <= v5l("Tesla-V100-SXM2-16GB") / 68 <= 2
    order = ["Tesla-T4", "NVIDIA-A10G", "Tesla-V100-SXM2-16GB", "NVIDIA-A100-SXM4-40GB",
             "NVIDIA-H100-80GB-HBM3"]
    speeds = [v5l(name, batch=64) for name in order]
    assert speeds == sorted(speeds)
    # several GPUs: world size x one GPU x the stated efficiency
    assert v5l("NVIDIA-L4", world_size=4) == pytest.approx(4 * MULTI_GPU_EFFICIENCY
                                                           * v5l("NVIDIA-L4"), rel=0.01)


def test_the_dataloader_caps_it_and_bf16_needs_ampere():
    h100 = gpu_spec("NVIDIA-H100-80GB-HBM3")
    fed = estimate_images_per_s(h100, V5L, imgsz=640, batch_per_gpu=64, precision="amp",
                                workers=2)
    assert fed.bound == "input" and fed.images_per_s == input_images_per_s(2, 640) == 156
    assert input_images_per_s(2, 320) == 4 * 156 and input_images_per_s(2, 64) == 4 * 156
    t4 = estimate_images_per_s(gpu_spec("Tesla-T4"), V5L, imgsz=640, batch_per_gpu=16,
                               precision="bf16")
    assert t4.images_per_s is None and "no native bf16" in t4.note
    assert estimate_images_per_s(None, V5L, imgsz=640, batch_per_gpu=16,
                                 precision="amp").images_per_s is None


def test_the_reference_constants_are_the_models_own(probe_cache):
    from kfp_yolo.components.planner.work import model_work

    for precision in ("amp", "fp32"):
        work = model_work("yolov5l.yaml", nc=80, precision=precision, cache_dir=probe_cache)
        assert work.gflops_640 == pytest.approx(REFERENCE["gflops_640"], rel=0.001)
        assert work.conv_layers == REFERENCE["conv_layers"]
        assert work.activation_mib_640 == pytest.approx(
            REFERENCE["activation_mib_640"][precision], rel=0.01)
    small = model_work("yolov5n", nc=80, precision="amp", cache_dir=probe_cache)
    assert small.gflops_640 < V5L.gflops_640 / 10 and small.conv_layers < V5L.conv_layers


# ---- objectives through the CLI (the issue's Done-when) ------------------------------------------


@pytest.mark.parametrize("objective, key", [("cost", "cost_per_epoch"), ("time", "epoch_s")])
def test_cost_takes_the_cheapest_epoch_and_time_the_shortest(probe_cache, capsys, objective, key):
    out = plan_json(capsys, *ISSUE, "--objective", objective)
    rows = {row["name"]: row for row in out["pools"]}
    assert set(rows) == {p.name for p in load_pools()}
    for row in rows.values():
        assert {"name", "fits", "batch", "images_per_s", "images_per_s_source", "epoch_s",
                "run_s", "cost_per_epoch", "cost_per_run"} <= set(row)
        assert row["images_per_s_source"] == "estimated" and row["fits"]
        assert row["epoch_s"] == pytest.approx(10000 / row["images_per_s"])
        assert row["run_s"] == pytest.approx(out["epochs"] * row["epoch_s"])
        if row["cost_per_epoch"] is not None:
            assert row["cost_per_run"] == pytest.approx(out["epochs"] * row["cost_per_epoch"])
    # the shipped 8 GiB pool has no public price: cost never takes it, and says so
    unpriced = [r["name"] for r in rows.values() if r["price_per_gpu_hour"] is None]
    assert unpriced == ["rtx4000-8g"] and rows["rtx4000-8g"]["cost_per_epoch"] is None
    ranked = [r for r in rows.values() if r[key] is not None]
    best = min(ranked, key=lambda r: r[key])
    assert out["pool"] == best["name"] and out["objective"] == objective
    if objective == "cost":
        assert "rtx4000-8g: no hourly_price, ranked after the priced pools" in out["pool_rule"]
    assert out["batch"] == best["batch"] and out["pool_rule"].startswith(f"objective {objective}")
    assert out["epochs"] == 20  # RunConfig's default


def test_editing_one_price_moves_the_cost_choice(probe_cache, capsys, tmp_path):
    first = plan_json(capsys, *ISSUE, "--objective", "cost")["pool"]

    def dearer(pool):
        if pool["name"] == first:
            pool["hourly_price"] = 100.0

    second = plan_json(capsys, *ISSUE, "--objective", "cost", "--pools",
                       _catalog(tmp_path, dearer))["pool"]
    assert second != first

    def cheap_h100(pool):
        if pool["name"] == "h100-80g":
            pool["hourly_price"] = 0.05

    assert plan_json(capsys, *ISSUE, "--objective", "cost", "--pools",
                     _catalog(tmp_path, cheap_h100))["pool"] == "h100-80g"


def test_no_prices_rank_by_gpu_hours_and_unknown_gpus_rank_last(probe_cache, capsys, tmp_path):
    def unpriced(pool):
        pool.pop("hourly_price", None)
        if pool["name"] == "rtx4000-8g":
            pool["gpu_product"] = "Acme-X1"  # no figures, no measurement

    out = plan_json(capsys, *ISSUE, "--objective", "cost", "--pools",
                    _catalog(tmp_path, unpriced))
    rows = {row["name"]: row for row in out["pools"]}
    assert all(row["cost_per_epoch"] is None for row in rows.values())
    assert rows["rtx4000-8g"]["images_per_s_source"] == "unknown"
    assert rows["rtx4000-8g"]["why"] == "images/s unknown: ranked last by cost and time"
    known = [r for r in rows.values() if r["images_per_s"]]
    fewest = min(known, key=lambda r: r["world_size"] / r["images_per_s"])
    assert out["pool"] == fewest["name"]
    assert "the catalog has no prices" in out["pool_rule"]
    assert "rtx4000-8g: images/s unknown, ranked last" in out["pool_rule"]


def test_all_unknown_falls_back_to_smallest_and_says_so(probe_cache):
    pools = [p for p in load_pools()]
    from dataclasses import replace

    pools = [replace(p, gpu_product="Acme-X1") for p in pools]
    result = plan("yolov5n", imgsz=320, batch=0, pools=pools, cache_dir=probe_cache,
                  objective="time", train_images=1000, epochs=5)
    smallest = plan("yolov5n", imgsz=320, batch=0, pools=pools, cache_dir=probe_cache)
    assert result.pool == smallest.pool and "no pool that fits has an images/s" in \
        result.pool_rule


def test_the_deadline_excludes_slow_pools_or_says_none_makes_it(probe_cache, capsys):
    free = plan_json(capsys, *ISSUE, "--objective", "cost", "--epochs", "100")
    rows = {row["name"]: row for row in free["pools"]}
    cheapest = rows[free["pool"]]
    deadline_h = cheapest["run_s"] / 3600 * 0.9  # the cheapest misses it by 10%
    out = plan_json(capsys, *ISSUE, "--objective", "cost", "--epochs", "100",
                    "--deadline-h", f"{deadline_h:.4f}")
    in_time = [r for r in rows.values() if r["run_s"] <= deadline_h * 3600]
    assert out["pool"] == min(in_time, key=lambda r: r["cost_per_epoch"])["name"] != free["pool"]
    assert "within deadline_h=" in out["pool_rule"]
    smallest = plan_json(capsys, *ISSUE, "--deadline-h", "0.01")
    assert smallest["pool_rule"].endswith("deadline_h=0.01 is not checked (cost and time use it)")
    assert cli_main(["plan", *ISSUE, "--objective", "time", "--epochs", "100",
                     "--deadline-h", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "no pool finishes 100 epochs of 10000 images within deadline_h=0.01" in err
    assert "raise deadline_h, lower epochs or train on more GPUs" in err


# ---- learning from finished runs -----------------------------------------------------------------


def test_a_recorded_run_changes_a_later_plan_for_that_gpu_type(probe_cache, capsys, tmp_path):
    history = str(tmp_path / "registry" / "_throughput")
    before = plan_json(capsys, *ISSUE, "--objective", "cost", "--history", history)
    rows = {row["name"]: row for row in before["pools"]}
    a100 = rows["a100-40g"]
    assert before["history_records"] == 0 and a100["images_per_s_source"] == "estimated"
    # a finished run on that GPU type (torch's name for it), at the planned shape, 5x faster
    training = {"world_size": 1, "device": "cuda", "gpu_product": "NVIDIA A100-SXM4-40GB",
                "batch_per_gpu": a100["batch_per_gpu"], "workers": a100["workers"],
                "images_per_s": round(5 * a100["images_per_s"], 1)}
    assert record_training(history, training, model="yolov5l.yaml", imgsz=640,
                           precision="amp", source="run test")
    after = plan_json(capsys, *ISSUE, "--objective", "cost", "--history", history)
    new = {row["name"]: row for row in after["pools"]}
    assert after["history_records"] == 1
    assert new["a100-40g"]["images_per_s_source"] == "measured"
    assert new["a100-40g"]["images_per_s"] == training["images_per_s"]  # the same shape: x1.00
    assert "measured" in new["a100-40g"]["images_per_s_note"]
    assert {k: v for k, v in new.items() if k != "a100-40g"} == \
        {k: v for k, v in rows.items() if k != "a100-40g"}
    assert after["pool"] == "a100-40g"  # now the cheapest per epoch
    # the train step's record of a CPU run is kept but never used for a GPU pool
    cpu = {**training, "device": "cpu", "gpu_product": "cpu"}
    record_training(history, cpu, model="yolov5l.yaml", imgsz=640, precision="amp", source="x")
    assert read_history(history)[-1]["gpu_product"] == "cpu"
    again = plan_json(capsys, *ISSUE, "--objective", "cost", "--history", history)
    assert again["pools"] == after["pools"]


def test_the_config_names_the_history_and_a_bad_one_is_a_warning(probe_cache, capsys, tmp_path,
                                                                  monkeypatch):
    registry = tmp_path / "registry"
    assert history_uri(str(registry), "s3://b/ck") == f"{registry}/_throughput"
    assert history_uri("", "s3://b/ck/") == "s3://b/ck/_throughput" and history_uri() == ""
    out = plan_json(capsys, *ISSUE, "--set", f"registry_uri={registry}")
    assert out["history"] == f"{registry}/_throughput" and out["history_records"] == 0
    # a store the config names but that cannot be read (nothing listens on loopback port 1):
    # planned without it, said on stderr; the same URI given as --history is an error
    for key, value in {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "k",
                       "AWS_SECRET_ACCESS_KEY": "s"}.items():
        monkeypatch.setenv(key, value)
    assert cli_main(["plan", *ISSUE, "--set", "registry_uri=s3://nobucket/reg", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["history_records"] == 0
    assert "warning: throughput history s3://nobucket/reg/_throughput not read" in captured.err
    assert cli_main(["plan", *ISSUE, "--history", "s3://nobucket/reg/_throughput"]) == 2
    assert "cannot reach the S3 endpoint http://127.0.0.1:1" in capsys.readouterr().err


def test_nearest_takes_the_same_model_and_precision_closest_in_shape():
    def point(**kw):
        values = dict(gpu_product="NVIDIA-H100-80GB-HBM3", model="yolov5l.yaml", imgsz=640,
                      batch_per_gpu=16, precision="amp", world_size=1, workers=8,
                      images_per_s=100.0, source="t")
        return record(**{**values, **kw})

    records = [point(batch_per_gpu=64, images_per_s=1), point(batch_per_gpu=16, images_per_s=2),
               point(model="yolov5n.yaml", batch_per_gpu=32), point(precision="fp32"),
               point(gpu_product="cpu", batch_per_gpu=32), point(gpu_product="Tesla-T4")]
    shape = dict(model="/any/where/yolov5l.yaml", imgsz=640, precision="amp", world_size=1,
                 workers=8)
    h100 = "NVIDIA H100 80GB HBM3"
    assert nearest(records, gpu_product=h100, batch_per_gpu=32, **shape)["images_per_s"] == 2
    assert nearest(records, gpu_product=h100, batch_per_gpu=48, **shape)["images_per_s"] == 1
    assert nearest(records, gpu_product="NVIDIA-L4", batch_per_gpu=32, **shape) is None
    assert nearest(records, gpu_product="cpu", batch_per_gpu=32, **shape) is None


def test_records_are_checked_appended_and_damaged_ones_skipped(tmp_path):
    uri = str(tmp_path / "_throughput")
    with pytest.raises(UserError, match="images_per_s must be a positive number"):
        record(gpu_product="x", model="m.yaml", imgsz=640, batch_per_gpu=1, precision="amp",
               world_size=1, workers=1, images_per_s=float("nan"), source="")
    assert record_from_training({"images_per_s": 0, "world_size": 1}, model="m.yaml",
                                imgsz=64, precision="amp", source="") is None
    good = record_from_training({"images_per_s": 12.5, "world_size": 2, "device": "cpu",
                                 "batch_per_gpu": 4, "workers": 1}, model="runs/yolov5n.yaml",
                                imgsz=64, precision="amp", source="run r1")
    assert good["gpu_product"] == "cpu" and good["precision"] == "fp32"  # a CPU runs fp32
    assert good["model"] == "yolov5n.yaml"
    names = {write_record(uri, good) for _ in range(3)}  # no read-modify-write: 3 objects
    assert len(names) == 3
    (tmp_path / "_throughput" / "zz-damaged.json").write_text("{not json")
    (tmp_path / "_throughput" / "zz-foreign.json").write_text(json.dumps({"a": 1}))
    assert [r["images_per_s"] for r in read_history(uri)] == [12.5] * 3
    # writing never fails a training: a store that refuses is a warning
    assert record_training("/proc/kfp-yolo-no/_throughput", {"images_per_s": 1.0,
                           "world_size": 1}, model="m.yaml", imgsz=64, precision="amp",
                           source="") == ""


def test_the_trainings_record_carries_the_gpu_product():
    from kfp_yolo.components.spec import TrainSpec

    spec = TrainSpec(run_id="r", dataset_uri="d", model="yolov5n.yaml", imgsz=64, epochs=2,
                     batch=4, precision="amp", optimizer="SGD", lr0=0.01, seed=0, workers=0,
                     nodes=1, procs_per_node=1, checkpoint_uri="c", output_uri="o")
    record_ = {"world_size": 1, "device": "cuda", "gpu_product": "NVIDIA-H200",
               "batch_per_process": 4, "workers": 3,
               "epochs": [{"epoch": 1, "images": 10, "seconds": 1.0, "images_per_s": 10.0},
                          {"epoch": 2, "images": 10, "seconds": 0.5, "images_per_s": 20.0}]}
    summary = job_summary(record_, spec)
    assert summary["gpu_product"] == "NVIDIA-H200" and summary["images_per_s"] == 20.0
    cpu = {k: v for k, v in record_.items() if k != "gpu_product"} | {"device": "cpu"}
    assert job_summary(cpu, spec)["gpu_product"] == "cpu"


# ---- the config's language -----------------------------------------------------------------------


def test_plan_reads_a_config_file_and_flags_override_it(probe_cache, capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: yolov5n.yaml\nimgsz: 320\nbatch: 32\nnodes: 1\nprocs_per_node: 2\n"
                      "objective: time\nepochs: 7\noptimizer: SGD\n")
    out = plan_json(capsys, "--config", str(config), "--train-images", "640")
    assert (out["model"], out["imgsz"], out["batch"], out["world_size"]) == \
        ("yolov5n.yaml", 320, 32, 2)
    assert (out["batch_per_gpu"], out["objective"], out["epochs"], out["optimizer"]) == \
        (16, "time", 7, "SGD")
    # flags win over the file, --set too; the batch stays global
    out = plan_json(capsys, "--config", str(config), "--batch", "8", "--objective", "smallest",
                    "--set", "epochs=3")
    assert (out["batch"], out["batch_per_gpu"], out["objective"], out["epochs"]) == \
        (8, 4, "smallest", 3)
    # the config's rules apply to flags: a batch that does not split over the GPUs
    assert cli_main(["plan", "--config", str(config), "--batch", "9"]) == 2
    assert "does not split" in capsys.readouterr().err
    # no config: RunConfig's defaults (the demo's yolov5n at 128, AdamW)
    out = plan_json(capsys)
    assert (out["model"], out["imgsz"], out["batch"], out["optimizer"]) == \
        ("yolov5n.yaml", 128, 16, "AdamW")


def test_a_point_at_another_shape_is_scaled_by_the_model(probe_cache, tmp_path):
    from kfp_yolo.components.planner.work import model_work

    history = str(tmp_path / "_throughput")
    # batch 8 is host-bound on an A100 by the model, 32 GPU-bound: the ratio is above 1
    write_record(history, record(gpu_product="NVIDIA-A100-SXM4-40GB", model="yolov5l.yaml",
                                 imgsz=640, batch_per_gpu=8, precision="amp", world_size=1,
                                 workers=11, images_per_s=100.0, source="t"))
    result = plan("yolov5l", imgsz=640, batch=32, cache_dir=probe_cache, train_images=1000,
                  epochs=1, history=read_history(history))
    row = next(r for r in result.pools if r.name == "a100-40g")
    work = model_work("yolov5l", nc=80, precision="amp", cache_dir=probe_cache)
    a100 = gpu_spec(row.gpu_product)
    at = {b: estimate_images_per_s(a100, work, imgsz=640, batch_per_gpu=b, precision="amp",
                                   workers=11).images_per_s for b in (8, 32)}
    assert row.images_per_s_source == "measured" and at[32] > at[8]
    assert row.images_per_s == pytest.approx(100.0 * at[32] / at[8], abs=0.1)
    assert f"x{at[32] / at[8]:.2f} to this shape" in row.images_per_s_note


def test_the_plan_step_reads_the_history_and_reports_the_table(probe_cache, tmp_path):
    from kfp_yolo.components.k8s.pools import catalog_json
    from kfp_yolo.components.steps import plan_resources_component

    registry = tmp_path / "registry"
    write_record(history_uri(str(registry)), record(
        gpu_product="Tesla T4", model="yolov5n.yaml", imgsz=320, batch_per_gpu=32,
        precision="amp", world_size=1, workers=3, images_per_s=9999.0, source="t"))
    # a forged record (issue #26): named in the report, not used
    (Path(history_uri(str(registry))) / "zz-forged.json").write_text(json.dumps(
        {**read_history(history_uri(str(registry)))[0], "images_per_s": 1e300}))
    report = type("Artifact", (), {"path": str(tmp_path / "report.md")})()
    outputs = plan_resources_component("yolov5n.yaml", 320, 32, 1, 1, "amp", "SGD", 3,
                                       catalog_json(), report, train_images=2000, epochs=10,
                                       objective="time", registry_uri=str(registry))
    text = (tmp_path / "report.md").read_text()
    assert outputs.pool == "t4-16g" and outputs.pool_rule.startswith("objective time: t4-16g")
    assert "(1 records read; 1 ignored: zz-forged.json (images_per_s 1e+300 is above the " \
        "physical bound of 20,000 for 1 GPU(s)))" in text
    assert "| 9,999 | measured |" in text
    # a well-formed GFM table (the Kubeflow UI's Markdown viewer): one cell count per line
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(load_pools())
    assert {line.count("|") for line in table} == {14}


def test_job_render_places_the_job_where_the_objective_does(probe_cache, capsys):
    argv = ["--set", "model=yolov5l.yaml", "--set", "imgsz=640", "--set", "batch=0"]
    for objective in ("time", "cost"):
        expected = plan_json(capsys, *argv, "--set", f"objective={objective}")["pool"]
        assert cli_main(["job", "render", *argv, "--set", f"objective={objective}"]) == 0
        assert f"planned for pool {expected}" in capsys.readouterr().out.splitlines()[0]
    assert expected != "h100-80g"  # cost: not where time goes


def test_a_pool_without_a_price_ranks_after_the_priced_ones():
    """Mixed catalog: cost never takes an unpriced pool while a priced one can run the job."""
    from kfp_yolo.components.k8s.pools import Pool
    from kfp_yolo.components.planner.objective import PoolRow, choose

    def row(name, price, images_per_s):
        epoch = 10000 / images_per_s
        return PoolRow(name=name, gpu_product="X", fits=True, batch=16, batch_per_gpu=16,
                       peak_mib=1, world_size=1, workers=8, images_per_s=images_per_s,
                       images_per_s_source="estimated", images_per_s_note="", epoch_s=epoch,
                       run_s=10 * epoch, price_per_gpu_hour=price,
                       cost_per_epoch=price * epoch / 3600 if price is not None else None,
                       cost_per_run=None)

    rows = [row("priced", 1.0, 10.0), row("own", None, 1000.0)]
    pools = [Pool(name=r.name, gpu_product="X", gpu_memory_mib=8192 * (i + 1), gpus_per_node=1,
                  max_nodes=1, flavor="f", hourly_price=r.price_per_gpu_hour)
             for i, r in enumerate(rows)]
    best, rule = choose(rows, pools, "cost", epochs=10, train_images=10000)
    assert best.name == "priced"
    assert rule.endswith("; own: no hourly_price, ranked after the priced pools")
    # the priced pool misses the deadline: the unpriced one, by GPU-hours, and not "no prices"
    best, rule = choose(rows, pools, "cost", deadline_h=1.0, epochs=10, train_images=10000)
    assert best.name == "own" and "no pool that can take it has a price" in rule
