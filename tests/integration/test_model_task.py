"""A checkpoint of another task is one sentence before training, not an AttributeError in it."""

from __future__ import annotations

import pytest

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.training.trainer import check_checkpoint_task


def _save(model, path):
    import torch

    torch.save({"model": model.half(), "train_args": {}}, path)
    return str(path)


def test_a_classifier_checkpoint_is_refused_and_a_detector_passes(tmp_path):
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel

    classifier = _save(ClassificationModel("yolov8n-cls.yaml", nc=2, verbose=False),
                       tmp_path / "weights.pt")  # its name does not say what it is
    with pytest.raises(UserError, match=r"model '.*weights\.pt' is a Classification checkpoint, "
                                        r"and kfp-yolo trains YOLO object detectors"):
        check_checkpoint_task(classifier)
    check_checkpoint_task(_save(DetectionModel("yolov5n.yaml", nc=2, verbose=False),
                                tmp_path / "detector.pt"))
