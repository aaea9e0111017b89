"""One escaping rule for every page a person reads: what users wrote stays text.

Class names, run and model names, paths and metadata come from users' data and configs; a name
such as `<script>alert(1)</script>` or `a|b` must show as itself, not run or break a table.

- HTML pages (the training report): `html_text` (HTML escaping, quotes included).
- Markdown pages (the prepare, plan and evaluate reports, the model card; the Kubeflow UI and
  the Model Registry UI render them): `md_text` escapes HTML's `& < >` as entities and
  backslash-escapes Markdown's inline specials, so no tag, link, image or emphasis can start
  from a value; `md_cell` does that and also keeps a table cell on one line with `|` escaped;
  `md_code` is a code span for values shown verbatim (paths, hashes).
"""

from __future__ import annotations

import html
import re

__all__ = ["html_text", "md_cell", "md_code", "md_text"]

# What starts something inline in CommonMark/GFM: code, emphasis, links and images (`[`: `!` and
# `(` do nothing without it), strikethrough, table cells. An `_` between letters or digits
# cannot open or close emphasis, so `images_per_s` stays readable. `#`, `+`, `-` and `.` only
# matter at the start of a line, and values are never put there.
_MD_SPECIAL = re.compile(r"([\\`*\[\]~|]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def html_text(value: object) -> str:
    """value as HTML text or an attribute value (quotes escaped)."""
    return html.escape(str(value), quote=True)


def md_text(value: object) -> str:
    """value as Markdown text that renders as itself: no HTML, link, image or emphasis."""
    text = " ".join(str(value).splitlines())
    text = _MD_SPECIAL.sub(r"\\\1", text)
    # Entities after the backslashes: an entity holds no special, and a backslash before `<`
    # would not stop a Markdown renderer that passes raw HTML through.
    return re.sub(r"[&<>]", lambda m: _ENTITIES[m.group(0)], text)


def md_cell(value: object) -> str:
    """value as one Markdown table cell: md_text (which escapes `|`), on one line."""
    return md_text(value).strip() or " "


def md_code(value: object, *, in_table: bool = False) -> str:
    """value as an inline code span, verbatim; the fence is longer than any run of backticks
    inside. in_table: `|` escaped (GFM splits a row on it even inside code)."""
    text = " ".join(str(value).splitlines())
    if in_table:
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
