"""Storage: s3://, minio://, file:// and plain paths behind one small API.

    from kfp_yolo.components import storage
    storage.download("s3://bucket/datasets/coco", "data/coco")
    storage.upload("runs/best.pt", "s3://bucket/models/m/v1/best.pt")

Each function opens the backend a URI names (storage.backend: the interface; storage.local;
storage.s3 through the minio SDK) and asks it; nothing here branches on the scheme.

Visibility of writes:
- One object: an S3 PUT (multipart included) is atomic, a reader sees the old object or the whole
  new one, so single objects are written in place. Local files are written under a temporary name
  and renamed (kfp_yolo.components.atomic).
- A folder: on an object store, every object is written first, then `_manifest.json` last,
  listing the objects and their sizes. `download` of a prefix that has a manifest fetches exactly
  what it lists, so a reader never sees a half-written upload; without a manifest (data copied
  there by other tools) it fetches whatever the prefix holds. A local folder is copied under a
  temporary name and renamed into place. `finished` tells a whole upload from part of one.
  Re-uploading onto the same prefix is not atomic: publish versions to fresh prefixes and move a
  small pointer object last.

Failures are one sentence: UserError (exit 2) for what the user can fix, StorageFault (exit 1)
for an object store that keeps failing, stalls or drops connections (storage.errors). Transfers
run on a thread pool, retry transient failures within a bounded time, wait at most
STALL_TIMEOUT_S between two bytes, and show progress on a terminal (storage.transfer).
"""

from __future__ import annotations

from pathlib import Path

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.storage.backend import Backend, is_remote, local_path
from kfp_yolo.components.storage.errors import StorageFault
from kfp_yolo.components.storage.local import LocalBackend
from kfp_yolo.components.storage.manifest import MANIFEST_NAME
from kfp_yolo.components.storage.settings import S3Settings, settings_from_env

__all__ = [
    "MANIFEST_NAME", "WORKERS", "S3Settings", "StorageFault", "download", "exists", "finished",
    "is_remote", "list_prefix", "local_path", "open_backend", "read_bytes", "remove",
    "settings_from_env", "upload", "write_bytes",
]

WORKERS = 16
"""Concurrent transfers of a prefix's objects."""


def open_backend(uri: str, settings: S3Settings | None = None) -> Backend:
    """The backend for uri: S3 for s3:// and minio://, the filesystem for file:// and paths.

    Args:
        uri: what to act on.
        settings: endpoint and credentials for object stores; None = `settings_from_env()`.
    """
    if is_remote(uri):
        # imported here: a local run (and every torchrun rank of one) never loads the S3 code
        from kfp_yolo.components.storage.s3 import S3Backend

        return S3Backend.open(uri, settings)
    return LocalBackend.open(uri)


def download(uri: str, dest: str | Path, *, settings: S3Settings | None = None,
             workers: int = WORKERS, progress: bool | None = None) -> Path:
    """Copies the object or prefix at uri to dest (a file or a folder); returns what it wrote.

    Args:
        uri: s3://, minio://, file:// or a path; a prefix is fetched whole, in parallel.
        dest: the file to write (for an object; an existing folder receives it under its own
            name) or the folder to fill (for a prefix).
        settings: endpoint and credentials; None = `settings_from_env()`.
        workers: concurrent transfers.
        progress: show a progress line; None = when stderr is a terminal.
    """
    return open_backend(uri, settings).download(Path(dest), workers=workers, progress=progress)


def upload(source: str | Path, uri: str, *, settings: S3Settings | None = None,
           workers: int = WORKERS, progress: bool | None = None) -> str:
    """Copies a file or folder to uri, never half-visible; returns uri.

    A folder becomes a prefix: its files in parallel, then `_manifest.json` last. A local target
    is written under a new name, then renamed. An object URI ending in '/' receives a file under
    the file's own name.
    """
    source = Path(source)
    if not source.exists():
        raise UserError(f"{str(source)!r} does not exist; nothing to upload.")
    open_backend(uri, settings).upload(source, workers=workers, progress=progress)
    return uri


def exists(uri: str, *, settings: S3Settings | None = None) -> bool:
    """True when uri names an object or a non-empty prefix (a file or folder locally)."""
    return open_backend(uri, settings).exists()


def finished(uri: str, *, settings: S3Settings | None = None) -> bool:
    """True when uri holds a whole upload: an object, a prefix with its manifest, or (locally) a
    file or folder, which upload renames into place whole. False for nothing or part of one."""
    return open_backend(uri, settings).finished()


def list_prefix(uri: str, *, settings: S3Settings | None = None) -> list[str]:
    """Relative names of the objects (files) under uri, sorted."""
    return open_backend(uri, settings).names()


def read_bytes(uri: str, *, settings: S3Settings | None = None) -> bytes:
    """The whole content of one object or file."""
    return open_backend(uri, settings).read()


def write_bytes(uri: str, data: bytes, *, settings: S3Settings | None = None) -> str:
    """Writes one object or file atomically (readers see the old or the new content); returns uri.

    Small pointers such as a registry's `latest` are written with this, after what they point to.
    """
    open_backend(uri, settings).write(data)
    return uri


def remove(uri: str, *, settings: S3Settings | None = None) -> None:
    """Deletes the object or file at uri, or everything under the prefix or folder."""
    open_backend(uri, settings).remove()
