"""The S3 backend: an object or a prefix in a bucket, through the minio SDK.

A prefix is written file by file, then `_manifest.json` last, listing the objects and their
sizes; a reader fetches exactly what the manifest lists (storage.manifest). Large
objects come down as parallel byte ranges, a prefix's small objects over presigned URLs on plain
connections (storage.presigned), everything else as one stream. Each request is retried on
transient failures (storage.errors.retry), each stream waits at most STALL_TIMEOUT_S between
bytes, and downloads are staged under a temporary name (kfp_yolo.components.atomic).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial, wraps
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from kfp_yolo.components.atomic import staged
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.runtime import usable_cpus
from kfp_yolo.components.storage import errors, manifest
from kfp_yolo.components.storage.backend import REMOTE_SCHEMES, local_path
from kfp_yolo.components.storage.errors import retry
from kfp_yolo.components.storage.manifest import MANIFEST_NAME
from kfp_yolo.components.storage.presigned import PresignedGetter
from kfp_yolo.components.storage.settings import (
    S3Settings,
    endpoint_for,
    make_client,
    settings_from_env,
)
from kfp_yolo.components.storage.transfer import Stopped, Transfer, run_parallel

if TYPE_CHECKING:
    from minio import Minio
    from minio.datatypes import Object

__all__ = ["DIRECT_MAX_BYTES", "RANGE_MIN_BYTES", "RANGE_WORKERS", "S3Backend"]

log = logging.getLogger(__name__)

RANGE_MIN_BYTES = 32 << 20
"""Objects of twice this or more are fetched as parallel byte ranges of at least this size."""
RANGE_WORKERS = 8
"""At most this many range streams, and two per usable CPU: each stream's receive and write
costs CPU, and past that they only contend (measured on 2 CPUs: 4 streams beat 8)."""
DIRECT_MAX_BYTES = 4 << 20
"""Objects of a prefix up to this size skip the SDK's HTTP stack (storage.presigned); each is
held in memory once, so at most `workers` x this at a time."""
_PRESIGN_EXPIRY = timedelta(minutes=15)
_CHUNK = 1 << 20
F = TypeVar("F", bound=Callable[..., Any])


def _translated(method: F) -> F:
    """Runs a public operation inside errors.translated, naming this URI and endpoint."""
    @wraps(method)
    def wrapper(self: S3Backend, *args: Any, **kwargs: Any) -> Any:
        with errors.translated(self.uri, self.endpoint):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _split_remote(uri: str) -> tuple[str, str]:
    """(bucket, key) of s3://bucket/key; the key may be empty or end with '/'."""
    parsed = urlparse(uri)
    if parsed.scheme not in REMOTE_SCHEMES:
        local_path(uri)  # raises the unknown-scheme error
        raise AssertionError(f"not a remote URI: {uri}")
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket:
        raise UserError(f"{uri!r} has no bucket; write {parsed.scheme}://BUCKET/PREFIX.")
    from minio.helpers import check_bucket_name

    try:
        check_bucket_name(bucket)  # the SDK's own rule; it would raise a bare ValueError later
    except ValueError:
        raise UserError(f"{uri!r}: {bucket!r} is not a valid bucket name (3 to 63 letters, "
                        "digits, '.' or '-'); fix the URI.") from None
    return bucket, key


def _safe_relative(name: str, uri: str) -> PurePosixPath:
    relative = PurePosixPath(name.lstrip("/"))
    if not relative.parts or ".." in relative.parts:
        raise UserError(f"{uri}: object {name!r} would be written outside the destination; "
                        "rename it.")
    return relative


def _stream(response: Any, write: Callable[[bytes], int], transfer: Transfer,
            expected: int | None = None) -> int:
    """Copies a response body through write, counting it on transfer; returns its length.

    A failed try takes its bytes back off the count (the retry starts over), and the stream ends
    early once another part of the transfer has failed.
    """
    moved = 0
    try:
        for chunk in response.stream(_CHUNK):
            if transfer.stop.is_set():
                raise Stopped()
            written = write(chunk)
            moved += written
            transfer.moved(written)
        if expected is not None and moved != expected:
            raise ConnectionResetError(f"the body ended after {moved} of {expected} bytes")
    except BaseException:
        transfer.moved(-moved)
        raise
    finally:
        response.close()
        response.release_conn()
    return moved


class _Counted:
    """minio's upload progress hook (set_meta, update) feeding a Transfer."""

    def __init__(self, transfer: Transfer) -> None:
        self.transfer, self.count = transfer, 0

    def set_meta(self, object_name: str, total_length: int) -> None:
        pass

    def update(self, length: int) -> None:
        if self.transfer.stop.is_set():
            raise Stopped()
        self.count += length
        self.transfer.moved(length)

    def undo(self) -> None:
        self.transfer.moved(-self.count)
        self.count = 0


