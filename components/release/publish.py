"""publish: a versioned upload to the model registry, then the `latest` pointer, written last.

Layout under registry_uri (s3://, minio://, file:// or a path):

    <name>/<version>/best.pt, model.onnx, model.engine (when built), metrics.json, data.yaml,
                     README.md (the model card), triton/ (a Triton model repository, when given)
    <name>/latest    {"name", "version", "uri", "published_at", "metrics"}

A version is finished when its complete marker (`complete.json`: every file of the version with
its size and sha256) is there and every file it lists is there with that size and sha256
(`verify_version`). publish writes the marker into the version last, before the registries and
`latest`; promote, `serve render`, deploy, the champion lookup (`read_latest`) and the
registries' steps refuse a version that fails it, naming the missing or changed file.

Publishing is complete or absent. A version folder is uploaded whole: on an object store its
files first and storage's `_manifest.json` last, the marker that it is complete; locally a
folder renamed into place. `storage.finished` checks that marker: a finished version is never
overwritten, and one that a failed publish left half-uploaded is not published, so a retry
replaces it. `latest` moves only after the version is complete, and `read_latest` checks the
marker of the version it names, so a reader never sees a half-published model and a failed
publish leaves `latest` on the previous version.

Order with model registries (MLflow, Kubeflow Model Registry; kfp_yolo.components.registries):
files and manifest, then each registry, then `latest`. A registry that is down fails the
publish with a Fault and `latest` stays where it was; the finished version folder stays too,
and a retry (the same files, so the same content hash in the default version name) resumes
that version instead of uploading another: it registers what is missing (each registry's
registration is idempotent) and then moves `latest`.

(No `from __future__ import annotations` in component modules: KFP reads the annotations.)
"""

import datetime
import hashlib
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kfp_yolo.components import storage
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.names import MODEL_NAME
from kfp_yolo.components.registries import Registry, Release, RunSource, serving_uri
from kfp_yolo.components.reports.media import fit_markdown
from kfp_yolo.components.reports.model_card import render_model_card

__all__ = ["COMPLETE", "LATEST", "default_version", "finished_version", "promote", "publish",
           "read_latest", "verify_version", "version_uri"]

log = logging.getLogger(__name__)

LATEST = "latest"
CARD = "README.md"
COMPLETE = "complete.json"
"""The version's complete marker: {"files": {relative path: {"bytes", "sha256"}}}."""
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def default_version(digests: dict[str, str], now: datetime.datetime | None = None) -> str:
    """'20261104T093012Z-1a2b3c4d': UTC time (sorts by age) + a hash of the files' contents."""
    now = now or datetime.datetime.now(datetime.UTC)
    content = hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
    return f"{now:%Y%m%dT%H%M%SZ}-{content[:8]}"


def _check_names(name: str, version: str) -> None:
    if problem := MODEL_NAME.problem(name):
        raise UserError(f"model name {name!r} is invalid: {problem}.")
    if version and (not _SAFE.match(version) or version == LATEST):
        raise UserError(f"version {version!r} is not usable; use letters, digits, '.', '_' or "
                        f"'-', and not {LATEST!r}.")


def _check(name: str, version: str, files: dict[str, Path], folders: dict[str, Path]) -> None:
    _check_names(name, version)
    if not files:
        raise UserError("nothing to publish: no files given.")
    for filename, path in files.items():
        if not _SAFE.match(filename) or filename in (CARD, COMPLETE):
            raise UserError(f"file name {filename!r} cannot be published (reserved or not a "
                            "plain name).")
        if not Path(path).is_file():
            raise UserError(f"{str(path)!r} ({filename}) does not exist; nothing to publish.")
    for folder, path in folders.items():
        if not _SAFE.match(folder) or folder in files or not Path(path).is_dir():
            raise UserError(f"folder {folder!r} ({str(path)!r}) cannot be published: not a "
                            "plain name, a file's name, or not a folder.")


def version_uri(registry_uri: str, name: str, version: str) -> str:
    """registry_uri/name/version."""
    return f"{registry_uri.rstrip('/')}/{name}/{version}"


def _resumable(model_uri: str, content: str, card: Callable[[str], str]) -> str:
    """The finished version of these same files and metadata that a failed publish left (its
    model card is the one this publish would write), or ''."""
    if not storage.exists(model_uri):
        return ""
    versions = {n.split("/", 1)[0] for n in storage.list_prefix(model_uri) if "/" in n}
    for version in sorted(versions, reverse=True):  # newest first: names start with UTC time
        uri = f"{model_uri}/{version}"
        if (version.endswith(f"-{content[:8]}") and storage.finished(uri)
                and storage.read_bytes(f"{uri}/{CARD}").decode() == card(version)):
            return version
    return ""


