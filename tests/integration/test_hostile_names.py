"""Every page a person reads escapes what users wrote (issue #26): the reports of a dataset whose
class names are hostile, rendered in headless Chromium, run no script, gain no element, and keep
their table columns.

The Markdown reports are rendered by markdown-it-py as CommonMark + GFM tables *with raw HTML
passed through*: the most permissive viewer one of them may meet (the Kubeflow UI drops raw
HTML, other Markdown viewers do not). The page starts with one script of ours that records any
call of alert(); Chromium's DOM after load must show none, and no element other than ours that
a name could have brought (script, img without our data URIs, an on* attribute).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from kfp_yolo.components.data.prepare import prepare_dataset
from kfp_yolo.components.data.synth import SynthSpec, synthesize
from kfp_yolo.components.evaluate import EvalResult
from kfp_yolo.components.reports.dataset import render_report as dataset_report
from kfp_yolo.components.reports.evaluation import render_report as evaluation_report
from kfp_yolo.components.reports.model_card import render_model_card
from kfp_yolo.components.reports.training import render_training_report

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "a|b"]
CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="needs Chromium (apt-get install chromium)")
# Ours: records an alert() instead of blocking on it, so the DOM dump shows whether one ran.
PRELUDE = ("<script id=\"ours\">window.alert = function (x) { "
           "document.documentElement.setAttribute('data-alerted', String(x)); };</script>")


def _markdown_page(text: str) -> str:
    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8">{PRELUDE}</head>'
            f"<body>{body}</body></html>")


def _html_page(document: str) -> str:
    return document.replace("<head>", f"<head>{PRELUDE}", 1)


def _dom_after_load(page: str) -> str:
    """The DOM Chromium holds once the page loaded and its images failed or showed."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "page.html"
        path.write_text(page)
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp}/p",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run",
             "--virtual-time-budget=3000", "--dump-dom", path.as_uri()],
            capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


class _Dom(HTMLParser):
    """What a hostile name could have added, and each table's cells per row."""

    def __init__(self) -> None:
        super().__init__()
        self.alerted = False
        self.scripts: list[str] = []
        self.handlers: list[tuple[str, str]] = []
        self.foreign_images: list[str] = []
        self.tables: list[list[list[str]]] = []
        """Per table, per row, the text of each cell."""
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html" and "data-alerted" in values:
            self.alerted = True
        if tag == "script":
            self.scripts.append(values.get("id") or "?")
        self.handlers += [(tag, name) for name, _ in attrs if name.startswith("on")]
        if tag == "img" and not (values.get("src") or "").startswith("data:image/"):
            self.foreign_images.append(values.get("src") or "")
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self.tables[-1][-1].append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.tables[-1][-1][-1] += data

    def cells(self) -> set[str]:
        return {cell.strip() for table in self.tables for row in table for cell in row}


def _check(page: str, what: str) -> _Dom:
    dom = _Dom()
    dom.feed(_dom_after_load(page))
    assert not dom.alerted, f"{what}: a script ran"
    assert dom.scripts == ["ours"], f"{what}: scripts {dom.scripts}"
    assert dom.handlers == [] and dom.foreign_images == [], f"{what}: injected elements"
    for table in dom.tables:
        widths = {len(row) for row in table}
        assert len(widths) == 1, f"{what}: a table's rows have {widths} cells"
    return dom


def test_the_harness_sees_an_unescaped_name_run():
    """The check can fail: the same names put into Markdown raw do run and do break a table."""
    raw = "| class | n |\n|---|---|\n" + "".join(f"| {n} | 1 |\n" for n in HOSTILE)
    dom = _Dom()
    dom.feed(_dom_after_load(_markdown_page(raw)))
    assert dom.alerted and dom.foreign_images == ["x"]
    assert "a|b" not in dom.cells() and "a" in dom.cells()  # the row was split at the |


def test_reports_of_hostile_class_names_render_as_text(tmp_path):
    source = tmp_path / "src"
    synthesize(source, SynthSpec(images=12, imgsz=64, seed=3))
    data = yaml.safe_load((source / "data.yaml").read_text())
    data["names"] = {i: HOSTILE[i % len(HOSTILE)] + ("" if i < len(HOSTILE) else f" {i}")
                     for i in range(len(data["names"]))}
    (source / "data.yaml").write_text(yaml.safe_dump(data))
    prepared = prepare_dataset(str(source), tmp_path / "prepared")
    assert set(HOSTILE) <= set(prepared.names)

    dom = _check(_markdown_page(dataset_report(prepared)), "dataset report")
    assert set(HOSTILE) <= dom.cells()  # each name whole, in its own cell
    per_class = {name: {"precision": 0.5, "recall": 0.5, "mAP50": 0.5, "mAP50-95": 0.4}
                 for name in prepared.names}
    evaluation = evaluation_report(EvalResult(0.4, 0.5, 0.5, 0.5, per_class), min_map50_95=0.1,
                                   passed=True, verdict=f"champion {HOSTILE[1]}")
    assert set(HOSTILE) <= _check(_markdown_page(evaluation), "evaluation report").cells()
    card = render_model_card(HOSTILE[0], "v1", {
        "metrics": {"mAP50-95": 0.4}, "names": dict(enumerate(prepared.names)),
        "run_name": HOSTILE[1], "dataset_uri": f"s3://bucket/{HOSTILE[2]}"},
        {"best.pt": (9, "0" * 64)})
    assert set(HOSTILE) <= _check(_markdown_page(card), "model card").cells()
    training = render_training_report(
        {"epoch": [1.0, 2.0], "metrics/mAP50-95(B)": [0.1, 0.2]}, {},
        {"run": HOSTILE[0], "classes": ", ".join(prepared.names)}, {}, title=HOSTILE[1])
    dom = _check(_html_page(training), "training report")
    assert {HOSTILE[0], ", ".join(prepared.names)} <= dom.cells()


def test_the_plan_report_escapes_the_catalog_and_history(probe_cache, tmp_path):
    """The plan report shows the catalog's GPU names (free text an admin wrote) and the names of
    ignored history records (any object name on a shared store)."""
    import dataclasses

    from kfp_yolo.components.k8s.pools import load_pools
    from kfp_yolo.components.planner import plan
    from kfp_yolo.components.reports.plan import markdown_report

    pools = [dataclasses.replace(p, gpu_product=f"{HOSTILE[i % 3]} {p.gpu_product}")
             for i, p in enumerate(load_pools())]
    result = plan("yolov5n.yaml", imgsz=128, batch=16, pools=pools, cache_dir=probe_cache,
                  train_images=100, epochs=1)
    text = markdown_report(result, history=f"s3://b/{HOSTILE[1]}", records=0,
                           ignored=f"1 ignored: {HOSTILE[0]}.json (not JSON)")
    dom = _check(_markdown_page(text), "plan report")
    assert {p.gpu_product for p in pools} <= dom.cells()
