"""Storage: s3://, minio://, file:// and plain paths behind one small API.

Object stores go through the minio SDK. The endpoint and credentials are what a Kubernetes Secret
provides (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); `settings_from_env` is the
only reader of those variables, and nothing here logs the secret or puts it in a message.

Visibility of writes:
- One object: an S3 PUT (multipart included) is atomic, a reader sees the old object or the whole
  new one, so single objects are written in place. Local files are written under a temporary name
  and renamed.
- A prefix (a folder): every object is written first, then `_manifest.json` last, listing the
  objects and their sizes. `download` of a prefix that has a manifest fetches exactly what it
  lists, so a reader never sees a half-written upload; without a manifest (data copied there by
  other tools) it fetches whatever the prefix holds. Re-uploading onto the same prefix is not
  atomic: publish versions to fresh prefixes and move a small pointer object last.

Transfers run on a thread pool, retry transient failures with exponential backoff, and never wait
on a dead endpoint for more than a few seconds. Many small objects are bound by the client's CPU
per request, so a prefix's small objects go over presigned URLs on plain connections
(storage.presigned) rather than the SDK's heavier HTTP stack; large objects come as parallel
byte ranges.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache, partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.runtime import usable_cpus
from kfp_yolo.components.storage.errors import BACKOFF_S, retry, translated
from kfp_yolo.components.storage.presigned import PresignedGetter

if TYPE_CHECKING:
    from minio import Minio
    from minio.datatypes import Object

__all__ = [
    "MANIFEST_NAME", "S3Settings", "download", "exists", "is_remote", "list_prefix", "local_path",
    "read_bytes", "settings_from_env", "upload", "write_bytes",
]

log = logging.getLogger(__name__)

REMOTE_SCHEMES = {"s3", "minio"}
MANIFEST_NAME = "_manifest.json"
WORKERS = 16
"""Concurrent transfers for a prefix; the connection pool holds as many connections."""
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 60.0
RANGE_MIN_BYTES = 32 << 20
"""Objects of twice this or more are fetched as parallel byte ranges of at least this size."""
RANGE_WORKERS = 8
"""At most this many range streams, and two per usable CPU: each stream's receive and write
costs CPU, and past that they only contend (measured on 2 CPUs: 4 streams beat 8)."""
DIRECT_MAX_BYTES = 4 << 20
"""Objects of a prefix up to this size skip the SDK's HTTP stack (storage.presigned); each is
held in memory once, so at most WORKERS x this at a time."""
_PRESIGN_EXPIRY = timedelta(minutes=15)
_CHUNK = 1 << 20
_PART_IDS = itertools.count()
_AWS_ENDPOINT = "https://s3.amazonaws.com"


# ---------------------------------------------------------------------------------------- URIs


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


def _split_remote(uri: str) -> tuple[str, str]:
    """(bucket, key) of s3://bucket/key; the key may be empty or end with '/'."""
    parsed = urlparse(uri)
    if parsed.scheme not in REMOTE_SCHEMES:
        local_path(uri)  # raises the unknown-scheme error
        raise AssertionError(f"not a remote URI: {uri}")
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket:
        raise UserError(f"{uri!r} has no bucket; write {parsed.scheme}://BUCKET/PREFIX.")
    return bucket, key


# ------------------------------------------------------------------------------ settings, client


@dataclass(frozen=True)
class S3Settings:
    """Where the object store is and who we are; the secret never appears in repr()."""

    endpoint: str | None
    """URL such as http://minio.kubeflow:9000; None = AWS S3."""
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    region: str | None = None
    """None = ask the server once per bucket."""
    ca_file: str | None = None
    """CA bundle for https endpoints; None = certifi's."""


def settings_from_env(environ: Mapping[str, str] | None = None) -> S3Settings:
    """Reads AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_REGION)."""
    env = os.environ if environ is None else environ
    access, secret = env.get("AWS_ACCESS_KEY_ID") or None, env.get("AWS_SECRET_ACCESS_KEY") or None
    if bool(access) != bool(secret):
        missing = "AWS_SECRET_ACCESS_KEY" if access else "AWS_ACCESS_KEY_ID"
        raise UserError(f"{missing} is not set while its partner is; set both or neither.")
    return S3Settings(
        endpoint=env.get("AWS_ENDPOINT_URL") or None, access_key=access, secret_key=secret,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        ca_file=env.get("SSL_CERT_FILE") or None)


