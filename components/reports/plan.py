"""The plan as text: the per-pool table of `kfp-yolo plan` and the plan step's Markdown report."""

from __future__ import annotations

from typing import Any

from kfp_yolo.components.reports.escape import md_cell, md_text

__all__ = ["duration", "markdown_report", "money"]


def duration(seconds: float | None) -> str:
    """45s, 12m05s, 3h20m; '-' for unknown."""
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def money(value: float | None) -> str:
    """A cost: two decimals from 10, three from 0.01, four below; '-' for unknown."""
    if value is None:
        return "-"
    return f"{value:,.2f}" if value >= 10 else f"{value:.3f}" if value >= 0.01 else f"{value:.4f}"


def markdown_report(result: Any, *, history: str = "", records: int = 0,
                    ignored: str = "") -> str:
    """The plan step's report (Kubeflow UI): the choice, the rules and the per-pool table."""
    scope = (f"{result.train_images} training images x {result.epochs} epochs"
             if result.train_images else "dataset size unknown: no epoch or run time")
    lines = [
        "# Plan", "",
        f"**Pool {md_text(result.pool.name)}** ({md_text(result.pool.gpu_product)}), "
        f"batch {result.batch} "
        f"({result.batch_per_gpu} per GPU x {result.world_size}), predicted peak "
        f"{result.peak_mib:,} MiB per GPU.", "",
        f"- {md_text(result.pool_rule)}",
        f"- {md_text(result.batch_rule)}",
        f"- throughput history: {md_text(history or 'none configured')} ({records} records "
        f"read{'; ' + md_text(ignored) if ignored else ''})", "",
        f"Per pool ({scope}; images/s of the whole job: *measured* = the median of the "
        "nearest shape's newest runs in the history on that GPU type, scaled to this shape; "
        "*estimated* = the H200 reference scaled by the GPU's spec sheet, capped by the "
        "dataloader):", "",
        "| pool | GPU | batch | peak MiB | fits | images/s | source | epoch | run | $/GPU-h "
        "| $/epoch | $/run | note |",
        "|---|---|--:|--:|---|--:|---|--:|--:|--:|--:|--:|---|",
    ]
    for row in result.pools:
        name = f"**{md_cell(row.name)}**" if row.name == result.pool.name else md_cell(row.name)
        speed = f"{row.images_per_s:,.0f}" if row.images_per_s else "-"
        price = f"{row.price_per_gpu_hour:.2f}" if row.price_per_gpu_hour is not None else "-"
        note = md_cell(row.why or row.images_per_s_note)
        lines.append(f"| {name} | {md_cell(row.gpu_product)} | {row.batch} | "
                     f"{row.peak_mib:,} | "
                     f"{'yes' if row.fits else 'no'} | {speed} | {row.images_per_s_source} | "
                     f"{duration(row.epoch_s)} | {duration(row.run_s)} | {price} | "
                     f"{money(row.cost_per_epoch)} | {money(row.cost_per_run)} | {note} |")
    return "\n".join(lines) + "\n"
