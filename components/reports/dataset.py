"""The dataset page (Markdown): splits, instances per class, box sizes, the conversion of an
export, warnings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kfp_yolo.components.reports.escape import md_cell, md_code, md_text

if TYPE_CHECKING:  # the typed results these pages render
    from kfp_yolo.components.data.prepare import PreparedDataset


__all__ = ["render_report"]


def render_report(prepared: PreparedDataset) -> str:
    """A Markdown description of the prepared dataset."""
    s = prepared.stats
    background = s.get("background_images", {})
    lines = ["# Dataset", "",
             "| | train | val |", "|---|---|---|",
             f"| images | {s['train_images']} | {s['val_images']} |",
             f"| background images | {background.get('train', 0)} | {background.get('val', 0)} |",
             "", f"Content hash: `{prepared.content_hash}`", "",
             "## Instances per class", "", "| class | train | val | total |", "|---|---|---|---|"]
    per_split = s.get("instances_per_split", {})
    for name, total in s["instances"].items():
        train = per_split.get("train", {}).get(name, "")
        val = per_split.get("val", {}).get(name, "")
        lines.append(f"| {md_cell(name)} | {train} | {val} | {total} |")
    boxes = s.get("boxes")
    if boxes and boxes.get("count"):
        lines += ["", "## Boxes", "",
                  f"{boxes['count']} boxes; small (< 32² px) {boxes['sizes']['small']}, medium "
                  f"{boxes['sizes']['medium']}, large (>= 96² px) {boxes['sizes']['large']}.", "",
                  "| fraction of image | min | p10 | p50 | p90 | max |",
                  "|---|---|---|---|---|---|"]
        for side in ("width", "height"):
            q = boxes[side]
            lines.append(f"| {side} | {q['min']} | {q['p10']} | {q['p50']} | {q['p90']} | "
                         f"{q['max']} |")
    if "image_size" in s:
        lines += ["", f"Image sizes (h x w): {s['image_size']['min_hw']} to "
                      f"{s['image_size']['max_hw']}."]
    if prepared.conversion:
        lines += ["", *_source_lines(prepared.conversion, prepared.names)]
    if prepared.warnings:
        lines += ["", "## Warnings", ""] + [f"- {md_text(w)}" for w in prepared.warnings]
    return "\n".join(lines) + "\n"


_FORMATS = {"coco": "COCO JSON", "ndjson": "ultralytics NDJSON", "voc": "Pascal VOC"}


def _source_lines(source: dict, names: list[str]) -> list[str]:
    """The report's account of a conversion: format, files, class ids, what was changed."""
    ids = source.get("source_class_ids") or {}
    splits = "the export's own" if source["splits"] == "export" else "by val_fraction"
    lines = ["## Source", "",
             f"Converted from a {md_text(_FORMATS.get(source['format'], source['format']))} "
             f"export ({md_text(source['layout'])} layout): "
             f"{', '.join(md_code(f) for f in source['files'])}; splits: {splits}."]
    if ids:
        lines += ["", "| class | name | id in the export |", "|---|---|---|"]
        lines += [f"| {index} | {md_cell(names[int(index)])} | {md_cell(source_id)} |"
                  for index, source_id in ids.items()]
    changed = {**source.get("counts", {}), **{f"left out ({k})": v
                                              for k, v in source.get("left_out", {}).items()}}
    if changed:
        lines += ["", "; ".join(f"{md_text(k.replace('_', ' '))}: {md_text(v)}"
                                for k, v in changed.items()) + "."]
    return lines
