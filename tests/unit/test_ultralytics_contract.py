"""Contract tests: one per patch in kfp_yolo.components.ultralytics_patches, named after it.

Each fails when the installed ultralytics (or torch) moves what the patch relies on: the names
it replaces or reads, where the trainer looks them up, signatures, tuple positions. Fast: no
training; the slowest builds a yolov5n model.
"""

from __future__ import annotations

import dis
import inspect
from pathlib import Path

import pytest

from kfp_yolo.components import ultralytics_patches as patches
from kfp_yolo.components.runtime import offline_environment


@pytest.fixture(scope="module", autouse=True)
def _offline():
    offline_environment()  # before ultralytics is imported: it reads its settings then


def _uses(func) -> set[tuple[str, str]]:
    """(kind, name) of the globals a function loads and the attributes it loads and stores."""
    kinds = {"LOAD_GLOBAL": "global", "LOAD_NAME": "global", "LOAD_ATTR": "attr",
             "LOAD_METHOD": "attr", "STORE_ATTR": "store"}
    found: set[tuple[str, str]] = set()
    codes = [func.__code__]
    while codes:
        code = codes.pop()
        found |= {(kinds[i.opname], i.argval) for i in dis.get_instructions(code)
                  if i.opname in kinds}
        codes += [c for c in code.co_consts if inspect.iscode(c)]
    return found


def _params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


# ---------------------------------------------------------------------------------- trainer


def test_mlflow_callback_off():
    from collections import defaultdict

    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.utils import SETTINGS
    from ultralytics.utils.callbacks import add_integration_callbacks
    from ultralytics.utils.callbacks import mlflow as upstream

    if not upstream.callbacks:
        pytest.skip("mlflow is not installed: ultralytics has no MLflow callback to turn off")
    # the trainer adds integrations at construction, and they read SETTINGS then
    assert ("global", "callbacks") in _uses(BaseTrainer.__init__)
    assert ("attr", "add_integration_callbacks") in _uses(BaseTrainer.__init__)

    class FakeTrainer:  # add_integration_callbacks tells a trainer by its class name
        def __init__(self):
            self.callbacks = defaultdict(list)

    def mlflow_callbacks() -> set:
        trainer = FakeTrainer()
        add_integration_callbacks(trainer)
        return {f for fs in trainer.callbacks.values() for f in fs
                if getattr(f, "__module__", "") == upstream.__name__}

    before = SETTINGS["mlflow"]
    SETTINGS.update(mlflow=True)
    try:
        assert mlflow_callbacks() == set(upstream.callbacks.values()) != set()
        with patches.mlflow_callback_off():
            assert mlflow_callbacks() == set()
        assert SETTINGS["mlflow"] is True  # put back
    finally:
        SETTINGS.update(mlflow=before)


def test_amp_check_skipped():
    from ultralytics.engine import trainer as module
    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.utils.checks import check_amp

    # the trainer calls check_amp(model) through its module's globals, so that is the binding
    assert ("global", "check_amp") in _uses(BaseTrainer._setup_train)
    assert module.check_amp is check_amp
    assert _params(check_amp) == ["model"]
    with patches.amp_check_skipped():
        assert module.check_amp is not check_amp
        assert module.check_amp(object()) is True
    assert module.check_amp is check_amp
    with pytest.raises(RuntimeError), patches.amp_check_skipped():
        raise RuntimeError("restored on errors too")
    assert module.check_amp is check_amp


def test_cpu_ddp_device_ids(tmp_path):
    import torch
    import torch.distributed as dist
    from ultralytics.engine import trainer as module
    from ultralytics.engine.trainer import BaseTrainer

    # the trainer looks the class up on torch.nn.parallel at call time, with [device.index]
    assert module.nn is torch.nn
    uses = _uses(BaseTrainer._setup_train)
    assert {("global", "nn"), ("attr", "parallel"), ("attr", "DistributedDataParallel")} <= uses
    assert "device_ids=[self.device.index]" in inspect.getsource(BaseTrainer._setup_train)
    original = torch.nn.parallel.DistributedDataParallel
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        # why the patch exists: DDP refuses device_ids=[None] for a CPU module
        with pytest.raises(ValueError, match="device_ids"):
            original(torch.nn.Linear(2, 2), device_ids=[None])
        with patches.cpu_ddp_device_ids():
            wrapped = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2),
                                                                device_ids=[None])
        assert isinstance(wrapped, original)
    finally:
        dist.destroy_process_group()
    assert torch.nn.parallel.DistributedDataParallel is original
    with patches.cpu_ddp_device_ids(enabled=False):
        assert torch.nn.parallel.DistributedDataParallel is original


def test_launcher_world_size():
    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.models.yolo.detect import DetectionTrainer

    assert {"cfg", "overrides"} <= set(_params(DetectionTrainer.__init__))
    # __init__ sets what the subclass overwrites after it
    assert {("store", "world_size"), ("store", "ddp"), ("store", "device")} <= _uses(
        BaseTrainer.__init__)
    # train() spawns its own DDP workers on self.ddp; these read self.world_size afterwards
    assert ("attr", "ddp") in _uses(BaseTrainer.train)
    for method in (BaseTrainer._do_train, BaseTrainer._setup_train,
                   BaseTrainer._build_train_pipeline):
        assert ("attr", "world_size") in _uses(method), method.__name__
    cls = patches.launcher_trainer_class()
    assert issubclass(cls, DetectionTrainer)
    assert _params(cls.__init__) == ["self", "overrides", "world_size", "local_rank", "is_main"]


