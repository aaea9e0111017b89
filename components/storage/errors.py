"""S3 failures: which are worth another try, for how long, and one sentence for each.

minio, urllib3 and http.client raise their own exceptions. `retry` repeats an operation on the
transient ones (5xx answers, SlowDown, a stalled or dropped connection) with exponential backoff
and jitter, within a time budget. `translated` turns what is left into one sentence that names
the URI, the endpoint and what to do, never the credentials:
- UserError (exit 2) for what the user can fix: credentials, rights, a missing bucket or object,
  an endpoint that cannot be reached at all, TLS spoken to a plain-HTTP endpoint;
- StorageFault (exit 1, "try again") for what they cannot: a server that keeps failing, stops
  answering, or drops connections mid-transfer.

Every wait is bounded: CONNECT_TIMEOUT_S to connect, STALL_TIMEOUT_S between two bytes of an
answer, RETRY_BUDGET_S for starting new tries. Against a frozen endpoint one operation fails
within 2 x STALL_TIMEOUT_S + RETRY_BUDGET_S (40 s; three tries), and the other jobs of a parallel
transfer stop within one more STALL_TIMEOUT_S. Quick failures (5xx) get all ATTEMPTS. Tests
lower these module constants.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlparse

from kfp_yolo.components.errors import Fault, JobFailed, UserError

__all__ = ["ATTEMPTS", "BACKOFF_S", "CONNECT_TIMEOUT_S", "RETRY_BUDGET_S", "STALL_TIMEOUT_S",
           "StorageFault", "is_transient", "retry", "translate", "translated"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
STALL_TIMEOUT_S = 10.0
"""Longest wait for the next byte of an answer (headers or body) before a try counts as stalled.
S3 servers answer within a second when healthy; AWS keeps long operations alive with spaces."""
ATTEMPTS = 4
"""Tries of one operation on a transient error."""
BACKOFF_S = 0.25
RETRY_BUDGET_S = 20.0
"""No new try starts later than this after an operation's first failure: stalls, which cost
STALL_TIMEOUT_S each, get three tries, quick failures all ATTEMPTS."""
_TRANSIENT_CODES = {"SlowDown", "InternalError", "RequestTimeout", "ServiceUnavailable",
                    "OperationAborted", "ServerBusy"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSignature",
                     "AuthorizationHeaderMalformed", "MissingSecurityHeader"}
_PLAIN_HTTP_SIGNS = ("wrong_version_number", "wrong version number", "record layer failure",
                     "http_request", "unknown protocol", "packet length too long")
T = TypeVar("T")


class StorageFault(Fault):
    """The object store failed in a way the user cannot fix (5xx answers, a stalled or dropped
    connection) even after retries; trying again later may work. Exit code 1."""


def _status(exc: BaseException) -> int:
    """The HTTP status of a minio error, 0 when unknown."""
    from minio.error import InvalidResponseError, S3Error, ServerError

    if isinstance(exc, S3Error):
        return getattr(exc.response, "status", 0) or 0
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):
        return int(getattr(exc, "_code", 0) or 0)
    return 0


def _server_failed(status: int) -> bool:
    """5xx but 501 (Not Implemented: the server will never do it)."""
    return 500 <= status < 600 and status != 501


def _cause(exc: BaseException) -> BaseException:
    """What urllib3's MaxRetryError wraps, or exc itself."""
    from urllib3.exceptions import MaxRetryError

    return exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc


def is_transient(exc: BaseException) -> bool:
    """True for failures another try may cure: 5xx, throttling, stalled or dropped connections.

    Connection refused and TLS errors are not: urllib3 already retried connecting, and a
    handshake fails the same way every time.
    """
    from minio.error import S3Error
    from urllib3.exceptions import ProtocolError, ReadTimeoutError

    if isinstance(exc, S3Error) and exc.code in _TRANSIENT_CODES:
        return True
    if _server_failed(_status(exc)):
        return True
    # A body cut off or stalled mid-stream: urllib3 does not retry reads of a streamed answer.
    return isinstance(_cause(exc), ProtocolError | ReadTimeoutError | ConnectionError |
                      TimeoutError)


def retry(operation: Callable[[], T], what: str, *, stop: threading.Event | None = None) -> T:
    """Runs operation, retrying transient failures with exponential backoff and jitter.

    Gives up after ATTEMPTS tries, when the next one would start more than RETRY_BUDGET_S after
    the first failure, or once stop is set (another part of the same transfer failed).
    """
    first_failure = None
    for attempt in itertools.count(1):
        try:
            return operation()
        except Exception as exc:
            if not is_transient(exc):
                raise
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            delay = BACKOFF_S * 2 ** (attempt - 1) * (0.5 + random.random())
            if (attempt >= ATTEMPTS or now + delay - first_failure > RETRY_BUDGET_S
                    or (stop is not None and stop.is_set())):
                raise
            log.info("%s: %s; try %d of %d in %.1f s", what, type(_cause(exc)).__name__,
                     attempt + 1, ATTEMPTS, delay)
            if stop is None:
                time.sleep(delay)
            elif stop.wait(delay):
                raise
    raise AssertionError("unreachable")


