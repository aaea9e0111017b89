"""serving_format tensorrt is refused with a Triton whose TensorRT cannot load the image's plan;
a tag outside the table is served with a sentence saying how to check it."""

from __future__ import annotations

import pytest

from kfp_yolo.components.release.kserve import ServingSettings, build_inferenceservice
from kfp_yolo.components.release.tensorrt_runtimes import plan_problem
from kfp_yolo.pipelines.cli import main


@pytest.mark.parametrize(("tag", "verdict"), [
    ("25.08-py3", "refuse"),  # the default tag: TensorRT 10
    ("23.05-py3", "refuse"),
    ("26.07-py3", "refuse"),  # TensorRT 11.1 < 11.4: older than the builder
    ("26.10-py3", "unknown"),
    ("latest", "unknown"),
])
def test_each_tag_gets_its_verdict(tag, verdict):
    assert plan_problem(tag)[0] == verdict
    assert plan_problem(tag, builder="11.0.0.114")[0] == ("" if tag == "26.07-py3" else verdict)


def test_serve_render_refuses_the_default_runtime_for_a_plan(capsys):
    code = main(["serve", "render", "--set", "registry_uri=/tmp/nowhere", "--set",
                 "serving_format=tensorrt"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Triton 25.08-py3 ships TensorRT 10.x or older, which cannot load a plan" in err
    assert "set serving_format=onnx" in err


def test_an_unknown_tag_is_rendered_with_how_to_check_it(capsys):
    code = main(["serve", "render", "--set", "registry_uri=/tmp/nowhere", "--set",
                 "serving_format=tensorrt", "--set", "serving_runtime_version=26.10-py3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "# Before applying: which TensorRT Triton 26.10-py3 ships is not in" in out
    assert "libnvinfer.so" in out


def test_the_default_format_is_served_by_the_default_tag(capsys):
    assert main(["serve", "render", "--set", "registry_uri=/tmp/nowhere"]) == 0
    assert "serving_runtime_version" not in capsys.readouterr().err


def test_a_plan_is_loaded_version_compatible():
    args = build_inferenceservice("m", "v1", "s3://b/m/v1/triton", ServingSettings(
        model_format="tensorrt"))["spec"]["predictor"]["model"]["args"]
    assert "--backend-config=tensorrt,version-compatible=true" in args
