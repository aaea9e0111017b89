"""Reading a run's config: a YAML file (`--config F`) and `--set KEY=VALUE` overrides, checked
by RunConfig; every refusal is one UserError sentence naming the file and line, or `--set`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kfp_yolo.components.config.run_config import RunConfig, format_error
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.yaml_text import parse_yaml

__all__ = ["load_config", "parse_overrides"]


def _coerce(raw: str) -> Any:
    """A --set value in YAML's scalar syntax: 16 -> int, 0.5 -> float, true -> bool."""
    try:
        return yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turns ['epochs=3', 'model=yolov5s.yaml'] into a dict; a malformed item is a UserError."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r} is not KEY=VALUE; write for example --set epochs=3.")
        overrides[key.strip()] = _coerce(raw.strip())
    return overrides


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Reads a YAML config file (optional) and applies --set overrides; errors are UserErrors."""
    values: dict[str, Any] = {}
    source = "built-in defaults"
    if path is not None:
        if not str(path).strip():
            raise UserError("--config is empty; give the config file's path.")
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise UserError(f"{path}: cannot read the config file ({exc.strerror}).") from None
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[:exc.start].count(b"\n") + 1
            raise UserError(f"{path}: line {line} is not UTF-8 text; save the config file as "
                            "UTF-8.") from None
        loaded = parse_yaml(text, source, unique=True)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: a config file must be a mapping of KEY: VALUE, "
                            f"got {type(loaded).__name__}.")
        for key in loaded:
            if not isinstance(key, str):
                raise UserError(f"{path}: key {key!r} is not a name; keys are the names of "
                                f"config settings, e.g. epochs: 3.")
        values.update(loaded)
    set_values = parse_overrides(overrides or [])
    values.update(set_values)
    from pydantic import ValidationError

    try:
        return RunConfig(**values)
    except ValidationError as err:
        first_key = str(err.errors()[0]["loc"][0]) if err.errors()[0]["loc"] else ""
        where = "--set" if first_key in set_values else source
        if where == source and path is not None and first_key:
            where = _locate_key(Path(path), first_key)
        raise UserError(format_error(err, where)) from None


def _locate_key(path: Path, key: str) -> str:
    """'file:LINE' of a top-level key in a YAML file, or just the file when it is not found."""
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if re.match(rf"^{re.escape(key)}\s*:", line):
            return f"{path}:{number}"
    return str(path)
