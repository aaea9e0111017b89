"""Line charts as inline SVG: no script, no font file, no network, readable in any browser and in
the Kubeflow UI's sandboxed HTML viewer."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from kfp_yolo.components.reports.escape import html_text as escape

__all__ = ["PALETTE", "line_chart", "nice_ticks"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
_MARGIN = {"left": 52, "right": 12, "top": 28, "bottom": 34}
_HALO = 'stroke="#fff" stroke-width="3" paint-order="stroke"'  # text stays legible over lines


def nice_ticks(low: float, high: float, count: int = 5, *, whole: bool = False) -> list[float]:
    """About `count` round tick values covering [low, high] (1, 2 or 5 times a power of ten);
    `whole`: steps of at least 1 (epochs)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(step, 1) if whole else step
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.001:
        return f"{value:.2g}"
    return f"{value:.4g}"


def line_chart(series: Mapping[str, Sequence[tuple[float, float]]], *, title: str,
               x_label: str = "epoch", y_label: str = "", width: int = 440, height: int = 250,
               marker_x: float | None = None, marker_label: str = "best",
               empty: str = "not recorded") -> str:
    """One chart: a polyline per series (name -> [(x, y), ...]), axes with round ticks, a legend,
    and a dashed vertical line at `marker_x`. Non-finite points are left out; a chart with no
    point says `empty` instead."""
    clean = {name: [(float(x), float(y)) for x, y in points
                    if math.isfinite(float(x)) and math.isfinite(float(y))]
             for name, points in series.items()}
    clean = {name: points for name, points in clean.items() if points}
    parts = [f'<svg viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
             'font-family="sans-serif" font-size="11">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" '
             f'font-weight="bold">{escape(title)}</text>']
    if not clean:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                     f'fill="#888">{escape(empty)}</text></svg>')
        return "".join(parts)
    xs = [x for points in clean.values() for x, _ in points]
    ys = [y for points in clean.values() for _, y in points]
    x_ticks = nice_ticks(min(xs), max(xs), 6, whole=x_label == "epoch")
    y_ticks = nice_ticks(min(ys), max(ys), 5)
    left, right = _MARGIN["left"], width - _MARGIN["right"]
    top, bottom = _MARGIN["top"], height - _MARGIN["bottom"]

    def px(x: float) -> float:
        span = (x_ticks[-1] - x_ticks[0]) or 1.0
        return left + (x - x_ticks[0]) / span * (right - left)

    def py(y: float) -> float:
        span = (y_ticks[-1] - y_ticks[0]) or 1.0
        return bottom - (y - y_ticks[0]) / span * (bottom - top)

    for y in y_ticks:
        parts.append(f'<line x1="{left}" x2="{right}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                     'stroke="#e5e5e5"/>'
                     f'<text x="{left - 4}" y="{py(y) + 4:.1f}" text-anchor="end" '
                     f'fill="#555">{_label(y)}</text>')
    for x in x_ticks:
        parts.append(f'<text x="{px(x):.1f}" y="{bottom + 14}" text-anchor="middle" '
                     f'fill="#555">{_label(x)}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#999"/>'
                 f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>'
                 f'<text x="{(left + right) / 2}" y="{height - 4}" text-anchor="middle" '
                 f'fill="#333">{escape(x_label)}</text>')
    if y_label:
        parts.append(f'<text transform="translate(12 {(top + bottom) / 2}) rotate(-90)" '
                     f'text-anchor="middle" fill="#333">{escape(y_label)}</text>')
    if marker_x is not None and x_ticks[0] <= marker_x <= x_ticks[-1]:
        at = px(marker_x)
        # the label goes left of the line near the right edge, so it is not cut off
        side = 'text-anchor="end" ' if at > right - 40 else ""
        parts.append(f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{top}" y2="{bottom}" '
                     'stroke="#444" stroke-dasharray="4 3"/>'
                     f'<text {side}x="{at + (-3 if side else 3):.1f}" y="{bottom - 4}" '
                     f'fill="#444" {_HALO}>{escape(marker_label)}</text>')
    for index, points in enumerate(clean.values()):
        color = PALETTE[index % len(PALETTE)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" '
                     f'points="{coords}"/>')
        if len(points) == 1:
            x, y = points[0]
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
    # The legend comes last, on a white backing: lines pass under it, not through its text.
    parts.append(f'<rect x="{right - 122}" y="{top - 2}" width="120" '
                 f'height="{14 * len(clean) + 4}" fill="#fff" fill-opacity="0.85"/>')
    for index, name in enumerate(clean):
        color = PALETTE[index % len(PALETTE)]
        legend_y = top + 6 + 14 * index
        parts.append(f'<rect x="{right - 118}" y="{legend_y - 8}" width="10" height="3" '
                     f'fill="{color}"/><text x="{right - 104}" y="{legend_y - 3}" '
                     f'fill="#333">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
