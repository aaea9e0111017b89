"""What every page shares (components/reports/media.py): JPEG data URIs and the Markdown size
rule, which every Markdown page a step writes goes through."""

from __future__ import annotations

import ast
import base64
from pathlib import Path

from PIL import Image

from kfp_yolo.components.reports.media import (
    MARKDOWN_LIMIT,
    fit_markdown,
    jpeg_data_uri,
    jpeg_file_uri,
)

ROOT = Path(__file__).resolve().parents[2]


def test_a_page_within_the_limit_is_unchanged():
    assert fit_markdown("# a\n| x |\n") == "# a\n| x |\n"


def test_a_longer_page_is_cut_at_a_line_end_and_says_so():
    rows = "".join(f"| {i} | {'x' * 90} |\n" for i in range(6000))
    page = fit_markdown("# big\n" + rows, "the step's plots folder holds it all")
    assert len(page) <= MARKDOWN_LIMIT
    body, note = page.rsplit("\n\n", 1)
    assert body.endswith("|") and "400,000 characters; the step's plots folder" in note


def test_images_become_jpeg_data_uris(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (3000, 500), "red").save(path)
    uri = jpeg_file_uri(path, 600, 70)
    data = base64.b64decode(uri.removeprefix("data:image/jpeg;base64,"))
    assert data[:2] == b"\xff\xd8" and jpeg_data_uri(data) == uri


def test_every_markdown_page_a_step_writes_is_fitted():
    # each Markdown artifact written in components/steps/ goes through fit_markdown
    for path in (ROOT / "components" / "steps").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "handle.write":
                written = ast.unparse(node.args[0])
                if "report" in written:
                    assert written.startswith("fit_markdown("), (path.name, written)
