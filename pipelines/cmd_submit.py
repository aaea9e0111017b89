"""`kfp-yolo submit`: compile the DAG for a config and start it on a KFP endpoint, once per config.

Idempotent per config content: the run's display name ends with a hash of the normalized config,
and a run of that name in the experiment is reused instead of starting another (GitOps syncs
may submit the same config many times). Two submits racing each other can still both create.

The API token never comes from argv. It is read from, in order: --token-file, the file named by
KF_PIPELINES_SA_TOKEN_PATH (a projected service-account token in a pod), KF_PIPELINES_TOKEN;
with none of them requests go unauthenticated (a port-forwarded single-user KFP). It is never
printed, logged or put in an error message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kfp.client.token_credentials_base import TokenCredentialsBase

from kfp_yolo.components.errors import Fault, JobFailed, UserError
from kfp_yolo.pipelines.config import RunConfig, load_config, run_time_values

if TYPE_CHECKING:
    import kfp

__all__ = ["TokenSource", "check_api", "config_digest", "run", "run_name"]

ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
TOKEN_ENV = "KF_PIPELINES_TOKEN"
POLL_S = 10.0
"""Seconds between polls of a followed run."""
PROBE_TIMEOUT_S = 15.0
"""Seconds the first request (is this the KFP API?) may take."""
HEALTHZ = "/apis/v2beta1/healthz"
FOLLOW_MISSES = 6
"""Failed polls in a row after which --wait gives up (the run goes on on the cluster)."""
FINAL_STATES = {"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"}
T = TypeVar("T")


class TokenSource(TokenCredentialsBase):
    """Where the API token lives; `read()` fetches it from there again on every call.

    kfp calls `refresh_api_key_hook` before every request (as its own
    ServiceAccountTokenVolumeCredentials does), so a token file rotated by the kubelet is picked
    up; after a 401 the request is retried once, which reads the source again.
    """

    def __init__(self, *, path: str | Path | None = None, env_var: str | None = None,
                 origin: str, environ: Mapping[str, str] | None = None) -> None:
        if (path is None) == (env_var is None):
            raise ValueError("give exactly one of path and env_var")
        self._path = Path(path) if path is not None else None
        self._env_var = env_var
        self._environ = os.environ if environ is None else environ
        self.origin = origin
        self._seen: set[str] = set()  # every token read, so messages can be scrubbed of them

    @classmethod
    def find(cls, token_file: str | None,
             environ: Mapping[str, str] | None = None) -> TokenSource | None:
        """The first source that is set: --token-file, $KF_PIPELINES_SA_TOKEN_PATH, the env."""
        env = os.environ if environ is None else environ
        if token_file:
            return cls(path=token_file, origin=f"--token-file {token_file}")
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
        self._seen.add(token)
        return token

    def refresh_api_key_hook(self, config: Any) -> None:
        config.api_key["authorization"] = self.read()

    def scrub(self, text: str) -> str:
        """text with every token this source has handed out replaced by '***'."""
        for token in self._seen:
            text = text.replace(token, "***")
        return text

    def __repr__(self) -> str:
        return f"TokenSource({self.origin})"


def config_digest(cfg: RunConfig) -> str:
    """sha256 of the config's canonical JSON: equal configs, equal digests."""
    canonical = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def run_name(cfg: RunConfig) -> str:
    """The run's display name: the config's name and the first 12 hex digits of its digest."""
    return f"{cfg.name}-{config_digest(cfg)[:12]}"


def _resolve_host(host: str | None) -> str:
    host = host or os.environ.get(ENDPOINT_ENV, "")
    if not host:
        raise UserError(f"no KFP endpoint given; pass --host URL (e.g. "
                        f"http://localhost:8080) or set {ENDPOINT_ENV}.")
    if not host.startswith(("http://", "https://")):
        raise UserError(f"--host {host!r} is not a URL; write http(s)://HOST[:PORT][/PATH].")
    return host.rstrip("/")


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


