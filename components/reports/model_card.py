"""The model card (Markdown) of a published version: metrics, every metadata section, files with
sizes and sha256, and how to use what the version holds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kfp_yolo.components.redact import redact
from kfp_yolo.components.reports.escape import md_cell, md_code, md_text

__all__ = ["render_model_card"]


def _plain(value: Any) -> Any:
    """KFP's metadata comes back through protobuf Structs: every number a float. Whole ones are
    shown as the counts they are."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, float):
        value = f"{value:.4g}"
    elif isinstance(value, dict | list):  # nested metadata as JSON, not Python's repr
        value = json.dumps(value, separators=(", ", ": "))
    return md_cell(redact(str(value)))  # metadata may carry a URI with user-info


def _table(rows: dict[str, Any], header: tuple[str, str]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    return lines + [f"| {_cell(key)} | {_cell(value)} |" for key, value in rows.items()]


_USES = {
    "best.pt": "`best.pt`: `ultralytics.YOLO('best.pt')` (PyTorch).",
    "model.onnx": "`model.onnx`: onnxruntime or any ONNX runtime.",
    "model.engine": "`model.engine`: a plain TensorRT plan; it runs only with the TensorRT "
                    "version and GPU model it was built with.",
    "triton": "`triton/`: a Triton model repository: `{name}` takes an image file and answers "
              "boxes in its pixels (`kfp-yolo predict --url http://HOST:8000/{name} IMAGE`), "
              "`{name}-onnx` (and `{name}-trt` when a plan was built) is the raw detector that "
              "`ultralytics.YOLO('http://HOST:8000/{name}-onnx')` uses. `kfp-yolo serve render "
              "--version {version}` serves it on KServe, `kfp-yolo serve local --version "
              "{version}` on this machine.",
}


def render_model_card(name: str, version: str, metadata: dict[str, Any],
                      files: dict[str, tuple[int, str]], folders: Sequence[str] = ()) -> str:
    """The model card in Markdown: metrics, every metadata section, files with sizes and sha256,
    and how to use what this version holds.

    Args:
        name: registry name of the model.
        version: the version being published.
        metadata: scalars go in a Details table; each dict value becomes a section of its own.
        files: {file name: (bytes, sha256)}.
        folders: the folders published with the files (triton).
    """
    lines = [f"# {md_text(name)} {md_text(version)}", "",
             "A YOLO object detector trained and exported by kfp-yolo.", ""]
    sections = {k: v for k, v in metadata.items() if isinstance(v, dict)}
    details = {k: v for k, v in metadata.items() if not isinstance(v, dict)}
    if "metrics" in sections:  # what a reader looks for first
        lines += ["## Metrics", "", *_table(sections.pop("metrics"), ("metric", "value")), ""]
    if details:
        lines += ["## Details", "", *_table(details, ("key", "value")), ""]
    for title, rows in sections.items():
        lines += [f"## {md_text(title.replace('_', ' ').capitalize())}", "",
                  *_table(rows, ("key", "value")), ""]
    lines += ["## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| {md_cell(n)} | {size} | {md_code(digest, in_table=True)} |"
              for n, (size, digest) in files.items()]
    held = [*files, *folders]
    lines += ["", "## Use", "",
              *("- " + use.format(name=name, version=version) for key, use in _USES.items()
                if key in held), "",
              "## Licence", "",
              "Trained with ultralytics (AGPL-3.0); kfp-yolo is AGPL-3.0-or-later.", ""]
    return "\n".join(lines)
