"""What every page a person reads shares: images as JPEG data URIs (self-contained pages), and
the Kubeflow UI's size rule for Markdown (it cuts a Markdown page at 400,000 characters)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

__all__ = ["MARKDOWN_LIMIT", "fit_markdown", "jpeg_data_uri", "jpeg_file_uri"]

MARKDOWN_LIMIT = 400_000
"""Characters of a Markdown artifact the Kubeflow UI shows; the rest is cut off unseen."""
_CUT_NOTE = ("\n\n*The rest of this page does not fit the Kubeflow UI's 400,000 characters; "
             "{where}.*\n")


def jpeg_data_uri(jpeg: bytes) -> str:
    """A data URI of JPEG bytes (an <img> src, or a Markdown image's target)."""
    return f"data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}"


def jpeg_file_uri(path: str | Path, max_side: int, quality: int) -> str:
    """A data URI of the image file as a JPEG at most max_side px on its longest side."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return jpeg_data_uri(buffer.getvalue())


def fit_markdown(text: str, where: str = "the step's artifacts hold it all") -> str:
    """text within MARKDOWN_LIMIT: a longer page is cut at a line end, with a last line that
    says so and where the whole is (the UI would cut it silently, maybe inside a table)."""
    if len(text) <= MARKDOWN_LIMIT:
        return text
    note = _CUT_NOTE.format(where=where)
    head = text[:MARKDOWN_LIMIT - len(note)]
    return head[:head.rfind("\n") + 1 if "\n" in head else len(head)].rstrip() + note
