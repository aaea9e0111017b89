"""tensorrt_runtimes: which Triton image tag can load the TensorRT plan the project image builds.

A plan loads only in a TensorRT of the same major version, at least as new as the builder's,
and only when built version-compatible (`BuilderFlag.VERSION_COMPATIBLE`, Triton's
`--backend-config=tensorrt,version-compatible=true`); otherwise only in the very same version.

What is known of the tags (source: NVIDIA's Triton container release notes and its Frameworks
Support Matrix, as checked for kfp-yolo on 2026-12-03, see ../shared/DESIGN.md): TensorRT 11
first ships in Triton 26.06; 26.06 and 26.07 ship TensorRT 11.0/11.1; every earlier tag
(25.08-py3, the default, included) ships TensorRT 10.x or older. The tag that ships 11.4 was not
found (it is after 2026-10-09). A tag outside what is known is reported with how to check it.
"""

from __future__ import annotations

import re

__all__ = ["BUILDER_TENSORRT", "HOW_TO_CHECK", "KNOWN_TAGS", "plan_problem"]

BUILDER_TENSORRT = "11.4.0.106"
"""The TensorRT the project image builds plans with (Dockerfile: tensorrt-cu13==11.4.0.106)."""
KNOWN_TAGS: tuple[tuple[str, str, str], ...] = (
    # (first tag, last tag, TensorRT it ships), YY.MM, inclusive
    ("00.01", "26.05", "10.x or older"),
    ("26.06", "26.07", "11.0-11.1"),
)
HOW_TO_CHECK = ("check the tag's TensorRT in NVIDIA's Frameworks Support Matrix or its release "
                "notes, or in the image (`ls /usr/lib/x86_64-linux-gnu/libnvinfer.so.*`); it "
                f"must be {BUILDER_TENSORRT.rsplit('.', 2)[0]} or newer with major "
                f"{BUILDER_TENSORRT.split('.')[0]}")
_TAG = re.compile(r"^(\d{2})\.(\d{2})")


def _shipped(tag: str) -> str:
    match = _TAG.match(tag)
    if not match:
        return ""
    month = f"{match.group(1)}.{match.group(2)}"
    return next((trt for first, last, trt in KNOWN_TAGS if first <= month <= last), "")


def plan_problem(tag: str, builder: str = BUILDER_TENSORRT) -> tuple[str, str]:
    """('refuse' | 'unknown' | '', sentence) for serving builder's plan in Triton `tag`."""
    shipped = _shipped(tag)
    if not shipped:
        return "unknown", (f"which TensorRT Triton {tag} ships is not in kfp-yolo's table "
                           f"(components/release/tensorrt_runtimes.py); {HOW_TO_CHECK}")
    major = builder.split(".")[0]
    if shipped.startswith(f"{major}.") and shipped.split("-")[-1] >= builder:
        return "", ""
    return "refuse", (f"Triton {tag} ships TensorRT {shipped}, which cannot load a plan built "
                      f"with TensorRT {builder} (a plan loads only in the same major version, "
                      "at least as new); set serving_format=onnx, or a serving_runtime_version "
                      f"whose TensorRT is {major}.x at least {builder.rsplit('.', 2)[0]}")
