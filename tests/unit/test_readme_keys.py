"""The README's key table says what RunConfig says: every key, its type, default and when it is set.

A key added to RunConfig without a README row fails here, on purpose: the table is where users
look up what a key does and whether the Kubeflow UI can change it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, get_args, get_origin

from kfp_yolo.components.config.run_config import COMPILE_TIME, RunConfig

README = Path(__file__).resolve().parents[2] / "README.md"
_ROW = re.compile(r"^\| `(?P<key>[a-z0-9_]+)` \| (?P<type>.+?) \| `(?P<default>[^`]*)` \| "
                  r"(?P<when>run time|compile time) \| (?P<meaning>.+) \|$")


def _type_name(annotation: object) -> str:
    if get_origin(annotation) is Literal:
        return " \\| ".join(str(a) for a in get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _default_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return '""' if value == "" else str(value)


def _readme_rows() -> dict[str, dict[str, str]]:
    text = README.read_text()
    section = text.split("\n## Config keys\n", 1)[1].split("\n## ", 1)[0]
    rows = [m.groupdict() for line in section.splitlines() if (m := _ROW.match(line))]
    assert len(rows) == len({r["key"] for r in rows}), "a key has two rows"
    return {row["key"]: row for row in rows}


def test_the_readme_table_lists_every_key_in_order():
    assert list(_readme_rows()) == list(RunConfig.model_fields), (
        "README.md's key table and RunConfig differ: add a row per key (key, type, default, "
        "run time or compile time, meaning) in RunConfig's order")


def test_each_row_gives_the_type_default_and_when_of_its_key():
    rows = _readme_rows()
    for name, field in RunConfig.model_fields.items():
        row = rows[name]
        assert row["type"] == _type_name(field.annotation), name
        assert row["default"] == _default_text(field.default), name
        expected = "compile time" if name in COMPILE_TIME else "run time"
        assert row["when"] == expected, name
        assert row["meaning"].strip(), name


def test_each_rows_meaning_is_the_parameter_description_the_ui_shows():
    """The row's meaning is the key's description (what the Kubeflow UI's form shows), so the
    two never say different things (the README had kept `checkpoint_uri`'s old meaning)."""
    rows = _readme_rows()
    for name, field in RunConfig.model_fields.items():
        assert rows[name]["meaning"] == field.description.replace("|", "\\|"), (
            f"README.md's row of {name!r}: copy its description from RunConfig")