def check_api(host: str, source: TokenSource | None) -> None:
    """Refuses a host that does not answer GET /apis/v2beta1/healthz as the KFP API does.

    kfp.Client turns any 200 into empty objects, so a login page in front of KFP would read as
    "submitted run ...: None"; one plain request first says what really answered.
    """
    import certifi  # minio's dependency: the same CA bundle the storage client uses
    import urllib3

    pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    url = host + HEALTHZ
    fix = f"check --host or {ENDPOINT_ENV} (the KFP API URL, e.g. http://localhost:8080)"
    scrub = source.scrub if source is not None else (lambda text: text)
    for attempt in (1, 2):
        headers = {"Accept": "application/json"}
        if source is not None:
            headers["Authorization"] = f"Bearer {source.read()}"
        try:
            response = pool.request("GET", url, headers=headers, retries=urllib3.Retry(
                total=None, connect=0, read=0, redirect=5, status=0),
                timeout=urllib3.Timeout(connect=5.0, read=PROBE_TIMEOUT_S))
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UserError(scrub(f"cannot reach the KFP API at {host} ({type(reason).__name__}"
                                  f"); {fix}.")) from None
        status = response.status
        if status == 401 and attempt == 1 and source is not None:
            continue  # the token may have rotated: the retry reads it again
        if status in (401, 403):
            raise UserError(scrub(_Api.refusal(host, source, "check the API", status)))
        if status >= 500:
            raise Fault(f"the KFP API at {host} answered HTTP {status} to {HEALTHZ}; it is "
                        "failing, try again later.")
        content_type = response.headers.get("Content-Type", "")
        try:
            answer = json.loads(response.data) if status == 200 else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            where = getattr(response, "url", None) or url
            raise UserError(scrub(f"{host} does not speak the KFP API: GET {where} answered "
                                  f"{_describe(status, content_type, response.data)}; {fix}."))
        return
    raise AssertionError("unreachable")