def _endpoint(settings: S3Settings, scheme: str) -> str:
    if settings.endpoint:
        return settings.endpoint
    if scheme == "minio":
        raise UserError("minio:// needs AWS_ENDPOINT_URL, e.g. http://minio-service.kubeflow:9000; "
                        "set it (a Kubernetes Secret usually provides it).")
    return _AWS_ENDPOINT


@lru_cache(maxsize=8)
def _client(settings: S3Settings, endpoint: str) -> Minio:
    """One client (thread-safe, pooled connections) per settings."""
    import certifi
    import urllib3
    from minio import Minio

    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/"):
        raise UserError(f"AWS_ENDPOINT_URL {endpoint!r} is not an endpoint URL; write "
                        "http(s)://HOST[:PORT] with no path.")
    http = urllib3.PoolManager(
        # Bounded: a dead endpoint fails in seconds instead of minio's 5-minute default.
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
        maxsize=WORKERS * 2,
        cert_reqs="CERT_REQUIRED",
        ca_certs=settings.ca_file or certifi.where(),
        retries=urllib3.Retry(total=3, connect=2, read=2, backoff_factor=BACKOFF_S,
                              status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(parsed.netloc, access_key=settings.access_key, secret_key=settings.secret_key,
                 secure=parsed.scheme == "https", region=settings.region, http_client=http)


@dataclass
class _Remote:
    """A parsed remote URI with its client, so each public function opens one."""

    uri: str
    bucket: str
    key: str
    endpoint: str
    client: Minio
    ca_file: str | None = None

    @classmethod
    def open(cls, uri: str, settings: S3Settings | None) -> _Remote:
        bucket, key = _split_remote(uri)
        settings = settings_from_env() if settings is None else settings
        endpoint = _endpoint(settings, urlparse(uri).scheme)
        return cls(uri, bucket, key, endpoint, _client(settings, endpoint), settings.ca_file)

    def errors(self) -> AbstractContextManager[None]:
        return translated(self.uri, self.endpoint)

    def objects(self, prefix: str) -> dict[str, int]:
        """{key: size} under prefix (keys ending in '/' are folder markers, skipped)."""
        listing = self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
        return {o.object_name: o.size for o in listing if not o.object_name.endswith("/")}

    def stat(self, key: str) -> Object | None:
        """The object's metadata, or None when no object has that key."""
        from minio.error import S3Error

        try:
            return retry(lambda: self.client.stat_object(self.bucket, key), key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return None
            raise

    def presigned_getter(self) -> PresignedGetter:
        """GETs this bucket's small objects off the SDK's HTTP stack (see storage.presigned)."""
        def presign(key: str) -> str:
            return self.client.presigned_get_object(self.bucket, key, expires=_PRESIGN_EXPIRY)

        return PresignedGetter(presign, ca_file=self.ca_file, connect_timeout_s=CONNECT_TIMEOUT_S,
                               read_timeout_s=READ_TIMEOUT_S)

    def missing(self) -> UserError:
        """The error for 'nothing at this URI', telling a missing bucket apart."""
        if not self.client.bucket_exists(self.bucket):
            return UserError(f"{self.uri}: bucket {self.bucket!r} does not exist at "
                             f"{self.endpoint}; create it or fix the URI.")
        return UserError(f"{self.uri} does not exist at {self.endpoint}; check the URI.")


# ------------------------------------------------------------------------------------ progress


class _Progress:
    """A one-line progress display on stderr, only when a person is watching (a TTY)."""

    def __init__(self, label: str, files: int, total_bytes: int, enabled: bool | None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label, self.files, self.total = label, files, total_bytes
        self.done_files = self.done_bytes = 0
        self._lock = threading.Lock()
        self._shown = 0.0

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done_files += 1
            self.done_bytes += nbytes
            now = time.monotonic()
            if self.enabled and (now - self._shown > 0.2 or self.done_files == self.files):
                self._shown = now
                sys.stderr.write(f"\r{self.label}: {self.done_files}/{self.files} files, "
                                 f"{self.done_bytes / 1e6:.1f}/{self.total / 1e6:.1f} MB")
                if self.done_files == self.files:
                    sys.stderr.write("\n")
                sys.stderr.flush()


def _parallel(jobs: list[Callable[[], int]], progress: _Progress, workers: int) -> None:
    """Runs jobs (each returns bytes moved) on a thread pool; the first failure cancels the rest."""
    if not jobs:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        futures = [pool.submit(job) for job in jobs]
        try:
            for future in futures:
                progress.advance(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise


# ------------------------------------------------------------------------------------ transfers


def _safe_relative(name: str, uri: str) -> PurePosixPath:
    relative = PurePosixPath(name.lstrip("/"))
    if not relative.parts or ".." in relative.parts:
        raise UserError(f"{uri}: object {name!r} would be written outside the destination; "
                        "rename it.")
    return relative


def _part_name(dest: Path) -> Path:
    """A temporary name beside dest, unique across threads and processes."""
    return dest.with_name(f".{dest.name}.{os.getpid()}-{next(_PART_IDS)}.part")


def _get_file(remote: _Remote, key: str, dest: Path) -> int:
    """Streams one object into dest through a temporary file; returns its size.

    Many small objects are bound by per-file overhead, so this does few system calls: the
    caller creates the folders, and the temporary file is only removed when something failed.
    """
    with _staged(dest) as part_file:
        def attempt() -> int:
            size = 0
            response = remote.client.get_object(remote.bucket, key)
            try:
                with open(part_file, "wb") as handle:
                    for chunk in response.stream(_CHUNK):
                        size += handle.write(chunk)
            finally:
                response.close()
                response.release_conn()
            return size

        return retry(attempt, key)


def _write_file(dest: Path, data: bytes) -> int:
    """Writes data to dest through a temporary file; returns its size."""
    with _staged(dest) as part_file:
        part_file.write_bytes(data)
    return len(data)


def _get_small(remote: _Remote, getter: PresignedGetter, key: str, size: int, dest: Path) -> int:
    """One object of a prefix: presigned and direct when small, else (or on a miss) the SDK's."""
    if size <= DIRECT_MAX_BYTES:
        body = getter.get(key, size)
        if body is not None:
            return _write_file(dest, body)
    return _get_file(remote, key, dest)


@contextmanager
def _staged(dest: Path) -> Iterator[Path]:
    """A temporary name beside dest to write to: renamed onto dest when the block succeeds,
    removed when it fails.

    An existing dest is removed before the rename, as minio's fget_object does: renaming over it
    would make ext4 (auto_da_alloc) flush the new file to disk first, 0.3 s per 200 MB here.
    """
    part_file = _part_name(dest)
    try:
        yield part_file
        dest.unlink(missing_ok=True)
        os.rename(part_file, dest)
    except BaseException:
        part_file.unlink(missing_ok=True)
        raise


def _get_ranges(remote: _Remote, key: str, dest: Path, size: int, etag: str | None,
                workers: int) -> int:
    """Fetches a large object as parallel byte ranges into one file; returns its size.

    One stream is bounded by a single connection (and a single server thread); ranges use
    several, as the AWS CLI does. If-Match keeps every range on the same version of the object.
    """
    step = max(RANGE_MIN_BYTES, -(-size // workers))
    headers = {"If-Match": etag} if etag else None

    def fetch(offset: int, length: int, fd: int) -> None:
        def attempt() -> None:
            response = remote.client.get_object(remote.bucket, key, offset=offset, length=length,
                                                request_headers=headers)
            try:
                position = offset
                for chunk in response.stream(_CHUNK):
                    position += os.pwrite(fd, chunk, position)
            finally:
                response.close()
                response.release_conn()
            if position != offset + length:
                raise ConnectionResetError(f"range {offset}+{length} ended at {position}")

        retry(attempt, f"{key} bytes {offset}+{length}")

    with _staged(dest) as part_file:
        fd = os.open(part_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, size)
            ranges = [(o, min(step, size - o)) for o in range(0, size, step)]
            with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
                for future in [pool.submit(fetch, o, n, fd) for o, n in ranges]:
                    future.result()
        finally:
            os.close(fd)
    return size


def _put_file(remote: _Remote, source: Path, key: str) -> int:
    retry(lambda: remote.client.fput_object(remote.bucket, key, str(source)), key)
    return source.stat().st_size


def download(uri: str, dest: str | Path, *, settings: S3Settings | None = None,
             workers: int = WORKERS, progress: bool | None = None) -> Path:
    """Copies the object or prefix at uri to dest (a file or a folder); returns dest.

    Args:
        uri: s3://, minio://, file:// or a path; a prefix is fetched whole, in parallel.
        dest: the file to write (for an object) or the folder to fill (for a prefix).
        settings: endpoint and credentials; None = `settings_from_env()`.
        workers: concurrent transfers.
        progress: show a progress line; None = when stderr is a terminal.
    """
    dest = Path(dest)
    if not is_remote(uri):
        source = local_path(uri)
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        elif source.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
        else:
            raise UserError(f"{uri!r} does not exist.")
        return dest
    remote = _Remote.open(uri, settings)
    with remote.errors():
        if remote.key and not remote.key.endswith("/"):
            stat = remote.stat(remote.key)
            if stat is not None:
                target = dest / PurePosixPath(remote.key).name if dest.is_dir() else dest
                target.parent.mkdir(parents=True, exist_ok=True)
                streams = min(workers, RANGE_WORKERS, 2 * usable_cpus())
                if stat.size >= 2 * RANGE_MIN_BYTES and streams > 1:
                    get = partial(_get_ranges, remote, remote.key, target, stat.size,
                                  stat.etag, streams)
                else:
                    get = partial(_get_file, remote, remote.key, target)
                _parallel([get], _Progress(f"download {uri}", 1, stat.size, progress), 1)
                return target
        prefix = remote.key.rstrip("/") + "/" if remote.key else ""
        objects = retry(lambda: remote.objects(prefix), uri)
        objects = _follow_manifest(remote, prefix, objects)
        if not objects:
            raise remote.missing()
        jobs = [(key, dest / _safe_relative(key[len(prefix):], uri)) for key in sorted(objects)]
        for folder in sorted({target.parent for _, target in jobs}):
            folder.mkdir(parents=True, exist_ok=True)
        with remote.presigned_getter() as getter:
            _parallel([partial(_get_small, remote, getter, key, objects[key], target)
                       for key, target in jobs],
                      _Progress(f"download {uri}", len(jobs), sum(objects.values()), progress),
                      workers)
    log.info("downloaded %d objects (%.1f MB) from %s; %d through the SDK", len(jobs),
             sum(objects.values()) / 1e6, uri, len(jobs) - getter.hits)
    return dest


def _follow_manifest(remote: _Remote, prefix: str, objects: dict[str, int]) -> dict[str, int]:
    """The objects a prefix's manifest lists, when it has one; else all of them."""
    manifest_key = prefix + MANIFEST_NAME
    if manifest_key not in objects:
        return objects
    listed = json.loads(_read_object(remote, manifest_key))["objects"]
    chosen = {prefix + name: size for name, size in listed.items()}
    absent = sorted(k for k in chosen if objects.get(k) != chosen[k])
    if absent:
        raise UserError(f"{remote.uri}: {absent[0][len(prefix):]!r} is listed in {MANIFEST_NAME} "
                        "but missing or of another size; the prefix was changed after upload, "
                        "upload it again.")
    extra = len(objects) - len(chosen) - 1
    if extra:
        log.warning("%s: %d objects are not in its %s (added after the upload?); ignored.",
                    remote.uri, extra, MANIFEST_NAME)
    return chosen


def _read_object(remote: _Remote, key: str) -> bytes:
    def attempt() -> bytes:
        response = remote.client.get_object(remote.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    return retry(attempt, key)


def upload(source: str | Path, uri: str, *, settings: S3Settings | None = None,
           workers: int = WORKERS, progress: bool | None = None) -> str:
    """Copies a file or folder to uri, never half-visible; returns uri.

    A folder becomes a prefix: its files in parallel, then `_manifest.json` last. A local target
    is written under a new name, then renamed.
    """
    source = Path(source)
    if not source.exists():
        raise UserError(f"{str(source)!r} does not exist; nothing to upload.")
    if not is_remote(uri):
        return _upload_local(source, local_path(uri), uri)
    remote = _Remote.open(uri, settings)
    with remote.errors():
        if source.is_file():
            key = remote.key if remote.key and not remote.key.endswith("/") else (
                remote.key + source.name)
            _parallel([lambda: _put_file(remote, source, key)],
                      _Progress(f"upload {uri}", 1, source.stat().st_size, progress), 1)
            return uri
        files = sorted(p for p in source.rglob("*") if p.is_file())
        names = {p.relative_to(source).as_posix(): p for p in files}
        if MANIFEST_NAME in names:
            raise UserError(f"{source / MANIFEST_NAME}: that name is reserved for the upload "
                            "manifest; rename the file.")
        prefix = remote.key.rstrip("/") + "/" if remote.key else ""
        sizes = {name: path.stat().st_size for name, path in names.items()}
        _parallel([lambda n=name, p=path: _put_file(remote, p, prefix + n)
                   for name, path in names.items()],
                  _Progress(f"upload {uri}", len(names), sum(sizes.values()), progress), workers)
        manifest = json.dumps({"objects": sizes}, indent=1, sort_keys=True).encode()
        _put_bytes(remote, prefix + MANIFEST_NAME, manifest)  # last: publishes the set
    log.info("uploaded %d files (%.1f MB) to %s", len(names), sum(sizes.values()) / 1e6, uri)
    return uri


def _upload_local(source: Path, target: Path, uri: str) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    part_path = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    if source.is_dir():
        shutil.copytree(source, part_path)
        if target.exists():
            shutil.rmtree(target)
    else:
        shutil.copy2(source, part_path)
    os.replace(part_path, target)
    return uri


def _put_bytes(remote: _Remote, key: str, data: bytes) -> None:
    import io

    retry(lambda: remote.client.put_object(remote.bucket, key, io.BytesIO(data), len(data)), key)


# ------------------------------------------------------------------------------ small objects


def exists(uri: str, *, settings: S3Settings | None = None) -> bool:
    """True when uri names an object or a non-empty prefix (a file or folder locally)."""
    if not is_remote(uri):
        return local_path(uri).exists()
    remote = _Remote.open(uri, settings)
    with remote.errors():
        if remote.key and not remote.key.endswith("/") and remote.stat(remote.key) is not None:
            return True
        prefix = remote.key.rstrip("/") + "/" if remote.key else ""
        listing = remote.client.list_objects(remote.bucket, prefix=prefix, recursive=True)
        return next(iter(listing), None) is not None


def list_prefix(uri: str, *, settings: S3Settings | None = None) -> list[str]:
    """Relative names of the objects (files) under uri, sorted."""
    if not is_remote(uri):
        root = local_path(uri)
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    remote = _Remote.open(uri, settings)
    prefix = remote.key.rstrip("/") + "/" if remote.key else ""
    with remote.errors():
        return sorted(k[len(prefix):] for k in retry(lambda: remote.objects(prefix), uri))


def read_bytes(uri: str, *, settings: S3Settings | None = None) -> bytes:
    """The whole content of one object or file."""
    if not is_remote(uri):
        path = local_path(uri)
        if not path.is_file():
            raise UserError(f"{uri!r} does not exist.")
        return path.read_bytes()
    remote = _Remote.open(uri, settings)
    with remote.errors():
        return _read_object(remote, remote.key)


def write_bytes(uri: str, data: bytes, *, settings: S3Settings | None = None) -> str:
    """Writes one object or file atomically (readers see the old or the new content); returns uri.

    Small pointers such as a registry's `latest` are written with this, after what they point to.
    """
    if not is_remote(uri):
        path = local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        part_path = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
        part_path.write_bytes(data)
        os.replace(part_path, path)
        return uri
    remote = _Remote.open(uri, settings)
    if not remote.key or remote.key.endswith("/"):
        raise UserError(f"{uri!r} names a prefix, not an object; add a file name.")
    with remote.errors():
        _put_bytes(remote, remote.key, data)
    return uri
