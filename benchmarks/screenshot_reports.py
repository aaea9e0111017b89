"""The reports of a `kfp-yolo run` as a person sees them: PNG screenshots from headless Chromium.

    .venv/bin/python benchmarks/screenshot_reports.py runs/demo          # after `make demo`
    .venv/bin/python benchmarks/screenshot_reports.py runs/demo -o shots --width 1280
    make screenshots WORKDIR=runs/demo

Reads WORKDIR/summary.json; renders the training report (HTML, as the Kubeflow UI's HTML viewer
shows it) and the evaluation report (Markdown, turned into HTML here the way the UI's Markdown
viewer shows tables and images) to OUT/training_report.png and OUT/evaluation_report.png, and
prints each file's size. Chromium gets no network at all (every host resolves to nothing), so
a report that needed one would show holes. Needs Debian's chromium (/usr/bin/chromium) or
CHROMIUM=/path/to/chrome.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def chromium() -> str | None:
    """The Chromium binary: $CHROMIUM, else chromium / chromium-browser / google-chrome."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


def markdown_to_html(text: str) -> str:
    """Just enough Markdown for kfp-yolo's reports: headings, paragraphs, bold, pipe tables
    and images (data URIs)."""
    def inline(line: str) -> str:
        line = html.escape(line, quote=False)
        line = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)",
                      lambda m: f'<img alt="{m.group(1)}" src="{m.group(2)}" '
                                'style="max-width:100%">', line)
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", line)

    out, table = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                table.append(cells)
            continue
        if table:
            head, *rows = table
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>"
                                 for row in rows) + "</table>")
            table = []
        if match := re.match(r"^(#{1,6}) (.*)", line):
            level = len(match.group(1))
            out.append(f"<h{level}>{inline(match.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    style = ("body{font-family:sans-serif;margin:20px}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px}")
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><style>{style}</style></head>'
            f"<body>{''.join(out)}</body></html>")


def screenshot(binary: str, page: Path, png: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--user-data-dir={profile}",
                        "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run",
                        f"--window-size={width},{height}", f"--screenshot={png}",
                        page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, help="the --workdir of a kfp-yolo run")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help="folder for the PNGs (default WORKDIR/screenshots)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2200)
    args = parser.parse_args(argv)
    binary = chromium()
    if binary is None:
        print("no chromium found: apt-get install chromium, or set CHROMIUM", file=sys.stderr)
        return 2
    summary = json.loads((args.workdir / "summary.json").read_text())
    artifacts = summary.get("artifacts") or {}
    out = args.out or args.workdir / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    pages = {}
    if artifacts.get("training_report"):
        pages["training_report"] = Path(artifacts["training_report"])
    if artifacts.get("evaluation_report"):
        converted = out / "evaluation_report.html"
        converted.write_text(markdown_to_html(Path(artifacts["evaluation_report"]).read_text()))
        pages["evaluation_report"] = converted
    for name, page in pages.items():
        # the HTML artifact has no .html suffix: Chromium must be told it is HTML
        source = page if page.suffix == ".html" else out / f"{name}.html"
        if source != page:
            shutil.copyfile(page, source)
        png = out / f"{name}.png"
        screenshot(binary, source, png, args.width, args.height)
        print(f"{png}  {png.stat().st_size} bytes  (page {page.stat().st_size} bytes)")
    return 0 if pages else 1


if __name__ == "__main__":
    sys.exit(main())
