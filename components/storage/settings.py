"""Where the object store is and who we are: S3Settings, read from the environment once, and the
minio client built from them.

The endpoint and credentials are what a Kubernetes Secret provides (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); `settings_from_env` is the only reader of those
variables, and nothing here logs the secret or puts it in a message. An endpoint URL carrying
`user:password@` is refused without repeating the password.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.storage import errors

if TYPE_CHECKING:
    from minio import Minio

__all__ = ["MAX_CONNECTIONS", "S3Settings", "endpoint_for", "make_client", "settings_from_env"]

MAX_CONNECTIONS = 32
"""Pooled connections per client: two per concurrent transfer of a prefix."""
_AWS_ENDPOINT = "https://s3.amazonaws.com"


def _check_endpoint(endpoint: str) -> None:
    parsed = urlparse(endpoint)
    if "@" in parsed.netloc:
        host = parsed.netloc.rpartition("@")[2]
        raise UserError(f"AWS_ENDPOINT_URL '{parsed.scheme}://***@{host}' holds a user name and "
                        f"password; write {parsed.scheme}://{host} and put the credentials in "
                        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.")
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/"):
        raise UserError(f"AWS_ENDPOINT_URL {endpoint!r} is not an endpoint URL; write "
                        "http(s)://HOST[:PORT] with no path.")


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

    def __post_init__(self) -> None:
        if self.endpoint:
            _check_endpoint(self.endpoint)


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


def endpoint_for(settings: S3Settings, scheme: str) -> str:
    """The endpoint URL a URI of this scheme goes to."""
    if settings.endpoint:
        return settings.endpoint
    if scheme == "minio":
        raise UserError("minio:// needs AWS_ENDPOINT_URL, e.g. http://minio-service.kubeflow:9000; "
                        "set it (a Kubernetes Secret usually provides it).")
    return _AWS_ENDPOINT


def make_client(settings: S3Settings, endpoint: str) -> Minio:
    """One client (thread-safe, pooled connections) per settings and timeouts."""
    return _client(settings, endpoint, errors.CONNECT_TIMEOUT_S, errors.STALL_TIMEOUT_S)


@lru_cache(maxsize=8)
def _client(settings: S3Settings, endpoint: str, connect_timeout_s: float,
            stall_timeout_s: float) -> Minio:
    import certifi
    import urllib3
    from minio import Minio

    _check_endpoint(endpoint)
    parsed = urlparse(endpoint)
    http = urllib3.PoolManager(
        # The read timeout bounds the wait between two bytes, not the whole answer: a dead or
        # frozen endpoint fails a try in seconds instead of minio's 5-minute default.
        timeout=urllib3.Timeout(connect=connect_timeout_s, read=stall_timeout_s),
        maxsize=MAX_CONNECTIONS,
        cert_reqs="CERT_REQUIRED",
        ca_certs=settings.ca_file or certifi.where(),
        # urllib3 retries connecting only. Stalls, dropped connections and 5xx go to
        # storage.errors.retry, which bounds them all by one budget; retrying them here too
        # would multiply the waits. A TLS error (other) fails at once: it is a setup error.
        retries=urllib3.Retry(total=None, connect=2, read=0, status=0, other=0, redirect=3,
                              backoff_factor=errors.BACKOFF_S, raise_on_status=False),
    )
    return Minio(parsed.netloc, access_key=settings.access_key, secret_key=settings.secret_key,
                 secure=parsed.scheme == "https", region=settings.region, http_client=http)
