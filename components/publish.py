"""publish: a versioned upload to the model registry, then the `latest` pointer, written last.

Layout under registry_uri (s3://, minio://, file:// or a path):

    <name>/<version>/best.pt, model.onnx, model.engine (when built), metrics.json, data.yaml,
                     README.md (the model card)
    <name>/latest    {"name", "version", "uri", "published_at", "metrics"}

Publishing is complete or absent. A version folder is uploaded whole: on an object store its
files first and storage's `_manifest.json` last, the marker that it is complete; locally a
folder renamed into place. `storage.finished` checks that marker: a finished version is never
overwritten, and one that a failed publish left half-uploaded is not published, so a retry
replaces it. `latest` moves only after the version is complete, and `read_latest` checks the
marker of the version it names, so a reader never sees a half-published model and a failed
publish leaves `latest` on the previous version.

(No `from __future__ import annotations` in component modules: KFP reads the annotations.)
"""

import datetime
import hashlib
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kfp_yolo.components import storage
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s_names import MODEL_NAME

__all__ = ["LATEST", "default_version", "publish", "read_latest",
           "render_model_card"]

log = logging.getLogger(__name__)

LATEST = "latest"
CARD = "README.md"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def default_version(digests: dict[str, str], now: datetime.datetime | None = None) -> str:
    """'20261104T093012Z-1a2b3c4d': UTC time (sorts by age) + a hash of the files' contents."""
    now = now or datetime.datetime.now(datetime.UTC)
    content = hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
    return f"{now:%Y%m%dT%H%M%SZ}-{content[:8]}"


def _check(name: str, version: str, files: dict[str, Path]) -> None:
    if problem := MODEL_NAME.problem(name):
        raise UserError(f"model name {name!r} is invalid: {problem}.")
    if version and (not _SAFE.match(version) or version == LATEST):
        raise UserError(f"version {version!r} is not usable; use letters, digits, '.', '_' or "
                        f"'-', and not {LATEST!r}.")
    if not files:
        raise UserError("nothing to publish: no files given.")
    for filename, path in files.items():
        if not _SAFE.match(filename) or filename == CARD:
            raise UserError(f"file name {filename!r} cannot be published (reserved or not a "
                            "plain name).")
        if not Path(path).is_file():
            raise UserError(f"{str(path)!r} ({filename}) does not exist; nothing to publish.")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: dict[str, Any], header: tuple[str, str]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    return lines + [f"| {_cell(key)} | {_cell(value)} |" for key, value in rows.items()]


def render_model_card(name: str, version: str, metadata: dict[str, Any],
                      files: dict[str, tuple[int, str]]) -> str:
    """The model card in Markdown: metrics, every metadata section, files with sizes and sha256.

    Args:
        name: registry name of the model.
        version: the version being published.
        metadata: scalars go in a Details table; each dict value becomes a section of its own.
        files: {file name: (bytes, sha256)}.
    """
    lines = [f"# {name} {version}", "",
             "A YOLO object detector trained and exported by kfp-yolo.", ""]
    sections = {k: v for k, v in metadata.items() if isinstance(v, dict)}
    details = {k: v for k, v in metadata.items() if not isinstance(v, dict)}
    if "metrics" in sections:  # what a reader looks for first
        lines += ["## Metrics", "", *_table(sections.pop("metrics"), ("metric", "value")), ""]
    if details:
        lines += ["## Details", "", *_table(details, ("key", "value")), ""]
    for title, rows in sections.items():
        lines += [f"## {title.replace('_', ' ').capitalize()}", "",
                  *_table(rows, ("key", "value")), ""]
    lines += ["## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| {n} | {size} | `{digest}` |" for n, (size, digest) in files.items()]
    lines += ["", "## Use", "",
              "- `best.pt`: `ultralytics.YOLO('best.pt')` (PyTorch).",
              "- `model.onnx`: onnxruntime or any ONNX runtime.",
              "- `model.engine`: a plain TensorRT plan; it runs only with the TensorRT version and "
              "GPU model it was built with.", "",
              "## Licence", "",
              "Trained with ultralytics (AGPL-3.0); kfp-yolo is AGPL-3.0-or-later.", ""]
    return "\n".join(lines)


def publish(*, registry_uri: str, name: str, version: str, files: dict[str, Path],
            metadata: dict[str, Any]) -> str:
    """Uploads files and a model card to registry_uri/name/version, then moves `latest` there.

    Args:
        registry_uri: registry root (s3://, minio://, file:// or a path).
        name: model name (one folder per model).
        version: '' = a UTC timestamp and a short hash of the files' contents.
        files: {name in the registry: local file}, e.g. {"best.pt": Path(...)}.
        metadata: what the model card shows (see `render_model_card`); its "metrics" section
            is also copied into the `latest` pointer.

    Returns:
        The URI of the published version.
    """
    if not registry_uri:
        raise UserError("registry_uri is empty; set it to publish (s3://bucket/models or a path).")
    files = {filename: Path(path) for filename, path in files.items()}
    _check(name, version, files)
    described = {n: (p.stat().st_size, _sha256(p)) for n, p in sorted(files.items())}
    version = version or default_version({n: d for n, (_, d) in described.items()})
    model_uri = f"{registry_uri.rstrip('/')}/{name}"
    version_uri = f"{model_uri}/{version}"
    if storage.finished(version_uri):
        raise UserError(f"{version_uri} is already published; versions are never overwritten, "
                        "give another version.")
    if storage.exists(version_uri):
        # Files of a publish that failed midway: never visible (no manifest), so start afresh.
        log.warning("%s holds part of an unfinished publish; replacing it.", version_uri)
        storage.remove(version_uri)
    with tempfile.TemporaryDirectory(prefix="kfp-yolo-publish-") as tmp:
        stage = Path(tmp) / version
        stage.mkdir()
        for filename, path in files.items():
            shutil.copy2(path, stage / filename)
        (stage / CARD).write_text(render_model_card(name, version, metadata, described))
        storage.upload(stage, version_uri)
    pointer = {"name": name, "version": version, "uri": version_uri,
               "published_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "metrics": metadata.get("metrics", {})}
    # Last, and only after the whole version is in place: readers of `latest` never see less.
    storage.write_bytes(f"{model_uri}/{LATEST}",
                        json.dumps(pointer, indent=1, sort_keys=True).encode())
    return version_uri


def read_latest(registry_uri: str, name: str) -> dict | None:
    """The `latest` pointer of a model ({"version", "uri", ...}), or None when none is published."""
    uri = f"{registry_uri.rstrip('/')}/{name}/{LATEST}"
    if not storage.exists(uri):
        return None
    try:
        pointer = json.loads(storage.read_bytes(uri))
    except ValueError:
        raise UserError(f"{uri} is not JSON; publish again to rewrite it.") from None
    if not isinstance(pointer, dict) or "uri" not in pointer or "version" not in pointer:
        raise UserError(f"{uri} does not name a version (needs 'version' and 'uri'); publish "
                        "again to rewrite it.")
    if not storage.finished(str(pointer["uri"])):
        raise UserError(f"{uri} names {pointer['uri']}, which is absent or only partly "
                        f"uploaded; publish again to move {LATEST}.")
    return pointer
