"""One reader of the YAML files users write (config files, the node-pool catalog, a dataset's
data.yaml): a syntax error is one sentence naming the file, the line and the problem."""

from __future__ import annotations

from typing import Any

import yaml

from kfp_yolo.components.errors import UserError

__all__ = ["DuplicateKey", "parse_yaml", "safe_load_unique"]


class DuplicateKey(yaml.YAMLError):
    """A mapping gives the same key twice (YAML keeps the last silently)."""

    def __init__(self, key: object, first_line: int, second_line: int) -> None:
        super().__init__(f"key {key!r} on lines {first_line} and {second_line}")
        self.key, self.first_line, self.second_line = key, first_line, second_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping, naming both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key == "<<":  # a merge key may repeat: that is YAML's own rule
                continue
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: SafeLoader names it itself
                continue
            if first != key_node.start_mark.line + 1:
                raise DuplicateKey(key, first, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def safe_load_unique(text: str) -> Any:
    """yaml.safe_load, refusing duplicate keys (DuplicateKey)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass



def parse_yaml(text: str, source: str, *, what: str = "", unique: bool = False) -> Any:
    """yaml.safe_load(text); a syntax error is a UserError naming source and the line.

    Args:
        source: the file (or what stands for it, e.g. `--set`) as the user knows it.
        what: what the file is, for the sentence ("the node-pool catalog"); '' = not said.
        unique: refuse a key given twice in one mapping (a config file: YAML would keep the
            last without a word), naming both lines.
    """
    try:
        return safe_load_unique(text) if unique else yaml.safe_load(text)
    except DuplicateKey as exc:
        raise UserError(f"{source}: key {exc.key!r} is given twice, on lines "
                        f"{exc.first_line} and {exc.second_line}; keep one (YAML would "
                        "use the last without a word).") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or exc
        subject = f" {what}" if what else ""
        raise UserError(f"{source}:{where}{subject} is not valid YAML "
                        f"({' '.join(str(problem).split())}); fix the syntax.") from None