def test_setup_ddp_noop():
    from ultralytics.engine.trainer import BaseTrainer

    assert _params(BaseTrainer._setup_ddp) == ["self"]
    # _do_train forms the process group through this method, then sets up and trains
    uses = _uses(BaseTrainer._do_train)
    assert {("attr", "_setup_ddp"), ("attr", "_setup_train"), ("attr", "final_eval")} <= uses
    cls = patches.launcher_trainer_class()
    assert cls._setup_ddp is not BaseTrainer._setup_ddp


def _checkpoint(path: Path, results: dict, epoch: int) -> None:
    import torch

    torch.save({"epoch": epoch, "model": None, "ema": torch.nn.Linear(2, 2),
                "optimizer": {"state": {}}, "train_args": {"epochs": 3},
                "train_results": results}, path)


def test_final_eval_without_val(tmp_path):
    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.utils.patches import torch_load
    from ultralytics.utils.torch_utils import strip_optimizer

    # what upstream's final_eval writes, which finalize_weights reproduces without validating
    source = inspect.getsource(BaseTrainer.final_eval)
    assert "strip_optimizer(self.last)" in source
    assert 'strip_optimizer(self.best, updates={"train_results": ckpt.get("train_results")})' \
        in source
    assert '"train_results": self.read_results_csv()' in inspect.getsource(BaseTrainer.save_model)
    assert _params(strip_optimizer) == ["f", "s", "updates"]

    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    full = {"epoch": [1, 2, 3], "metrics/mAP50-95(B)": [0.1, 0.3, 0.2]}
    _checkpoint(last, full, 2)
    _checkpoint(best, {"epoch": [1, 2], "metrics/mAP50-95(B)": [0.1, 0.3]}, 1)
    out = tmp_path / "out"
    out.mkdir()
    patches.finalize_weights(last, best, out_last=out / "last.pt", out_best=out / "best.pt")
    assert torch_load(best, weights_only=False)["optimizer"] is not None  # sources untouched
    patches.finalize_weights(last, best)
    for folder in (tmp_path, out):
        stripped_best = torch_load(folder / "best.pt", weights_only=False)
        stripped_last = torch_load(folder / "last.pt", weights_only=False)
        assert stripped_best["train_results"] == full  # the whole table, as upstream merges it
        assert stripped_last["train_results"] == full
        for ckpt in (stripped_best, stripped_last):
            assert ckpt["optimizer"] is None and ckpt["ema"] is None and ckpt["epoch"] == -1
            assert next(ckpt["model"].parameters()).dtype.itemsize == 2  # fp16, as upstream
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt", "out"]
    cls = patches.launcher_trainer_class()
    assert cls.final_eval is not BaseTrainer.final_eval


# ------------------------------------------------------------------------------- data checks


def test_original_image_open(tmp_path):
    import PIL.Image
    from ultralytics.utils import patches as upstream

    # why the patch exists: importing ultralytics replaced Image.open for the whole process
    assert PIL.Image.open is upstream.image_open
    assert callable(upstream._image_open)
    open_image = patches.original_image_open()
    assert open_image is upstream._image_open and open_image is not PIL.Image.open
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"not an image at all")
    with pytest.raises(PIL.UnidentifiedImageError):
        open_image(fake)


def test_verify_image_label(tmp_path):
    import PIL.Image
    from ultralytics.data.utils import verify_image_label

    assert _params(verify_image_label) == ["args"]
    source = inspect.getsource(verify_image_label)
    assert ("im_file, lb_file, prefix, keypoint, num_cls, nkpt, ndim, single_cls = args"
            in source)
    assert "return im_file, lb, shape, segments, keypoints, nm, nf, ne, nc, msg" in source
    assert patches.CORRUPT_PREFIX in source

    image, label = tmp_path / "a.png", tmp_path / "a.txt"
    PIL.Image.new("RGB", (48, 32), (90, 20, 200)).save(image)
    label.write_text("1 0.5 0.5 0.25 0.25\n")
    good = verify_image_label((str(image), str(label), "", False, 2, 0, 0, False))
    assert len(good) == 10 and good[0] == str(image) and good[8] == 0
    assert tuple(good[2]) == (32, 48)  # (height, width)
    assert patches.verify_image_label(image, label, 2) == patches.LabelVerdict(
        corrupt=False, shape=(32, 48), message="")

    label.write_text("5 0.5 0.5 0.25 0.25\n")  # class 5 of 2
    bad = verify_image_label((str(image), str(label), "", False, 2, 0, 0, False))
    assert len(bad) == 10 and bad[8] == 1 and patches.CORRUPT_PREFIX in bad[9]
    verdict = patches.verify_image_label(image, label, 2)
    assert verdict.corrupt and verdict.shape is None
    assert verdict.reason.startswith("Label class 5 exceeds dataset class count 2")


# ---------------------------------------------------------------------------------- planner


def test_prepare_for_loss():
    import torch
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.loss import v8DetectionLoss

    # the criterion reads its gains from model.args when it is built
    assert ("attr", "args") in _uses(v8DetectionLoss.__init__)
    assert _params(DetectionModel.init_criterion) == ["self"]
    torch.manual_seed(0)
    net = DetectionModel("yolov5n.yaml", nc=2, verbose=False)
    patches.prepare_for_loss(net)
    assert net.training and isinstance(net.criterion, v8DetectionLoss)
    assert net.criterion.hyp is net.args and net.args.box > 0
    batch = {"img": torch.rand(2, 3, 64, 64), "batch_idx": torch.tensor([0.0, 1.0]),
             "cls": torch.tensor([[0.0], [1.0]]),
             "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.4, 0.4, 0.2, 0.2]])}
    loss, items = net.loss(batch)  # the keys the planner's probe passes
    assert loss.shape == (3,) and torch.isfinite(loss).all() and len(items) == 3
