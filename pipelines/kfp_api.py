"""Talking to the KFP API for `kfp-yolo submit`: the token, a first health check, and every call
bounded in time.

Every request has a connect timeout and a read timeout, and all the requests of one submit
share one deadline (`Budget`). An HTTP 5xx, a read timeout or a dropped connection is tried
again with backoff while the deadline allows. What the verdict says:

- the host cannot be connected to (refused, unknown name, no answer to the connection) before
  it ever answered: bad input (UserError, exit 2), check --host;
- it connected but did not answer in time, or kept answering 5xx: a fault (Fault, exit 1), one
  sentence with the time waited;
- 401/403: the token; any other 4xx: the request (ApiRefused, a UserError with the status).

kfp.Client's methods take no timeout and its REST layer passes `timeout=None` (no limit) to
urllib3 on every request: `_bound` wraps that one pool manager's `request` so each call
gets the budget's timeouts (tests/integration/test_submit.py checks the wrapper still reaches it).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kfp.client.token_credentials_base import TokenCredentialsBase

from kfp_yolo.components.errors import Fault, UserError
from kfp_yolo.components.redact import register as register_secret

__all__ = ["API_TIMEOUT_S", "CONNECT_TIMEOUT_S", "ENDPOINT_ENV", "HEALTHZ", "READ_TIMEOUT_S",
           "SA_TOKEN_PATH_ENV", "TOKEN_ENV", "Api", "ApiRefused", "Budget", "Caller",
           "TokenSource",
           "check_api"]

ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
TOKEN_ENV = "KF_PIPELINES_TOKEN"
HEALTHZ = "/apis/v2beta1/healthz"
CONNECT_TIMEOUT_S = 10.0
"""Seconds a connection to the API may take."""
READ_TIMEOUT_S = 60.0
"""Seconds one answer may take (a loaded API server answers in 20 s and must still work)."""
API_TIMEOUT_S = 110.0
"""Seconds all the API calls of one submit may take, retries included (--api-timeout): a
stalled API is exit 1 within 2 minutes of starting, and five 20 s answers still fit."""
BACKOFF_S = 2.0
"""First pause before a retry; doubled each time, with jitter."""
T = TypeVar("T")


class ApiRefused(UserError):
    """The API refused a request with a 4xx status (kept in `status`)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Budget:
    """The time the API calls of one submit (or one poll of --wait) may take."""

    total_s: float = 0
    """0 = API_TIMEOUT_S."""
    connect_s: float = 0
    """0 = CONNECT_TIMEOUT_S."""
    read_s: float = 0
    """0 = READ_TIMEOUT_S."""
    max_tries: int = 0
    """0 = as many as the deadline allows."""
    started: float = field(default_factory=time.monotonic)
    tries: int = 0
    reached: bool = False
    """The API has answered once: a connection failing after that is a fault, not the host."""

    def __post_init__(self) -> None:
        self.total_s = self.total_s or API_TIMEOUT_S
        self.connect_s = self.connect_s or CONNECT_TIMEOUT_S
        self.read_s = self.read_s or READ_TIMEOUT_S

    def remaining(self) -> float:
        return self.total_s - (time.monotonic() - self.started)

    def waited(self) -> float:
        return time.monotonic() - self.started

    def timeout(self) -> Any:
        """urllib3 timeouts for the next request: never past the deadline."""
        import urllib3

        left = max(0.5, self.remaining())
        return urllib3.Timeout(connect=min(self.connect_s, left), read=min(self.read_s, left))

    def pause(self, attempt: int) -> bool:
        """Sleeps before retry number `attempt`; False when the deadline leaves no time for it."""
        delay = BACKOFF_S * 2 ** (attempt - 1) * random.uniform(0.75, 1.25)
        left = self.remaining()
        if (self.max_tries and self.tries >= self.max_tries) or left < 1.0:
            return False
        time.sleep(min(delay, left / 2))  # the last try gets what is left of the deadline
        return True

    def slow(self, host: str, what: str) -> Fault:
        return Fault(f"the KFP API at {host} did not answer in time to {what}: waited "
                     f"{self.waited():.0f} s over {self.tries} tries (read timeout "
                     f"{self.read_s:g} s, deadline {self.total_s:g} s); it is slow or stalled, "
                     "try again later or raise --api-timeout.")


