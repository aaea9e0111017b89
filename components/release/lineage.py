"""Lineage: what every published version records of where it came from, and the chain back.

A version's `lineage.json` (also a section of its model card, MLflow tags `lineage.*` and the
Kubeflow Model Registry's custom properties `lineage_*`) holds:

    {"dataset": {"uri", "content_hash"},
     "parent": {"kind": "registry"|"file"|"scratch", "source", "name", "version", "uri",
                "sha256"},
     "config": {"sha256": canonical hash, "values": {...}},
     "package": {"kfp_yolo", "ultralytics"}, "image"}

`read_chain` follows parent.version through the registry until a version trained from scratch
(a model YAML) or from a file (a .pt path or URI): `kfp-yolo lineage VERSION` prints it.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import metadata as importlib_metadata
from typing import Any

from kfp_yolo.components.errors import UserError

__all__ = ["LINEAGE_FILE", "build_lineage", "canonical_hash", "flat_lineage", "mask_uri",
           "read_chain", "render_chain"]

LINEAGE_FILE = "lineage.json"
MAX_DEPTH = 1000
"""A chain longer than this is a loop written by hand: stop and say so."""
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)


def mask_uri(uri: str) -> str:
    """A URI with its user-info (credentials) replaced by ***."""
    return _USERINFO.sub(r"\1***@", uri)


def canonical_hash(values: dict[str, Any]) -> str:
    """sha256 of the values as sorted, compact JSON: equal configs hash equal anywhere."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _parent(parent: dict[str, Any], name: str) -> dict[str, Any]:
    """The train step's parent record (the plan step's base_model metadata) as lineage."""
    source = str(parent.get("source", ""))
    if parent.get("version"):
        kind = "registry"
    elif parent.get("sha256"):
        kind = "file"
    else:  # a model YAML, or a .pt ultralytics ships by name (in the image)
        kind = "file" if source.endswith(".pt") else "scratch"
    return {"kind": kind, "source": mask_uri(source), "name": name if kind == "registry" else "",
            "version": str(parent.get("version", "")), "uri": mask_uri(str(parent.get("uri", ""))),
            "sha256": str(parent.get("sha256", ""))}


def build_lineage(*, dataset_uri: str, dataset_hash: str, parent: dict[str, Any], name: str,
                  config: dict[str, Any], image: str) -> dict[str, Any]:
    """The lineage record of a version about to be published.

    Args:
        parent: the weights' "parent" metadata (source, and when fetched: uri, version, sha256).
        config: the run's checked config values (URIs are masked here).
    """
    values = {k: mask_uri(v) if isinstance(v, str) else v for k, v in sorted(config.items())}
    return {"dataset": {"uri": mask_uri(dataset_uri), "content_hash": dataset_hash},
            "parent": _parent(parent, name),
            "config": {"sha256": canonical_hash(values), "values": values},
            "package": {"kfp_yolo": _version("kfp-yolo"), "ultralytics": _version("ultralytics")},
            "image": image}


def flat_lineage(lineage: dict[str, Any], sep: str = ".") -> dict[str, str]:
    """Short string pairs for tags and custom properties (the config's values stay in the
    file and the card): lineage.dataset_uri, lineage.parent_version, lineage.config_sha256, ..."""
    if not lineage:
        return {}
    parent, dataset = lineage["parent"], lineage["dataset"]
    pairs = {"dataset_uri": dataset["uri"], "dataset_hash": dataset["content_hash"],
             "parent_kind": parent["kind"], "parent": parent["version"] or parent["source"],
             "parent_uri": parent["uri"], "parent_sha256": parent["sha256"],
             "config_sha256": lineage["config"]["sha256"],
             "kfp_yolo_version": lineage["package"]["kfp_yolo"],
             "ultralytics_version": lineage["package"]["ultralytics"], "image": lineage["image"]}
    return {f"lineage{sep}{k}": str(v)[:250] for k, v in pairs.items()}


def read_chain(registry_uri: str, name: str, version: str) -> list[dict[str, Any]]:
    """[{"version", "uri", "lineage"}, ...] from version back to the first one trained from
    scratch or from a file (or one published before lineage was recorded)."""
    from kfp_yolo.components import storage

    chain: list[dict[str, Any]] = []
    where = f"{registry_uri.rstrip('/')}/{name}"
    while version:
        # storage's own check, not publish's: the registries' adapters import this module
        uri = f"{where}/{version}"
        if "/" in version or not storage.finished(uri):
            raise UserError(f"{uri} is not a finished published version; `kfp-yolo lineage` "
                            f"takes one of the versions under {where}/.")
        if any(link["version"] == version for link in chain) or len(chain) >= MAX_DEPTH:
            raise UserError(f"{uri}: the lineage chain loops back to {version}; its lineage.json "
                            "was edited by hand.")
        record: dict[str, Any] = {}
        if storage.exists(f"{uri}/{LINEAGE_FILE}"):
            record = json.loads(storage.read_bytes(f"{uri}/{LINEAGE_FILE}"))
        chain.append({"version": version, "uri": uri, "lineage": record})
        parent = record.get("parent", {})
        same_model = parent.get("kind") == "registry" and parent.get("name", name) == name
        version = str(parent.get("version", "")) if same_model else ""
    return chain


def render_chain(chain: list[dict[str, Any]]) -> str:
    """The chain as lines a person reads, newest first."""
    lines = []
    for depth, link in enumerate(chain):
        record = link["lineage"]
        head = f"{'  ' * depth}{link['version']}  {link['uri']}"
        if not record:
            lines += [head, f"{'  ' * depth}  (published before lineage was recorded)"]
            continue
        parent, dataset = record["parent"], record["dataset"]
        start = {"registry": f"fine-tuned from version {parent['version']}",
                 "file": f"fine-tuned from {parent['uri'] or parent['source']}",
                 "scratch": f"trained from scratch ({parent['source']})"}[parent["kind"]]
        if parent["sha256"]:
            start += f" (sha256 {parent['sha256'][:12]})"
        lines += [head, f"{'  ' * depth}  {start}",
                  f"{'  ' * depth}  data {dataset['uri']} (content hash "
                  f"{dataset['content_hash'][:12]}), config {record['config']['sha256'][:12]}, "
                  f"kfp-yolo {record['package']['kfp_yolo']}, image {record['image']}"]
    return "\n".join(lines)
