"""The storage backend interface, and which backend a URI names.

A backend is one location (a file or folder, an object or a prefix) with the operations the
package's public functions need. Two implement it: storage.local (plain paths, file://) and
storage.s3 (s3://, minio:// through the minio SDK). How a folder becomes visible whole is each
backend's business: a local folder is renamed into place, a prefix gets its manifest last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from kfp_yolo.components.errors import UserError

__all__ = ["REMOTE_SCHEMES", "Backend", "is_remote", "local_path"]

REMOTE_SCHEMES = {"s3", "minio"}


class Backend(Protocol):
    """One location and what can be done with it; every method raises UserError for what the
    user can fix and storage.errors.StorageFault for failures worth trying again."""

    uri: str

    def exists(self) -> bool:
        """True for a file or an object, a folder or a non-empty prefix."""

    def names(self) -> list[str]:
        """Relative names of the files (objects) under the location, sorted."""

    def read(self) -> bytes:
        """The whole content of one file or object."""

    def write(self, data: bytes) -> None:
        """Replaces one file or object at once: readers see the old or the new content."""

    def finished(self) -> bool:
        """True when the location holds a whole upload (a file, or a folder whose every file
        arrived); False when there is nothing or only part of one."""

    def remove(self) -> None:
        """Deletes the file or object, or everything under the folder or prefix."""

    def download(self, dest: Path, *, workers: int, progress: bool | None) -> Path:
        """Copies the location to dest (a file, or the folder to fill); returns what it wrote."""

    def upload(self, source: Path, *, workers: int, progress: bool | None) -> None:
        """Copies a file or folder here, never half-visible."""


def is_remote(uri: str) -> bool:
    """True for object-store URIs."""
    return urlparse(uri).scheme in REMOTE_SCHEMES


def local_path(uri: str) -> Path:
    """The filesystem path of a file:// URI or plain path."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return Path(uri)  # a plain path (a Windows drive letter parses as a scheme)
    raise UserError(f"{uri!r}: unknown URI scheme {parsed.scheme!r}; use s3://, minio://, "
                    "file:// or a path.")