class TokenSource(TokenCredentialsBase):
    """Where the API token lives; `read()` fetches it from there again on every call.

    kfp calls `refresh_api_key_hook` before every request (as its own
    ServiceAccountTokenVolumeCredentials does), so a token file rotated by the kubelet is picked
    up; after a 401 the request is retried once, which reads the source again.
    """

    def __init__(self, *, path: str | Path | None = None, env_var: str | None = None,
                 origin: str, environ: Mapping[str, str] | None = None,
                 user_file: bool = False) -> None:
        if (path is None) == (env_var is None):
            raise ValueError("give exactly one of path and env_var")
        self._path = Path(path) if path is not None else None
        self._env_var = env_var
        self._environ = os.environ if environ is None else environ
        self.origin = origin
        self.user_file = user_file  # the user's own file (--token-file): warned about when open
        self._seen: set[str] = set()  # every token read, so messages can be scrubbed of them
        self._warned = False

    @classmethod
    def find(cls, token_file: str | None,
             environ: Mapping[str, str] | None = None) -> TokenSource | None:
        """The first source that is set: --token-file, $KF_PIPELINES_SA_TOKEN_PATH, the env."""
        env = os.environ if environ is None else environ
        if token_file:
            return cls(path=token_file, origin=f"--token-file {token_file}", user_file=True)
        if env.get(SA_TOKEN_PATH_ENV):
            return cls(path=env[SA_TOKEN_PATH_ENV],
                       origin=f"{SA_TOKEN_PATH_ENV}={env[SA_TOKEN_PATH_ENV]}")
        if env.get(TOKEN_ENV):
            return cls(env_var=TOKEN_ENV, origin=f"${TOKEN_ENV}", environ=env)
        return None

    def read(self) -> str:
        """The current token; a UserError (without the token) when it cannot be read."""
        if self._path is not None:
            try:
                token = self._path.read_text().strip()
            except OSError as exc:
                raise UserError(f"cannot read the API token from {self.origin} "
                                f"({exc.strerror}); fix the path or mount the token.") from None
            except UnicodeDecodeError:
                raise UserError(f"the API token from {self.origin} is not text; write the token "
                                "there.") from None
        else:
            token = self._environ.get(self._env_var or "", "").strip()
        if not token:
            raise UserError(f"the API token from {self.origin} is empty; write the token there.")
        self._warn_if_open()
        self._seen.add(token)
        register_secret(token)
        return token

    def _warn_if_open(self) -> None:
        """One warning, as ssh gives for a key, when the user's token file is readable by group
        or others (a pod's projected token is 0644 by the kubelet's choice: not warned)."""
        if self._path is None or self._warned or not self.user_file:
            return
        mode = self._path.stat().st_mode & 0o777  # read a moment ago: it is there
        if mode & 0o077:
            self._warned = True
            print(f"kfp-yolo: warning: the token file {self._path} is readable by group or "
                  f"others (mode {mode:04o}); run `chmod 600 {self._path}`.", file=sys.stderr)

    def refresh_api_key_hook(self, config: Any) -> None:
        config.api_key["authorization"] = self.read()

    def scrub(self, text: str) -> str:
        """text with every token this source has handed out replaced by '***'."""
        for token in self._seen:
            text = text.replace(token, "***")
        return text

    def __repr__(self) -> str:
        return f"TokenSource({self.origin})"


def _refusal(host: str, source: TokenSource | None, what: str, status: int) -> str:
    """The sentence for a 401 or 403 answer."""
    fix = f"give a valid token with --token-file, {SA_TOKEN_PATH_ENV} or {TOKEN_ENV}"
    if status == 401 and source is None:
        return f"the KFP API at {host} needs a token (HTTP 401) to {what}; {fix}."
    if status == 401:
        return (f"the KFP API at {host} refused the token from {source.origin} "
                f"(HTTP 401) to {what}, also after reading it again; {fix}.")
    return (f"the KFP API at {host} denied the request to {what} (HTTP 403); give "
            "this identity access to the namespace.")


