"""TensorRT step: skipped with its reason where it cannot build; calibration data on the CPU."""

import numpy as np
import pytest

from kfp_yolo.components.data.synth import SynthSpec, synthesize
from kfp_yolo.components.tensorrt import availability, calibration_batches


def test_without_cuda_or_tensorrt_the_reason_is_given():
    import importlib.util

    import torch

    reason = availability()
    if importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available():
        assert reason and ("tensorrt" in reason or "CUDA" in reason)
    else:
        pytest.skip("this machine can build engines; the GPU check covers it")


def test_int8_calibration_batches_are_letterboxed_val_images(tmp_path):
    synthesize(tmp_path, SynthSpec(images=20, imgsz=96, seed=1))  # 4 val images
    batches = list(calibration_batches(tmp_path / "images" / "val", imgsz=128, batch=8))
    assert len(batches) == 1
    (batch,) = batches
    assert batch.shape == (4, 3, 128, 128) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0
    # Square 96 px images fill the 128 px input: resized, BGR -> RGB, CHW, scaled to [0, 1].
    import cv2

    first = sorted((tmp_path / "images" / "val").glob("*.png"))[0]
    expected = cv2.resize(cv2.imread(str(first)), (128, 128), interpolation=cv2.INTER_LINEAR)
    expected = expected[..., ::-1].transpose(2, 0, 1) / 255
    assert np.abs(batch[0] - expected).max() < 2 / 255
    with pytest.raises(ValueError, match="no calibration images"):
        list(calibration_batches(tmp_path / "labels", imgsz=128))
