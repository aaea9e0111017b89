"""The reports of a `kfp-yolo run` as a person sees them: PNG screenshots from headless Chromium.

    .venv/bin/python benchmarks/screenshot_reports.py runs/demo          # after `make demo`
    .venv/bin/python benchmarks/screenshot_reports.py runs/demo -o shots --width 1280
    make screenshots WORKDIR=runs/demo

Reads WORKDIR/summary.json; renders the training report (HTML, as the Kubeflow UI's HTML viewer
shows it) and the Markdown reports of the dataset, plan and evaluate steps (turned into HTML here
the way the UI's Markdown viewer shows tables, lists and images) to OUT/<report>.png, each as
tall as its page (blank rows below it cut off), and prints each file's size. Chromium gets no
network at all (every host resolves to nothing), so a report that needed one would show holes.
Needs Debian's chromium (/usr/bin/chromium) or CHROMIUM=/path/to/chrome.
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
    """Just enough Markdown for kfp-yolo's reports: headings, paragraphs, lists, bold, italic,
    code, pipe tables and images (data URIs)."""
    def inline(line: str) -> str:
        line = html.escape(line, quote=False)
        line = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)",
                      lambda m: f'<img alt="{m.group(1)}" src="{m.group(2)}" '
                                'style="max-width:100%">', line)
        line = re.sub(r"`([^`]+)`", r"<code>\1</code>", line)
        line = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", line)
        return re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<i>\1</i>", line)

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
        if line.startswith("- "):
            out.append(f"<li>{inline(line[2:])}</li>")
        elif match := re.match(r"^(#{1,6}) (.*)", line):
            level = len(match.group(1))
            out.append(f"<h{level}>{inline(match.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    style = ("body{font-family:sans-serif;margin:20px}table{border-collapse:collapse;"
             "font-size:13px;margin:10px 0}td,th{border:1px solid #ccc;padding:3px 8px}")
    body = re.sub(r"((?:<li>.*?</li>)+)", r"<ul>\1</ul>", "".join(out))
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><style>{style}</style></head>'
            f"<body>{body}</body></html>")


def step_report(summary: dict, folder: str) -> Path | None:
    """The `report` artifact of one task of the run (its folder under run_dir), if it has one."""
    output = Path(summary.get("run_dir") or "") / folder / "executor_output.json"
    if not summary.get("run_dir") or not output.exists():
        return None
    found = json.loads(output.read_text()).get("artifacts", {}).get("report", {})
    uris = [a.get("uri") for a in found.get("artifacts", []) if a.get("uri")]
    return Path(uris[0]) if uris and Path(uris[0]).exists() else None


def trim(png: Path) -> None:
    """Cuts the blank rows below the page (the window is taller than most pages)."""
    try:
        from PIL import Image, ImageChops
    except ImportError:  # the untrimmed screenshot is still right, only taller
        return
    with Image.open(png) as image:
        rgb = image.convert("RGB")
    box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, (255, 255, 255))).getbbox()
    if box is not None and box[3] + 20 < rgb.height:
        rgb.crop((0, 0, rgb.width, box[3] + 20)).save(png)


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
    parser.add_argument("--height", type=int, default=6000,
                        help="window height; the PNG is cut below the page's last content")
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
    markdown = {"dataset_report": step_report(summary, "prepare-dataset-component"),
                "plan_report": step_report(summary, "plan-resources-component"),
                "evaluation_report": Path(artifacts["evaluation_report"])
                if artifacts.get("evaluation_report") else None}
    for name, source in markdown.items():
        if source is not None:
            converted = out / f"{name}.html"
            converted.write_text(markdown_to_html(source.read_text()))
            pages[name] = converted
    for name, page in pages.items():
        # the HTML artifact has no .html suffix: Chromium must be told it is HTML
        source = page if page.suffix == ".html" else out / f"{name}.html"
        if source != page:
            shutil.copyfile(page, source)
        png = out / f"{name}.png"
        screenshot(binary, source, png, args.width, args.height)
        trim(png)
        original = markdown.get(name) or page
        print(f"{png}  {png.stat().st_size} bytes  (report {original.stat().st_size} bytes)")
    return 0 if pages else 1


if __name__ == "__main__":
    sys.exit(main())