def _describe(status: int, content_type: str, body: bytes) -> str:
    """What answered, in words, when it was not the KFP API."""
    head = body.lstrip()[:200].lower()
    if "html" in content_type or head.startswith((b"<!doctype", b"<html", b"<")):
        return f"an HTML page (HTTP {status}; a login page or an auth proxy?)"
    try:
        json.loads(body)
        return f"JSON that is not a KFP health answer (HTTP {status})"
    except ValueError:
        return f"HTTP {status} with a {content_type or 'non-JSON'} body"


def _unreachable(host: str, what: str, exc: Exception) -> UserError:
    reason = getattr(exc, "reason", None) or exc
    return UserError(f"cannot reach the KFP API at {host} to {what} "
                     f"({type(reason).__name__}); check --host or {ENDPOINT_ENV} (the KFP API "
                     "URL, e.g. http://localhost:8080).")


def check_api(host: str, source: TokenSource | None, budget: Budget | None = None) -> None:
    """Refuses a host that does not answer GET /apis/v2beta1/healthz as the KFP API does.

    kfp.Client turns any 200 into empty objects, so a login page in front of KFP would read as
    "submitted run ...: None"; one plain request first says what really answered.
    """
    import certifi  # minio's dependency: the same CA bundle the storage client uses
    import urllib3

    budget = budget or Budget()
    pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    url = host + HEALTHZ
    scrub = source.scrub if source is not None else (lambda text: text)

    def get() -> Any:
        headers = {"Accept": "application/json"}
        if source is not None:
            headers["Authorization"] = f"Bearer {source.read()}"
        return pool.request("GET", url, headers=headers, timeout=budget.timeout(),
                            retries=urllib3.Retry(total=None, connect=0, read=0, redirect=5,
                                                  status=0))

    caller = Caller(host, source, budget)
    response = caller.retrying("check the API", get, status_of=lambda r: r.status)
    status = response.status
    if status in (401, 403):
        raise UserError(scrub(_refusal(host, source, "check the API", status)))
    content_type = response.headers.get("Content-Type", "")
    try:
        answer = json.loads(response.data) if status == 200 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        where = getattr(response, "url", None) or url
        raise UserError(scrub(
            f"{host} does not speak the KFP API: GET {where} answered "
            f"{_describe(status, content_type, response.data)}; check --host or {ENDPOINT_ENV} "
            "(the KFP API URL, e.g. http://localhost:8080)."))


