"""The evaluation page (Markdown): headline metrics, the gate's verdict, the per-class table and
ultralytics' plots as JPEG data URIs, sized to fit the Kubeflow UI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kfp_yolo.components.reports.escape import md_cell, md_text
from kfp_yolo.components.reports.media import MARKDOWN_LIMIT, jpeg_file_uri

if TYPE_CHECKING:  # the typed results these pages render
    from kfp_yolo.components.evaluate import EvalResult

__all__ = ["render_report"]
_CAPTIONS = {
    "BoxPR_curve": "**Precision-recall curve** per class (its mAP50 in the legend)",
    "confusion_matrix_normalized": "**Confusion matrix**, each true class's column sums to 1",
    "val_batch0_pred": "**The model's boxes on the first validation batch** (confidence >= 0.25;"
                       " a model that is not yet sure of anything draws none)",
}


# (longest side in px, JPEG quality), tried in turn until the report fits the limit
_PLOT_SIZES = ((1600, 80), (1200, 75), (900, 70), (640, 60), (480, 50))


def render_report(result: EvalResult, *, min_map50_95: float, passed: bool,
                  embed_plots: bool = True, verdict: str = "") -> str:
    """Markdown report: headline metrics, the gate, per-class table, plots embedded inline."""
    outcome = "passed" if passed else "FAILED"
    verdict = verdict or f"mAP50-95 {result.map50_95:.4f} >= {min_map50_95:.4f}"
    lines = [
        "# Evaluation", "",
        f"Gate: {md_text(verdict)}: **{outcome}**", "",
        "| metric | value |", "|---|---|",
        f"| mAP50-95 | {result.map50_95:.4f} |", f"| mAP50 | {result.map50:.4f} |",
        f"| precision | {result.precision:.4f} |", f"| recall | {result.recall:.4f} |", "",
        "| class | precision | recall | mAP50 | mAP50-95 |", "|---|---|---|---|---|",
    ]
    for name, row in result.per_class.items():
        lines.append(f"| {md_cell(name)} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['mAP50']:.3f} | {row['mAP50-95']:.3f} |")
    text = "\n".join(lines) + "\n"
    if not (embed_plots and result.plots):
        return text
    # Downscaled JPEGs, as large as the UI's limit allows (ultralytics' PNGs of 80 classes are
    # 3000 px wide: embedded as they are, the report is cut off and shows no plot at all).
    budget = MARKDOWN_LIMIT - len(text) - 2_000
    for side, quality in _PLOT_SIZES:
        images = [f"\n{_caption(plot)}\n"
                  f"![{md_text(Path(plot).stem)}]({jpeg_file_uri(plot, side, quality)})\n"
                  for plot in result.plots]
        if sum(map(len, images)) <= budget:
            return text + "".join(images)
    return text + ("\nThe plots do not fit the Kubeflow UI's 400,000 characters; they are in "
                   "the step's plots folder.\n")


def _caption(plot: str | Path) -> str:
    """The line above a plot: what it shows, so a plot that looks empty is not taken for broken."""
    stem = Path(plot).stem
    return _CAPTIONS.get(stem, f"**{md_text(stem)}**") + "\n"