def translate(exc: BaseException, uri: str, endpoint: str) -> UserError | StorageFault | None:
    """One sentence for a storage failure, or None when exc is not a storage failure."""
    from minio.error import InvalidResponseError, S3Error, ServerError
    from urllib3.exceptions import (
        ConnectTimeoutError,
        HTTPError,
        MaxRetryError,
        NewConnectionError,
        ProtocolError,
        ReadTimeoutError,
        SSLError,
    )

    cause = _cause(exc)
    status = _status(exc)
    if isinstance(exc, S3Error) and not (exc.code in _TRANSIENT_CODES or _server_failed(status)):
        return _s3_error(exc, uri, endpoint)
    if _server_failed(status) or isinstance(exc, S3Error):
        code = f"{exc.code}, " if isinstance(exc, S3Error) else ""
        return StorageFault(f"{uri}: {endpoint} kept failing ({code}HTTP {status}); try again "
                            "later or check the server.")
    if isinstance(exc, InvalidResponseError):
        return UserError(f"{uri}: {endpoint} did not answer like an S3 server (HTTP "
                         f"{status or '?'}); check AWS_ENDPOINT_URL.")
    if isinstance(exc, ServerError):
        return UserError(f"{uri}: {endpoint} failed with HTTP {status}; check the server.")
    if isinstance(cause, SSLError):
        return _tls_error(cause, uri, endpoint)
    if isinstance(cause, NewConnectionError):  # refused, or a name that does not resolve
        return UserError(f"cannot reach the S3 endpoint {endpoint} for {uri} (connection "
                         "failed); check AWS_ENDPOINT_URL and that the server is up.")
    if isinstance(cause, ConnectTimeoutError):
        return StorageFault(f"{uri}: {endpoint} did not accept a connection within "
                            f"{CONNECT_TIMEOUT_S:g} s; try again later, or check "
                            "AWS_ENDPOINT_URL and the network.")
    if isinstance(cause, ReadTimeoutError | TimeoutError):
        return StorageFault(f"{uri}: {endpoint} stopped answering (no data for "
                            f"{STALL_TIMEOUT_S:g} s, at every try); try again later or check "
                            "the server and the network.")
    if isinstance(cause, ProtocolError | ConnectionError):
        return StorageFault(f"{uri}: the connection to {endpoint} kept dropping mid-transfer "
                            f"({type(cause).__name__}); try again later or check the server "
                            "and the network.")
    if isinstance(exc, MaxRetryError):
        return StorageFault(f"{uri}: {endpoint} kept failing ({type(cause).__name__}); try "
                            "again later or check the server.")
    if isinstance(exc, HTTPError):
        return UserError(f"{uri}: talking to {endpoint} failed ({type(exc).__name__}); check "
                         "AWS_ENDPOINT_URL and the network.")
    return None


def _s3_error(exc: BaseException, uri: str, endpoint: str) -> UserError:
    bucket = urlparse(uri).netloc
    code = getattr(exc, "code", None)
    if code == "NoSuchBucket":
        return UserError(f"{uri}: bucket {bucket!r} does not exist at {endpoint}; create it "
                         "or fix the URI.")
    if code in _CREDENTIAL_CODES:
        return UserError(f"{uri}: {endpoint} refused the credentials ({code}); check "
                         "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.")
    if code == "AccessDenied":
        return UserError(f"{uri}: access denied at {endpoint}; give these credentials read "
                         "and write rights on the bucket.")
    if code in ("NoSuchKey", "NoSuchObject"):
        return UserError(f"{uri} does not exist at {endpoint}.")
    return UserError(f"{uri}: {endpoint} answered {code}: {getattr(exc, 'message', '')}")


def _tls_error(cause: BaseException, uri: str, endpoint: str) -> UserError:
    """TLS failures are setup errors: the same handshake fails the same way every time."""
    text = str(cause).lower()
    host = urlparse(endpoint).netloc
    if any(sign in text for sign in _PLAIN_HTTP_SIGNS):
        return UserError(f"{uri}: {endpoint} does not speak TLS (it answers plain HTTP); set "
                         f"AWS_ENDPOINT_URL to http://{host}, or enable TLS on the server.")
    if "certificate" in text:
        return UserError(f"{uri}: the TLS certificate of {endpoint} is not trusted; set "
                         "SSL_CERT_FILE to the CA bundle that signed it, or fix the "
                         "certificate.")
    return UserError(f"{uri}: the TLS handshake with {endpoint} failed; check that it serves "
                     f"https, or set AWS_ENDPOINT_URL to http://{host}.")


@contextmanager
def translated(uri: str, endpoint: str) -> Iterator[None]:
    """Turns minio/urllib3/socket exceptions into one-sentence UserErrors and StorageFaults."""
    try:
        yield
    except (UserError, JobFailed, Fault):
        raise
    except Exception as exc:
        error = translate(exc, uri, endpoint)
        if error is None:
            raise
        raise error from exc
