"""The search report: one self-contained HTML page (inline SVG, no scripts, nothing fetched)
for the Kubeflow UI's HTML viewer: the best trial, what was spent, the trials table, the metric
against each searched value and by trial order, and each trial's metric per epoch."""

from __future__ import annotations

import math

from kfp_yolo.components.hpo.result import SearchResult
from kfp_yolo.components.reports.escape import html_text as escape
from kfp_yolo.components.reports.svg import PALETTE, line_chart, nice_ticks

__all__ = ["render_report", "scatter"]

_COLORS = {"complete": PALETTE[0], "pruned": PALETTE[3], "failed": PALETTE[1]}


def scatter(points: list[tuple[float, float, str]], *, title: str, x_label: str,
            log: bool = False, best: tuple[float, float] | None = None,
            width: int = 340, height: int = 230) -> str:
    """Points (x, y, state) coloured by state; the best ringed; `log`: a log-scale x axis."""
    pts = [(math.log10(x) if log else x, y, s) for x, y, s in points
           if math.isfinite(x) and math.isfinite(y) and (x > 0 or not log)]
    head = (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title)}" font-family="sans-serif" font-size="11">'
            f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" '
            f'font-weight="bold">{escape(title)}</text>')
    if not pts:
        return head + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">' \
                      'no finished trial</text></svg>'
    xt = nice_ticks(min(p[0] for p in pts), max(p[0] for p in pts), 5)
    yt = nice_ticks(min(0.0, min(p[1] for p in pts)), max(p[1] for p in pts) or 1.0, 5)
    left, right, top, bottom = 52, width - 12, 28, height - 34

    def px(x: float) -> float:
        return left + (x - xt[0]) / ((xt[-1] - xt[0]) or 1) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - yt[0]) / ((yt[-1] - yt[0]) or 1) * (bottom - top)

    parts = [head]
    for y in yt:
        parts.append(f'<line x1="{left}" x2="{right}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                     f'stroke="#e5e5e5"/><text x="{left - 4}" y="{py(y) + 4:.1f}" '
                     f'text-anchor="end" fill="#555">{y:.3g}</text>')
    for x in xt:
        label = f"{10 ** x:.2g}" if log else f"{x:.3g}"
        parts.append(f'<text x="{px(x):.1f}" y="{bottom + 14}" text-anchor="middle" '
                     f'fill="#555">{label}</text>')
    parts.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>'
                 f'<text x="{(left + right) / 2}" y="{height - 4}" text-anchor="middle">'
                 f'{escape(x_label)}{" (log scale)" if log else ""}</text>')
    for x, y, state in pts:
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" '
                     f'fill="{_COLORS.get(state, "#888")}"><title>{escape(state)}: '
                     f'{y:.4f}</title></circle>')
    if best is not None:
        bx = math.log10(best[0]) if log else best[0]
        parts.append(f'<circle cx="{px(bx):.1f}" cy="{py(best[1]):.1f}" r="8" fill="none" '
                     'stroke="#000" stroke-width="1.5"/>')
    return "".join(parts) + "</svg>"


def _table(result: SearchResult, names: list[str]) -> str:
    head = "".join(f"<th>{escape(n)}</th>" for n in
                   ["trial", *names, "mAP50-95 (best epoch)", "epochs run", "state",
                    "device-h measured", "GPU-h estimated"])
    rows = []
    for t in result.trials:
        best = ' class="best"' if t.number == result.best else ""
        cells = [str(t.number), *(f"{t.values[n]:.4g}" if n in t.values else "-" for n in names),
                 f"{t.best_metric:.4f}" if t.best_metric is not None else "-",
                 str(len(t.metrics)), t.state + (f": {t.error}" if t.error else ""),
                 f"{t.measured_gpu_h:.4f}",
                 f"{t.estimated_gpu_h:.4g}" if t.estimated_gpu_h is not None else "-"]
        rows.append(f"<tr{best}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def render_report(result: SearchResult, *, title: str = "Hyperparameter search") -> str:
    """The whole page."""
    s = result.summary()
    best = result.best_trial
    names = sorted({k for t in result.trials for k in t.values})
    log_names = {"lr0", "weight_decay"}
    charts = []
    for name in names:
        pts = [(float(t.values[name]), t.best_metric, t.state) for t in result.trials
               if name in t.values and t.best_metric is not None]
        charts.append(scatter(pts, title=f"mAP50-95 vs {name}", x_label=name,
                              log=name in log_names,
                              best=(float(best.values[name]), best.best_metric)
                              if name in best.values else None))
    order = [(float(t.number), t.best_metric, t.state) for t in result.trials
             if t.best_metric is not None]
    charts.append(scatter(order, title="mAP50-95 by trial order", x_label="trial",
                          best=(float(best.number), best.best_metric)))
    curves = line_chart({f"trial {t.number} ({t.state})": [(i + 1, v) for i, v in
                                                           enumerate(t.metrics)]
                         for t in result.trials[:7]},
                        title="mAP50-95 per epoch (the pruner's view)", y_label="mAP50-95",
                        width=460)
    est = (f"{s['estimated_gpu_h']:.4g} GPU-hours on pool {escape(s['pool'])}"
           + (f" (${s['estimated_dollars']:.4g})" if s["estimated_dollars"] is not None else "")
           if s["estimated_gpu_h"] is not None else "no estimate (pool without images/s)")
    budget = (f"{s['budget_gpu_h']:g} GPU-hours" + (": reached, the search stopped early"
                                                     if s["budget_reached"] else "")
              if s["budget_gpu_h"] else "none")
    values = ", ".join(f"{escape(k)} = {v:.4g}" for k, v in best.values.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:sans-serif;margin:16px;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 7px;
text-align:right}}tr.best{{background:#e8f4e8;font-weight:bold}}
.charts svg{{margin:4px;border:1px solid #eee}}</style></head><body>
<h1>{escape(title)}</h1>
<p><b>Best: trial {best.number}</b>, mAP50-95 {best.best_metric:.4f} after
{len(best.metrics)} epoch(s): {values}. These values train the model.</p>
<p>{s['trials']} trials ({escape(result.algorithm)} sampling, median pruning,
{result.epochs} epochs each): {s['trials_complete']} complete, {s['trials_pruned']} pruned,
{s['trials_failed']} failed. Ran on: {escape(result.where)}.</p>
<p>Spent: {s['measured_gpu_h']:.4g} device-hours measured (wall time x devices); estimated
by the plan: {est}. Budget: {budget}.</p>
{_table(result, names)}
<div class="charts">{''.join(charts)}{curves}</div>
</body></html>
"""
