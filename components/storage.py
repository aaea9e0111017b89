"""Storage: s3://, minio://, file:// and plain paths behind one small API.

(Local paths only so far; the object-store side comes with the dataset issue.)
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlparse

from components.errors import UserError

__all__ = ["download", "is_remote", "local_path", "upload"]

REMOTE_SCHEMES = {"s3", "minio"}


def is_remote(uri: str) -> bool:
    """True for object-store URIs."""
    return urlparse(uri).scheme in REMOTE_SCHEMES


def local_path(uri: str) -> Path:
    """The filesystem path of a file:// URI or plain path."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "":
        return Path(uri)
    raise UserError(f"{uri!r}: unknown URI scheme {parsed.scheme!r}; use s3://, minio://, "
                    "file:// or a path.")


def download(uri: str, dest: str | Path) -> Path:
    """Copies the object or prefix at uri to dest (a file or a folder); returns dest."""
    dest = Path(dest)
    source = local_path(uri)
    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True)
    elif source.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
    else:
        raise UserError(f"{uri!r} does not exist.")
    return dest


def upload(source: str | Path, uri: str) -> str:
    """Copies a file or folder to uri, never half-visible: written under a new name, then moved."""
    source = Path(source)
    target = local_path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    if source.is_dir():
        shutil.copytree(source, partial)
        if target.exists():
            shutil.rmtree(target)
    else:
        shutil.copy2(source, partial)
    os.replace(partial, target)
    return uri