@dataclass
class S3Backend:
    """An object (s3://bucket/key) or a prefix (s3://bucket/key/, s3://bucket) with its client."""

    uri: str
    bucket: str
    key: str
    endpoint: str
    client: Minio
    ca_file: str | None = None

    @classmethod
    def open(cls, uri: str, settings: S3Settings | None) -> S3Backend:
        bucket, key = _split_remote(uri)
        settings = settings_from_env() if settings is None else settings
        endpoint = endpoint_for(settings, urlparse(uri).scheme)
        return cls(uri, bucket, key, endpoint, make_client(settings, endpoint), settings.ca_file)

    @property
    def prefix(self) -> str:
        """The key as a prefix: '' for the whole bucket, else ending with '/'."""
        return self.key.rstrip("/") + "/" if self.key else ""

    @property
    def names_object(self) -> bool:
        """Whether the key could name an object (not empty, no trailing '/')."""
        return bool(self.key) and not self.key.endswith("/")

    # ------------------------------------------------------------------- the Backend interface

    @_translated
    def exists(self) -> bool:
        if self.names_object and self.stat(self.key) is not None:
            return True
        return retry(lambda: next(iter(self._listing(self.prefix)), None), self.uri) is not None

    @_translated
    def names(self) -> list[str]:
        prefix = self.prefix
        return sorted(k[len(prefix):] for k in self.objects(prefix))

    @_translated
    def read(self) -> bytes:
        return self.read_object(self.key)

    @_translated
    def write(self, data: bytes) -> None:
        if not self.names_object:
            raise UserError(f"{self.uri!r} names a prefix, not an object; add a file name.")
        self.put_bytes(self.key, data)

    @_translated
    def finished(self) -> bool:
        if self.names_object and self.stat(self.key) is not None:
            return True  # one object: a PUT is atomic
        return self.stat(self.prefix + MANIFEST_NAME) is not None

    @_translated
    def remove(self) -> None:
        from minio.deleteobjects import DeleteObject

        keys = [self.key] if self.names_object and self.stat(self.key) else sorted(
            self.objects(self.prefix))
        for failure in self.client.remove_objects(self.bucket, [DeleteObject(k) for k in keys]):
            raise UserError(f"{self.uri}: {self.endpoint} refused to delete "
                            f"{failure.name!r} ({failure.code}); check the credentials' rights.")

    @_translated
    def download(self, dest: Path, *, workers: int, progress: bool | None) -> Path:
        with Transfer(f"download {self.uri}", enabled=progress,
                      endpoint=self.endpoint) as transfer:
            if self.names_object:
                stat = self.stat(self.key)
                if stat is not None:
                    target = dest / PurePosixPath(self.key).name if dest.is_dir() else dest
                    target.parent.mkdir(parents=True, exist_ok=True)
                    transfer.plan(1, stat.size)
                    streams = min(workers, RANGE_WORKERS, 2 * usable_cpus())
                    if stat.size >= 2 * RANGE_MIN_BYTES and streams > 1:
                        get = partial(self.get_ranges, transfer, self.key, target, stat.size,
                                      stat.etag, streams)
                    else:
                        get = partial(self.get_file, transfer, self.key, target)
                    transfer.run([get], 1)
                    return target
            prefix = self.prefix
            objects = manifest.follow(self.uri, prefix, self.objects(prefix), self.read_object)
            if not objects:
                raise self.missing()
            jobs = [(key, dest / _safe_relative(key[len(prefix):], self.uri))
                    for key in sorted(objects)]
            for folder in sorted({target.parent for _, target in jobs}):
                folder.mkdir(parents=True, exist_ok=True)
            transfer.plan(len(jobs), sum(objects.values()))
            with self.presigned_getter() as getter:
                transfer.on_halt(getter.abort)
                transfer.run([partial(self.get_small, transfer, getter, key, objects[key], target)
                              for key, target in jobs], workers)
        log.info("downloaded %d objects (%.1f MB) from %s; %d through the SDK", len(jobs),
                 sum(objects.values()) / 1e6, self.uri, len(jobs) - getter.hits)
        return dest

    @_translated
    def upload(self, source: Path, *, workers: int, progress: bool | None) -> None:
        with Transfer(f"upload {self.uri}", enabled=progress,
                      endpoint=self.endpoint) as transfer:
            if source.is_file():
                key = self.key if self.names_object else self.key + source.name
                transfer.plan(1, source.stat().st_size)
                transfer.run([partial(self.put_file, transfer, source, key)], 1)
                return
            files = sorted(p for p in source.rglob("*") if p.is_file())
            names = {p.relative_to(source).as_posix(): p for p in files}
            if MANIFEST_NAME in names:
                raise UserError(f"{source / MANIFEST_NAME}: that name is reserved for the upload "
                                "manifest; rename the file.")
            prefix = self.prefix
            sizes = {name: path.stat().st_size for name, path in names.items()}
            transfer.plan(len(names), sum(sizes.values()))
            transfer.run([partial(self.put_file, transfer, path, prefix + name)
                          for name, path in names.items()], workers)
            self.put_bytes(prefix + MANIFEST_NAME, manifest.encode(sizes))  # last: publishes it
        log.info("uploaded %d files (%.1f MB) to %s", len(names), sum(sizes.values()) / 1e6,
                 self.uri)

    # ------------------------------------------------------------------------ object operations

    def _listing(self, prefix: str) -> Any:
        return self.client.list_objects(self.bucket, prefix=prefix, recursive=True)

    def objects(self, prefix: str) -> dict[str, int]:
        """{key: size} under prefix (keys ending in '/' are folder markers, skipped)."""
        return retry(lambda: {o.object_name: o.size for o in self._listing(prefix)
                              if not o.object_name.endswith("/")}, self.uri)

    def stat(self, key: str) -> Object | None:
        """The object's metadata, or None when no object has that key."""
        from minio.error import S3Error

        try:
            return retry(lambda: self.client.stat_object(self.bucket, key), key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return None
            raise

    def missing(self) -> UserError:
        """The error for 'nothing at this URI', telling a missing bucket apart."""
        if not retry(lambda: self.client.bucket_exists(self.bucket), self.bucket):
            return UserError(f"{self.uri}: bucket {self.bucket!r} does not exist at "
                             f"{self.endpoint}; create it or fix the URI.")
        return UserError(f"{self.uri} does not exist at {self.endpoint}; check the URI.")

    def read_object(self, key: str) -> bytes:
        def attempt() -> bytes:
            response = self.client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return retry(attempt, key)

    def put_bytes(self, key: str, data: bytes) -> None:
        retry(lambda: self.client.put_object(self.bucket, key, io.BytesIO(data), len(data)), key)

    def put_file(self, transfer: Transfer, source: Path, key: str) -> int:
        """Uploads one file (multipart when large); returns its size."""
        def attempt() -> None:
            counted = _Counted(transfer)
            try:
                self.client.fput_object(self.bucket, key, str(source), progress=counted)
            except BaseException:
                counted.undo()
                raise

        retry(attempt, key, stop=transfer.stop)
        return source.stat().st_size

    def get_file(self, transfer: Transfer, key: str, dest: Path) -> int:
        """Streams one object into dest through a temporary file; returns its size.

        Many small objects are bound by per-file overhead, so this does few system calls: the
        caller creates the folders, and the temporary file is only removed when something failed.
        """
        with staged(dest, unlink_first=True) as part:
            def attempt() -> int:
                response = self.client.get_object(self.bucket, key)
                with open(part, "wb") as handle:
                    return _stream(response, handle.write, transfer)

            return retry(attempt, key, stop=transfer.stop)

    def get_small(self, transfer: Transfer, getter: PresignedGetter, key: str, size: int,
                  dest: Path) -> int:
        """One object of a prefix: presigned when small, else (or on a miss) through the SDK."""
        if size <= DIRECT_MAX_BYTES:
            body = retry(lambda: getter.get(key, size), key, stop=transfer.stop)
            if body is not None:
                with staged(dest, unlink_first=True) as part:
                    part.write_bytes(body)
                transfer.moved(len(body))
                return len(body)
            if transfer.stop.is_set():  # a miss because the transfer halted: no SDK try
                raise Stopped()
        return self.get_file(transfer, key, dest)

    def get_ranges(self, transfer: Transfer, key: str, dest: Path, size: int, etag: str | None,
                   streams: int) -> int:
        """Fetches a large object as parallel byte ranges into one file; returns its size.

        One stream is bounded by a single connection (and a single server thread); ranges use
        several, as the AWS CLI does. If-Match keeps every range on the same version of the object.
        """
        step = max(RANGE_MIN_BYTES, -(-size // streams))
        headers = {"If-Match": etag} if etag else None

        def fetch(offset: int, length: int, fd: int) -> None:
            def attempt() -> None:
                response = self.client.get_object(self.bucket, key, offset=offset, length=length,
                                                  request_headers=headers)
                position = offset

                def write(chunk: bytes) -> int:
                    nonlocal position
                    written = os.pwrite(fd, chunk, position)
                    position += written
                    return written

                _stream(response, write, transfer, expected=length)

            retry(attempt, f"{key} bytes {offset}+{length}", stop=transfer.stop)

        with staged(dest, unlink_first=True) as part:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.ftruncate(fd, size)
                ranges = [(o, min(step, size - o)) for o in range(0, size, step)]
                run_parallel([partial(fetch, o, n, fd) for o, n in ranges], len(ranges),
                             transfer.halt)
            finally:
                os.close(fd)
        return size

    def presigned_getter(self) -> PresignedGetter:
        """GETs this bucket's small objects off the SDK's HTTP stack (see storage.presigned)."""
        def presign(key: str) -> str:
            return self.client.presigned_get_object(self.bucket, key, expires=_PRESIGN_EXPIRY)

        return PresignedGetter(presign, ca_file=self.ca_file,
                               connect_timeout_s=errors.CONNECT_TIMEOUT_S,
                               read_timeout_s=errors.STALL_TIMEOUT_S)