class _Api:
    """kfp.Client calls with one retry after a 401 and errors turned into clean sentences."""

    def __init__(self, host: str, source: TokenSource | None, namespace: str) -> None:
        import kfp

        self.host, self.source = host, source
        self.reached = False
        with warnings.catch_warnings():  # kfp warns on every construction that it needs KFP v2
            warnings.simplefilter("ignore", FutureWarning)
            # An explicit namespace also skips kfp's healthz probe (5 tries, 5 s apart) in
            # __init__; a single-user backend ignores it.
            self.client: kfp.Client = kfp.Client(host=host, credentials=source,
                                                 namespace=namespace)

    def call(self, what: str, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        import kfp_server_api
        from urllib3.exceptions import HTTPError

        for attempt in (1, 2):
            try:
                result = method(*args, **kwargs)
                self.reached = True
                return result
            except kfp_server_api.ApiException as exc:
                if exc.status == 401 and attempt == 1 and self.source is not None:
                    continue  # the token may have rotated: the retry reads it again
                if exc.status and exc.status >= 500:
                    raise Fault(self._scrub(self._api_error(what, exc).rstrip(".")
                                            + "; try again later.")) from None
                raise UserError(self._scrub(self._api_error(what, exc))) from None
            except kfp_server_api.OpenApiException as exc:  # an answer of the wrong shape
                raise UserError(self._scrub(
                    f"the KFP API at {self.host} gave an answer of the wrong shape to {what} "
                    f"({type(exc).__name__}); check --host or {ENDPOINT_ENV}.")) from None
            except HTTPError as exc:
                if self.reached:  # it answered before: a dropped connection is not the input
                    raise Fault(self._scrub(
                        f"lost the KFP API at {self.host} while trying to {what} "
                        f"({type(exc).__name__}); try again later.")) from None
                raise UserError(self._scrub(
                    f"cannot reach the KFP API at {self.host} to {what} "
                    f"({type(exc).__name__}); check --host or {ENDPOINT_ENV}.")) from None
        raise AssertionError("unreachable")

    @staticmethod
    def refusal(host: str, source: TokenSource | None, what: str, status: int) -> str:
        """The sentence for a 401 or 403 answer."""
        fix = f"give a valid token with --token-file, {SA_TOKEN_PATH_ENV} or {TOKEN_ENV}"
        if status == 401 and source is None:
            return f"the KFP API at {host} needs a token (HTTP 401) to {what}; {fix}."
        if status == 401:
            return (f"the KFP API at {host} refused the token from {source.origin} "
                    f"(HTTP 401) to {what}, also after reading it again; {fix}.")
        return (f"the KFP API at {host} denied the request to {what} (HTTP 403); give "
                "this identity access to the namespace.")

    def _api_error(self, what: str, exc: Any) -> str:
        if exc.status in (401, 403):
            return self.refusal(self.host, self.source, what, exc.status)
        try:  # KFP answers errors as {"error": ..., "message": ...}
            body = json.loads(exc.body or b"{}")
            message = str(body.get("message") or body.get("error") or "")[:300]
        except (ValueError, AttributeError):
            message = ""
        return (f"the KFP API at {self.host} failed to {what} (HTTP {exc.status} {exc.reason})"
                + (f": {message}" if message else "") + ".")

    def _scrub(self, text: str) -> str:
        return self.source.scrub(text) if self.source else text


def _existing_run(api: _Api, experiment_id: str, name: str) -> Any | None:
    flt = json.dumps({"predicates": [
        {"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    response = api.call("list runs", api.client.list_runs, experiment_id=experiment_id,
                        filter=flt, page_size=10)
    # Compare again: the filter is the server's job, a mismatch here must not hide a new config.
    matches = [r for r in response.runs or [] if r.display_name == name]
    return matches[0] if matches else None


def _follow(api: _Api, run_id: str, timeout_s: float) -> str:
    """Polls the run until it ends; its final state."""
    deadline = time.monotonic() + timeout_s
    misses = 0
    while True:
        try:
            state = str(api.call("get the run", api.client.get_run, run_id).state or "")
            misses = 0
        except Fault:
            misses += 1  # a restarting API server or a dropped port-forward: poll again
            if misses >= FOLLOW_MISSES or time.monotonic() >= deadline:
                raise
            time.sleep(POLL_S)
            continue
        if state in FINAL_STATES:
            return state
        if time.monotonic() >= deadline:
            raise JobFailed(f"run {run_id} is still {state or 'pending'} after {timeout_s:g} s "
                            "(--timeout); it goes on on the cluster.")
        time.sleep(POLL_S)


def run(args: argparse.Namespace) -> int:
    """Submits the run for args.config once; with --wait, 0 if it succeeds, else JobFailed."""
    cfg = load_config(args.config, args.overrides)
    host = _resolve_host(args.host)
    source = TokenSource.find(args.token_file)
    if source is not None:
        source.read()  # fail on a missing or empty token before talking to the server
    try:
        check_api(host, source)
        return _submit(args, cfg, host, source)
    except (UserError, JobFailed, Fault):
        raise
    except Exception as exc:
        # Last line of defence: nothing on the way out may carry the token.
        text = f"{type(exc).__name__}: {exc}"
        if source is not None and source.scrub(text) != text:
            raise RuntimeError(source.scrub(text)) from None
        raise


def _submit(args: argparse.Namespace, cfg: RunConfig, host: str,
            source: TokenSource | None) -> int:
    from kfp_yolo.pipelines.cmd_compile import compile_pipeline

    name = run_name(cfg)
    api = _Api(host, source, cfg.namespace)
    experiment = api.call(f"get or create the experiment {args.experiment!r}",
                          api.client.create_experiment, name=args.experiment,
                          namespace=cfg.namespace)
    if not experiment.experiment_id:
        raise UserError(f"the KFP API at {host} answered without an experiment id; check "
                        f"--host or {ENDPOINT_ENV}.")
    existing = _existing_run(api, experiment.experiment_id, name)
    if existing is not None:
        run_id = existing.run_id
        print(f"run {name} already exists: {run_id} ({existing.state}); not submitting again "
              "(a changed config, e.g. another name, starts a new run).")
    else:
        with tempfile.TemporaryDirectory(prefix="kfp-yolo-submit-") as tmp:
            package = compile_pipeline(cfg, Path(tmp) / "pipeline.yaml", args.pools)
            created = api.call("create the run", api.client.run_pipeline,
                               experiment_id=experiment.experiment_id, job_name=name,
                               pipeline_package_path=str(package),
                               # the compile-time keys are compiled in, not parameters
                               params=run_time_values(cfg),
                               # every step pod runs as this account; None = the namespace's
                               service_account=cfg.service_account or None)
        run_id = created.run_id
        if not run_id:
            raise UserError(f"the KFP API at {host} answered the new run without a run id; "
                            f"nothing can be followed, check --host or {ENDPOINT_ENV}.")
        print(f"submitted run {name}: {run_id}")
    if not args.wait:
        return 0
    print(f"following run {run_id} (up to {args.timeout} s) ...", file=sys.stderr)
    state = _follow(api, run_id, args.timeout)
    if state != "SUCCEEDED":
        raise JobFailed(f"run {run_id} ended {state}; see it in the Kubeflow UI.")
    print(f"run {run_id} SUCCEEDED")
    return 0
