"""One reader of the YAML files users write (config files, the node-pool catalog, a dataset's
data.yaml): a syntax error is one sentence naming the file, the line and the problem."""

from __future__ import annotations

from typing import Any

import yaml

from kfp_yolo.components.errors import UserError

__all__ = ["parse_yaml"]


def parse_yaml(text: str, source: str, *, what: str = "") -> Any:
    """yaml.safe_load(text); a syntax error is a UserError naming source and the line.

    Args:
        source: the file (or what stands for it, e.g. `--set`) as the user knows it.
        what: what the file is, for the sentence ("the node-pool catalog"); '' = not said.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or exc
        subject = f" {what}" if what else ""
        raise UserError(f"{source}:{where}{subject} is not valid YAML "
                        f"({' '.join(str(problem).split())}); fix the syntax.") from None
