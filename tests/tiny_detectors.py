"""Small, untrained detectors whose boxes are worth comparing, in seconds on a CPU.

Training even a few epochs on these shared CPUs takes minutes (6 epochs of 128 images at
96 px: 1.5-2.5 min per model here) and still leaves every score near the class bias's prior
(about 0.004), all alike. An untrained model built from its YAML has vanishing activations
(1e-7 at the head). With a fixed seed, BatchNorm statistics set by one forward pass over noise
(activations of unit scale), the class convs' bias at 0 and weights scaled down, and the box
convs' weights scaled down with a bias of 1-2 strides, the scores spread over (0.25, 1) and
depend on the image: many overlapping boxes of several classes, so NMS, the NMS-free head,
the letterbox and the scaling back all change what comes out when they are wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

NAMES = {0: "circle", 1: "square", 2: "triangle"}
BIAS, WEIGHT_SCALE = 0.0, 0.02


def tiny_detector(folder: Path, model_yaml: str, *, imgsz: int = 96, seed: int = 0) -> Path:
    """best.pt of an untrained 3-class model_yaml (yolov8n.yaml, yolo26n.yaml)."""
    import torch
    import yaml

    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    folder.mkdir(parents=True, exist_ok=True)
    spec = {**yaml_model_load(model_yaml), "nc": len(NAMES)}
    (folder / model_yaml).write_text(yaml.safe_dump(spec))
    torch.manual_seed(seed)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        model = YOLO(str(folder / model_yaml))
        model.model.names = dict(NAMES)
        model.model.args = {"imgsz": imgsz}
        for name, module in model.model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # a cumulative average: this one pass sets them
            if ("cv3" in name and isinstance(module, torch.nn.Conv2d)
                    and module.out_channels == len(NAMES)):
                torch.nn.init.constant_(module.bias, BIAS)
                module.weight.data *= WEIGHT_SCALE  # logits of a few units, not saturated
            if ("cv2" in name and isinstance(module, torch.nn.Conv2d)
                    and module.bias is not None and module.out_channels in (4, 64)):
                # the box distances: YOLO26's 4, or v8's 4 x 16 DFL bins
                bins = torch.arange(module.out_channels) % (module.out_channels // 4)
                # YOLO26: a distance of 1 stride per side; v8: DFL bins weighted to 1-2 strides
                module.bias.data = torch.ones(4) if module.out_channels == 4 else -0.7 * bins
                module.weight.data *= WEIGHT_SCALE / 10  # boxes of a few strides, not saturated
        model.model.train()
        with torch.no_grad():
            model.model(torch.rand(8, 3, imgsz, imgsz))
        model.model.eval()
        model.save(str(folder / "best.pt"))
    finally:
        os.chdir(cwd)
    return folder / "best.pt"