def _formats(files: dict[str, Path], tensorrt_version: str) -> dict[str, str]:
    formats = {"onnx": "1"} if "model.onnx" in files else {}
    if "model.engine" in files:
        formats["tensorrt"] = tensorrt_version or "unknown"
    return formats


def _move_latest(model_uri: str, release: Release) -> None:
    pointer = {"name": release.name, "version": release.version, "uri": release.uri,
               "published_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "metrics": release.metrics}
    storage.write_bytes(f"{model_uri}/{LATEST}",
                        json.dumps(pointer, indent=1, sort_keys=True).encode())


def publish(*, registry_uri: str, name: str, version: str, files: dict[str, Path],
            metadata: dict[str, Any], folders: dict[str, Path] | None = None,
            registries: Sequence[Registry] = (), champion: bool = True,
            source: RunSource | None = None, dataset_hash: str = "",
            tensorrt_version: str = "", lineage: dict[str, Any] | None = None) -> str:
    """Uploads files and a model card to registry_uri/name/version, registers it, moves `latest`.

    Args:
        registry_uri: registry root (s3://, minio://, file:// or a path).
        name: model name (one folder per model).
        version: '' = a UTC timestamp and a short hash of the files' contents. A finished
            version with the same files and metadata (what a failed publish left) is resumed:
            registered and pointed at, not uploaded again.
        files: {name in the registry: local file}, e.g. {"best.pt": Path(...)}.
        metadata: what the model card shows (see `render_model_card`); its "metrics" section
            is also copied into the `latest` pointer and the registries.
        folders: {name in the registry: local folder} copied whole (the Triton repository).
        registries: where the version is also registered (kfp_yolo.components.registries).
        champion: move the registries' champion and `latest` to this version (the gate passed).
        source, dataset_hash, tensorrt_version, lineage: what the registries record of the
            version (lineage: components/release/lineage.py).

    Returns:
        The URI of the published version.
    """
    if not registry_uri:
        raise UserError("registry_uri is empty; set it to publish (s3://bucket/models or a path).")
    files = {filename: Path(path) for filename, path in files.items()}
    folders = {folder: Path(path) for folder, path in (folders or {}).items()}
    _check(name, version, files, folders)
    described = {n: (p.stat().st_size, _sha256(p)) for n, p in sorted(files.items())}
    content = hashlib.sha256(json.dumps({n: d for n, (_, d) in described.items()},
                                        sort_keys=True).encode()).hexdigest()
    model_uri = f"{registry_uri.rstrip('/')}/{name}"
    version = (version or _resumable(
        model_uri, content, lambda v: fit_markdown(render_model_card(name, v, metadata, described,
                                                                     sorted(folders))))
        or default_version({n: d for n, (_, d) in described.items()}))
    target = version_uri(registry_uri, name, version)
    card = fit_markdown(render_model_card(name, version, metadata, described, sorted(folders)),
                        "the version's files hold it all")
    if storage.finished(target):
        # The same files and metadata as a finished version: an earlier try of this publish
        # that failed later (a registry was down). Anything else would overwrite a version.
        if storage.read_bytes(f"{target}/{CARD}").decode() != card:
            raise UserError(f"{target} is already published; versions are never overwritten, "
                            "give another version.")
        log.warning("%s was uploaded by an earlier try of this publish; registering it.", target)
    else:
        if storage.exists(target):
            # Files of a publish that failed midway: never visible (no manifest), so start afresh.
            log.warning("%s holds part of an unfinished publish; replacing it.", target)
            storage.remove(target)
        with tempfile.TemporaryDirectory(prefix="kfp-yolo-publish-") as tmp:
            stage = Path(tmp) / version
            stage.mkdir()
            for filename, path in files.items():
                shutil.copy2(path, stage / filename)
            for folder, path in folders.items():
                shutil.copytree(path, stage / folder)
            (stage / CARD).write_text(card)
            # The marker goes last into the version (storage's own manifest after it on an
            # object store): it lists every file above with its size and sha256.
            (stage / COMPLETE).write_text(_complete_marker(stage))
            storage.upload(stage, target)
    verify_version(target)  # what readers will check, checked before anyone is told
    release = Release(name=name, version=version, uri=target,
                      serving_uri=serving_uri(f"{target}/triton") if "triton" in folders else "",
                      metrics=dict(metadata.get("metrics", {})), dataset_hash=dataset_hash,
                      formats=_formats(files, tensorrt_version), files=files, source=source,
                      lineage=dict(lineage or {}))
    for registry in registries:  # each idempotent: a retry completes what a failure left
        registry.register(release, champion=champion)
    if champion:
        # Last, and only after the version and its registrations: readers never see less.
        _move_latest(model_uri, release)
    return target


def _complete_marker(stage: Path) -> str:
    files = {path.relative_to(stage).as_posix(): {"bytes": path.stat().st_size,
                                                   "sha256": _sha256(path)}
             for path in sorted(stage.rglob("*")) if path.is_file() and path.name != COMPLETE}
    return json.dumps({"files": files}, indent=1, sort_keys=True)


def _digest_of(uri: str) -> tuple[int, str]:
    """(bytes, sha256) of one stored file; a local one is hashed in place."""
    if not storage.is_remote(uri):
        path = storage.local_path(uri)
        return path.stat().st_size, _sha256(path)
    data = storage.read_bytes(uri)
    return len(data), hashlib.sha256(data).hexdigest()


def verify_version(uri: str, *, fix: str = "publish it again") -> None:
    """Checks that the version at uri holds every file its complete marker lists, with the
    recorded size and sha256; a UserError naming the first missing or changed file."""
    marker_uri = f"{uri.rstrip('/')}/{COMPLETE}"
    if not storage.finished(uri) or not storage.exists(marker_uri):
        raise UserError(f"{uri} is not a finished version: it has no {COMPLETE} (absent, only "
                        f"partly uploaded, or published before kfp-yolo wrote one); {fix}.")
    try:
        listed = json.loads(storage.read_bytes(marker_uri))["files"]
        expected = {str(n): (int(d["bytes"]), str(d["sha256"])) for n, d in listed.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{marker_uri} is not a complete marker (JSON with files: "
                        f"{{name: {{bytes, sha256}}}}); {fix}.") from None
    present = set(storage.list_prefix(uri))
    for name, (size, digest) in sorted(expected.items()):
        if name not in present:
            raise UserError(f"{uri} is not complete: {name} is missing ({COMPLETE} lists it); "
                            f"{fix}.")
        got_size, got_digest = _digest_of(f"{uri.rstrip('/')}/{name}")
        if (got_size, got_digest) != (size, digest):
            raise UserError(f"{uri} is not intact: {name} changed after publishing ({got_size} "
                            f"bytes, sha256 {got_digest[:12]}..., {COMPLETE} records {size} "
                            f"bytes, {digest[:12]}...); {fix}.")


def finished_version(registry_uri: str, name: str, version: str, *,
                     command: str = "kfp-yolo promote") -> str:
    """The URI of a finished, intact published version; a UserError naming where the versions
    are, or the missing or changed file."""
    _check_names(name, version)
    target = version_uri(registry_uri, name, version)
    if not version or not storage.finished(target):
        raise UserError(f"{target} is not a finished published version; `{command}` "
                        "takes one of the versions under "
                        f"{registry_uri.rstrip('/')}/{name}/.")
    verify_version(target, fix=f"`{command}` takes a finished version; publish this one again "
                               "or choose another")
    return target


def promote(*, registry_uri: str, name: str, version: str,
            registries: Sequence[Registry] = ()) -> dict:
    """Points `latest` (and each registry's champion) at an earlier finished version.

    Returns:
        The new `latest` pointer.
    """
    target = finished_version(registry_uri, name, version)
    metrics: dict = {}
    if storage.exists(f"{target}/metrics.json"):
        metrics = json.loads(storage.read_bytes(f"{target}/metrics.json"))
    names = storage.list_prefix(target)
    release = Release(name=name, version=version, uri=target,
                      serving_uri=serving_uri(f"{target}/triton")
                      if any(n.startswith("triton/") for n in names) else "",
                      metrics=metrics, formats=_formats({n: Path(n) for n in names}, ""))
    for registry in registries:
        registry.promote(release)
    _move_latest(f"{registry_uri.rstrip('/')}/{name}", release)
    return read_latest(registry_uri, name)


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
    verify_version(str(pointer["uri"]), fix=f"publish again, or `kfp-yolo promote` a finished "
                                           f"version, to move {LATEST}")
    return pointer
