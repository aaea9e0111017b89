"""The end-to-end model's numpy steps against ultralytics' own (LetterBox, NMS, scale_boxes),
and its refusals: what the served model does to an image before and after the detector."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kfp_yolo.components.release import yolo_e2e
from kfp_yolo.components.release.e2e_config import head_of, render_e2e_config


@pytest.mark.parametrize("shape", [(480, 640), (640, 481), (37, 1000), (96, 96), (1, 3)])
def test_letterbox_is_ultralytics_letterbox(shape):
    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    import torch
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.ops import scale_boxes

    image = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    tensor, (gain_x, gain_y, pad_x, pad_y) = yolo_e2e.letterbox(image, 96)
    theirs = LetterBox((96, 96), auto=False)(image=image)
    assert np.array_equal(tensor, theirs[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255)
    box = torch.tensor([[10.0, 20.0, 60.0, 90.0]])
    expected = scale_boxes((96, 96), box.clone(), shape).numpy()[0]
    ours = yolo_e2e.postprocess(np.array([[10, 20, 60, 90, 0.9, 1]], np.float32), "end2end",
                                (gain_x, gain_y, pad_x, pad_y), shape, conf=0.5, iou=0.7)
    assert np.allclose(ours[0][0], expected, atol=1e-4)


def test_raw_head_nms_is_ultralytics_non_max_suppression():
    import torch

    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics.utils.nms import non_max_suppression

    rng = np.random.default_rng(1)
    n, nc = 500, 3
    xy = rng.uniform(10, 86, (n, 2))
    wh = rng.uniform(4, 40, (n, 2))
    scores = rng.uniform(0, 1, (n, nc)) ** 3
    output = np.concatenate([xy, wh, scores], 1).T.astype(np.float32)  # (4+nc, N)
    (theirs,) = non_max_suppression(torch.from_numpy(output[None]), 0.25, 0.45, max_det=300)
    boxes, score, cls = yolo_e2e.postprocess(output, "nms", (1.0, 1.0, 0, 0), (96, 96),
                                             conf=0.25, iou=0.45)
    theirs = theirs.numpy()
    theirs[:, :4] = theirs[:, :4].clip(0, 96)
    assert len(boxes) == len(theirs) > 10
    assert np.allclose(boxes, theirs[:, :4], atol=1e-4)
    assert np.allclose(score, theirs[:, 4]) and np.array_equal(cls, theirs[:, 5].astype(int))


def test_end2end_rows_are_filtered_not_suppressed():
    rows = np.array([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0], [5, 5, 9, 9, 0.1, 2]],
                    np.float32)
    boxes, scores, cls = yolo_e2e.postprocess(rows, "end2end", (1.0, 1.0, 0, 0), (20, 20),
                                              conf=0.25, iou=0.1)
    assert scores.tolist() == pytest.approx([0.9, 0.8]) and cls.tolist() == [0, 0]


def test_images_are_decoded_from_bytes_or_base64_and_bad_ones_refused():
    import base64

    png = cv2.imencode(".png", np.full((30, 40, 3), 200, np.uint8))[1].tobytes()
    assert yolo_e2e.decode_image(png, 10_000).shape == (30, 40, 3)
    assert yolo_e2e.decode_image(base64.b64encode(png), 10_000).shape == (30, 40, 3)
    with pytest.raises(yolo_e2e.BadImage, match="neither an image"):
        yolo_e2e.decode_image(b"GIF89a but not really", 10_000)
    with pytest.raises(yolo_e2e.BadImage, match="empty"):
        yolo_e2e.decode_image(b"", 10_000)
    with pytest.raises(yolo_e2e.BadImage, match="40x30 pixels exceeds the limit of 1000"):
        yolo_e2e.decode_image(png, 1000)
    with pytest.raises(yolo_e2e.BadImage, match="HxWx3"):
        yolo_e2e.check_pixels(np.zeros((4, 4), np.uint8), 1000)


def test_the_head_follows_the_export_metadata_and_the_config_parses():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    assert head_of({"end2end": True}) == head_of({"end2end": "True"}) == "end2end"
    assert head_of({"end2end": False}) == head_of({}) == "nms"
    text = render_e2e_config("m", {"head": "nms", "names": '{"0": "a \\"b\\""}'}, max_batch=8)
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert (config.backend, config.max_batch_size) == ("python", 8)
    assert [o.name for o in config.output] == ["BOXES", "SCORES", "CLASSES", "NUM_DETECTIONS"]
    assert config.parameters["names"].string_value == '{"0": "a \\"b\\""}'
