"""What the commands that read a registry share (promote, lineage, serve render, serve local):
one sentence for a config without a registry, and one way to name the version `latest` names.
"""

from __future__ import annotations

from kfp_yolo.components.config.run_config import RunConfig
from kfp_yolo.components.errors import UserError

__all__ = ["latest_version", "named_version", "registry_root"]


def registry_root(cfg: RunConfig, doing: str) -> str:
    """cfg.registry_uri; a UserError saying nothing is published to `doing` when it is empty."""
    if not cfg.registry_uri:
        raise UserError(f"registry_uri is empty: nothing is published to {doing}; set "
                        "registry_uri in the config (the registry root publish writes to).")
    return cfg.registry_uri


def latest_version(cfg: RunConfig) -> str | None:
    """The version cfg's `latest` pointer names, or None when nothing is published yet."""
    from kfp_yolo.components.release.publish import read_latest

    pointer = read_latest(cfg.registry_uri, cfg.name)
    return None if pointer is None else str(pointer["version"])


def named_version(cfg: RunConfig, version: str | None, *, doing: str) -> str:
    """version; when it is empty or `latest`, the version `latest` names (a UserError when
    nothing is published under cfg's registry and name)."""
    from kfp_yolo.components.release.publish import LATEST

    registry_root(cfg, doing)
    if version and version != LATEST:
        return version
    latest = latest_version(cfg)
    if latest is None:
        raise UserError(f"nothing is published under {cfg.registry_uri.rstrip('/')}/{cfg.name}"
                        " yet (it has no `latest`); run `make demo` (or a pipeline with "
                        "registry_uri) first, or name a version.")
    return latest