class Caller:
    """Sends requests within a budget: retried on 5xx, timeouts and dropped connections, once
    after a 401 (the token may have rotated); every failure as one clean sentence."""

    def __init__(self, host: str, source: TokenSource | None, budget: Budget) -> None:
        self.host, self.source, self.budget = host, source, budget

    def retrying(self, what: str, send: Callable[[], T], *,
                 status_of: Callable[[T], int] | None, api_errors: type | tuple = (),
                 retry_slow: bool = True) -> T:
        """send() until it answers, within the budget (see the module docstring).

        status_of: the HTTP status of what send() returns (None: it raises api_errors, with a
        `status`, for anything but a success).
        """
        from urllib3.exceptions import (
            ConnectTimeoutError,
            HTTPError,
            MaxRetryError,
            ReadTimeoutError,
        )

        attempt = 0
        while True:
            attempt += 1
            self.budget.tries += 1
            failed = None
            try:
                result = send()
                status = status_of(result) if status_of is not None else 200
            except api_errors as exc:
                failed, status = exc, exc.status or 0
            except HTTPError as exc:
                cause = exc.reason if isinstance(exc, MaxRetryError) else exc
                if isinstance(cause, ReadTimeoutError):
                    self.budget.reached = True  # it took the connection: slow, not absent
                    if retry_slow and self.budget.pause(attempt):
                        continue
                    raise self.budget.slow(self.host, what) from None
                # Refused, unknown name, no answer to the connection, or a dropped one.
                if not self.budget.reached and isinstance(cause, ConnectTimeoutError):
                    raise UserError(self._scrub(str(_unreachable(self.host, what, cause)))) \
                        from None
                if self.budget.pause(attempt):
                    continue
                raise Fault(self._scrub(
                    f"lost the KFP API at {self.host} while trying to {what} "
                    f"({type(cause).__name__}) and it did not come back in "
                    f"{self.budget.waited():.0f} s; try again later.")) from None
            if failed is not None and status == 0:  # a TLS failure kfp_server_api wrapped
                raise UserError(self._scrub(
                    f"cannot reach the KFP API at {self.host} to {what} ({failed.reason}); "
                    f"check --host or {ENDPOINT_ENV}.")) from None
            self.budget.reached = True
            if status == 401 and attempt == 1 and self.source is not None:
                continue  # the token may have rotated: the retry reads it again
            if status >= 500:
                if self.budget.pause(attempt):
                    continue
                raise Fault(self._scrub(
                    self._api_error(what, failed or result, status).rstrip(".")
                    + f" (kept failing for {self.budget.waited():.0f} s); try again later."))
            if failed is not None:
                raise ApiRefused(self._scrub(self._api_error(what, failed, status)), status)
            return result

    def _api_error(self, what: str, exc: Any, status: int) -> str:
        if status in (401, 403):
            return _refusal(self.host, self.source, what, status)
        message = error_message(getattr(exc, "body", None))
        return (f"the KFP API at {self.host} failed to {what} (HTTP {status} "
                f"{getattr(exc, 'reason', '')})".replace(" )", ")")
                + (f": {message}" if message else "") + ".")

    def _scrub(self, text: str) -> str:
        return self.source.scrub(text) if self.source else text


class Api(Caller):
    """kfp.Client, every call of it bounded by the budget (see Caller)."""

    def __init__(self, host: str, source: TokenSource | None, namespace: str,
                 budget: Budget) -> None:
        import kfp

        super().__init__(host, source, budget)
        with warnings.catch_warnings():  # kfp warns on every construction that it needs KFP v2
            warnings.simplefilter("ignore", FutureWarning)
            # An explicit namespace also skips kfp's healthz probe (5 tries, 5 s apart) in
            # __init__; a single-user backend ignores it.
            self.client: kfp.Client = kfp.Client(host=host, credentials=source,
                                                 namespace=namespace)
        _bound(self.client, self)

    def call(self, what: str, method: Callable[..., T], *args: Any, retry_slow: bool = True,
             **kwargs: Any) -> T:
        """method(*args, **kwargs) under the budget; a sentence for every way it can fail.

        retry_slow=False: a read timeout is not tried again (a create that may have happened
        on the server: the caller looks before it creates again) but raised as the Fault.
        """
        import kfp_server_api

        try:
            return self.retrying(what, lambda: method(*args, **kwargs), status_of=None,
                                 api_errors=kfp_server_api.ApiException, retry_slow=retry_slow)
        except kfp_server_api.OpenApiException as exc:  # an answer of the wrong shape
            raise UserError(self._scrub(
                f"the KFP API at {self.host} gave an answer of the wrong shape to {what} "
                f"({type(exc).__name__}); check --host or {ENDPOINT_ENV}.")) from None


def error_message(body: Any) -> str:
    """The message of a KFP error body ({"error": ..., "message": ...}), or ''."""
    try:
        data = json.loads(body or b"{}")
        return str(data.get("message") or data.get("error") or "")[:300]
    except (ValueError, AttributeError, TypeError):
        return ""


def _bound(client: Any, api: Api) -> None:
    """Makes every request of kfp.Client carry the budget's timeouts and no hidden retries."""
    rest = client._run_api.api_client.rest_client  # one ApiClient serves every kfp API
    pool = rest.pool_manager
    send = pool.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["timeout"] = api.budget.timeout()
        kwargs["retries"] = False  # Caller.retrying retries, within the deadline
        return send(method, url, *args, **kwargs)

    pool.request = request
