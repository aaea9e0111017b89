"""Fixtures of the integration lane that several test modules train on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kfp_yolo.components.data.synth import SynthSpec, synthesize


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 synthetic 64 px images in the prepared layout, data.yaml with an absolute path
    (a module that defines its own `dataset` fixture uses that one)."""
    folder = tmp_path_factory.mktemp("dataset")
    data_yaml = synthesize(folder, SynthSpec(images=32, imgsz=64))
    data = yaml.safe_load(data_yaml.read_text())
    data_yaml.write_text(yaml.safe_dump({**data, "path": str(folder)}, sort_keys=False))
    return folder
