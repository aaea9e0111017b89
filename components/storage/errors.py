"""S3 failures: which are worth another try, and one sentence for each a user can fix.

minio and urllib3 raise their own exceptions; `translated` turns those into UserErrors that name
the URI, the endpoint and the fix (never the credentials), and `retry` repeats an operation on
the transient ones with exponential backoff and jitter.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlparse

from kfp_yolo.components.errors import UserError

__all__ = ["ATTEMPTS", "BACKOFF_S", "is_transient", "retry", "translated", "user_error"]

log = logging.getLogger(__name__)

ATTEMPTS = 4
"""Tries of one transfer on a transient error (5xx, SlowDown, a connection dropped mid-body)."""
BACKOFF_S = 0.25
_TRANSIENT_CODES = {"SlowDown", "InternalError", "RequestTimeout", "ServiceUnavailable",
                    "OperationAborted", "ServerBusy"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSignature",
                     "AuthorizationHeaderMalformed", "MissingSecurityHeader"}
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    from minio.error import S3Error, ServerError
    from urllib3.exceptions import ProtocolError, ReadTimeoutError

    if isinstance(exc, S3Error):
        return exc.code in _TRANSIENT_CODES
    if isinstance(exc, ServerError):
        return exc.status_code >= 500
    # A body cut off mid-stream: urllib3 does not retry reads of a streamed response.
    return isinstance(exc, ProtocolError | ReadTimeoutError | ConnectionResetError)


def retry(operation: Callable[[], T], what: str) -> T:
    """Runs operation, retrying transient failures with exponential backoff and jitter."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return operation()
        except Exception as exc:
            if attempt == ATTEMPTS or not is_transient(exc):
                raise
            delay = BACKOFF_S * 2 ** (attempt - 1) * (0.5 + random.random())
            log.info("%s: %s; retry %d/%d in %.1f s", what, type(exc).__name__, attempt,
                     ATTEMPTS - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def user_error(exc: BaseException, uri: str, endpoint: str) -> UserError | None:
    """One sentence for a storage failure, or None when exc is not a storage failure."""
    from minio.error import InvalidResponseError, S3Error, ServerError
    from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError

    bucket = urlparse(uri).netloc
    if isinstance(exc, S3Error):
        if exc.code == "NoSuchBucket":
            return UserError(f"{uri}: bucket {bucket!r} does not exist at {endpoint}; create it "
                             "or fix the URI.")
        if exc.code in _CREDENTIAL_CODES:
            return UserError(f"{uri}: {endpoint} refused the credentials ({exc.code}); check "
                             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.")
        if exc.code == "AccessDenied":
            return UserError(f"{uri}: access denied at {endpoint}; give these credentials read "
                             "and write rights on the bucket.")
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            return UserError(f"{uri} does not exist at {endpoint}.")
        return UserError(f"{uri}: {endpoint} answered {exc.code}: {exc.message}")
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, NewConnectionError) or "connect" in type(reason).__name__.lower():
            return UserError(f"cannot reach the S3 endpoint {endpoint} for {uri} (connection "
                             "failed); check AWS_ENDPOINT_URL and that the server is up.")
        return UserError(f"{uri}: {endpoint} kept failing ({type(reason).__name__}); try again "
                         "later or check the server.")
    if isinstance(exc, InvalidResponseError):
        return UserError(f"{uri}: {endpoint} did not answer like an S3 server (HTTP "
                         f"{getattr(exc, '_code', '?')}); check AWS_ENDPOINT_URL.")
    if isinstance(exc, ServerError):
        return UserError(f"{uri}: {endpoint} failed with HTTP {exc.status_code}; try again "
                         "later or check the server.")
    if isinstance(exc, HTTPError):
        return UserError(f"{uri}: talking to {endpoint} failed ({type(exc).__name__}); check "
                         "AWS_ENDPOINT_URL and the network.")
    return None


@contextmanager
def translated(uri: str, endpoint: str) -> Iterator[None]:
    """Turns minio/urllib3 exceptions into one-sentence UserErrors."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        error = user_error(exc, uri, endpoint)
        if error is None:
            raise
        raise error from exc
