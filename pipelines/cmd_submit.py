"""`kfp-yolo submit`: compile the DAG for a config and start it on a KFP endpoint, once per config.

Idempotent per config content: the run's display name ends with a hash of the normalized config,
and a run of that name in the experiment is reused instead of starting another (GitOps syncs
may submit the same config many times). A create answered 409 (another submit won a race)
adopts the run of that name. When the config's last run ended FAILED or CANCELED, submit does
not pretend it is done: without --retry-failed it exits 1 naming the run and its error; with
it, it starts a new attempt (the GitOps hook passes it: a sync is the request to train).

Every API call is bounded (pipelines/kfp_api.py): connect and read timeouts, and one deadline
(--api-timeout) for all the calls of a submit, retries with backoff included. A stalled or
failing API is a fault (exit 1) whose sentence says how long it waited; a host that cannot be
reached at all is bad input (exit 2).

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
from pathlib import Path
from typing import Any

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.config.run_config import RunConfig, run_time_values
from kfp_yolo.components.errors import Fault, JobFailed, UserError
from kfp_yolo.pipelines.kfp_api import (
    ENDPOINT_ENV,
    Api,
    ApiRefused,
    Budget,
    TokenSource,
    check_api,
)

__all__ = ["TokenSource", "check_api", "config_digest", "run", "run_name"]

POLL_S = 10.0
"""Seconds between polls of a followed run."""
FOLLOW_MISSES = 6
"""Failed polls in a row after which --wait gives up (the run goes on on the cluster)."""
FINAL_STATES = {"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"}
UNSUCCESSFUL = {"FAILED", "CANCELED"}
"""Final states after which a submit of the same config does not count as done."""


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


def _run_error(run: Any) -> str:
    """The run's error message from the API ('' when it has none)."""
    error = getattr(run, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    return " ".join(str(message).split())[:300] if message else ""


def _ended(run_id: str, state: str, run: Any) -> str:
    message = _run_error(run)
    return f"run {run_id} ended {state}" + (f": {message}" if message else "")


def _existing_run(api: Api, experiment_id: str, name: str) -> Any | None:
    """The newest run of this name in the experiment, or None."""
    flt = json.dumps({"predicates": [
        {"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    response = api.call("list runs", api.client.list_runs, experiment_id=experiment_id,
                        filter=flt, page_size=100, sort_by="created_at desc")
    # Compare again: the filter is the server's job, a mismatch here must not hide a new config.
    matches = [r for r in response.runs or [] if r.display_name == name]
    if not matches:
        return None
    return max(enumerate(matches),
               key=lambda item: (str(getattr(item[1], "created_at", None) or ""), -item[0]))[1]


def _create(api: Api, experiment_id: str, name: str, package: Path, cfg: RunConfig,
            previous: str | None) -> str:
    """Creates the run; adopts the run of this name when the create was answered 409 or
    timed out after the server may have made it. Its id."""
    try:
        created = api.call("create the run", api.client.run_pipeline, retry_slow=False,
                           experiment_id=experiment_id, job_name=name,
                           pipeline_package_path=str(package),
                           # the compile-time keys are compiled in, not parameters
                           params=run_time_values(cfg),
                           # every step pod runs as this account; None = the namespace's
                           service_account=cfg.service_account or None)
    except (ApiRefused, Fault) as exc:
        if isinstance(exc, ApiRefused) and exc.status != 409:
            raise
        found = _existing_run(api, experiment_id, name)
        if found is None or found.run_id == previous:
            if isinstance(exc, Fault):
                raise
            raise Fault(f"the KFP API at {api.host} answered 409 (exists) to create the run "
                        f"{name}, but no run of that name is in the experiment; try again."
                        ) from None
        why = "409: another submit created it" if isinstance(exc, ApiRefused) else \
            "the create timed out, but the server made the run"
        print(f"adopted run {name}: {found.run_id} ({why})")
        return found.run_id
    if not created.run_id:
        raise UserError(f"the KFP API at {api.host} answered the new run without a run id; "
                        f"nothing can be followed, check --host or {ENDPOINT_ENV}.")
    print(f"submitted run {name}: {created.run_id}")
    return created.run_id


def _follow(api: Api, run_id: str, timeout_s: float) -> tuple[str, Any]:
    """Polls the run until it ends; its final state and the run."""
    deadline = time.monotonic() + timeout_s
    misses = 0
    while True:
        # One try per poll, bounded by the read timeout: this loop is the retry.
        api.budget = Budget(total_s=api.budget.read_s + api.budget.connect_s, max_tries=1,
                            reached=True,
                            connect_s=api.budget.connect_s, read_s=api.budget.read_s)
        try:
            run = api.call("get the run", api.client.get_run, run_id)
            state = str(run.state or "")
            misses = 0
        except Fault:
            misses += 1  # a restarting API server or a dropped port-forward: poll again
            if misses >= FOLLOW_MISSES or time.monotonic() >= deadline:
                raise
            time.sleep(POLL_S)
            continue
        if state in FINAL_STATES:
            return state, run
        if time.monotonic() >= deadline:
            raise JobFailed(f"run {run_id} is still {state or 'pending'} after {timeout_s:g} s "
                            "(--timeout); it goes on on the cluster.")
        time.sleep(POLL_S)


def run(args: argparse.Namespace) -> int:
    """Submits the run for args.config once; with --wait, 0 if it succeeds, else JobFailed."""
    from kfp_yolo.pipelines.cmd_compile import compile_pipeline

    cfg = load_config(args.config, args.overrides)
    host = _resolve_host(args.host)
    api_timeout = getattr(args, "api_timeout", None)
    if api_timeout is not None and api_timeout <= 0:
        raise UserError(f"--api-timeout must be > 0 seconds, got {api_timeout:g}.")
    source = TokenSource.find(args.token_file)
    if source is not None:
        source.read()  # fail on a missing or empty token before talking to the server
    with tempfile.TemporaryDirectory(prefix="kfp-yolo-submit-") as tmp:
        # Compiled first: the deadline is for the API, not for this machine's CPU.
        package = compile_pipeline(cfg, Path(tmp) / "pipeline.yaml", args.pools)
        budget = Budget(total_s=api_timeout or 0)
        try:
            check_api(host, source, budget)
            return _submit(args, cfg, host, source, budget, package)
        except (UserError, JobFailed, Fault):
            raise
        except Exception as exc:
            # Last line of defence: nothing on the way out may carry the token.
            text = f"{type(exc).__name__}: {exc}"
            if source is not None and source.scrub(text) != text:
                raise RuntimeError(source.scrub(text)) from None
            raise


def _submit(args: argparse.Namespace, cfg: RunConfig, host: str, source: TokenSource | None,
            budget: Budget, package: Path) -> int:
    name = run_name(cfg)
    api = Api(host, source, cfg.namespace, budget)
    experiment = api.call(f"get or create the experiment {args.experiment!r}",
                          api.client.create_experiment, name=args.experiment,
                          namespace=cfg.namespace)
    if not experiment.experiment_id:
        raise UserError(f"the KFP API at {host} answered without an experiment id; check "
                        f"--host or {ENDPOINT_ENV}.")
    existing = _existing_run(api, experiment.experiment_id, name)
    state = str(existing.state or "") if existing is not None else ""
    if existing is not None and state not in UNSUCCESSFUL:
        run_id = existing.run_id
        print(f"run {name} already exists: {run_id} ({state or 'PENDING'}); not submitting "
              "again (a changed config, e.g. another name, starts a new run).")
    elif existing is not None and not getattr(args, "retry_failed", False):
        raise JobFailed(f"the last run of this config, {name}: "
                        f"{_ended(existing.run_id, state, existing)}; pass --retry-failed to "
                        "start a new attempt, or change the config.")
    else:
        if existing is not None:
            print(f"{_ended(existing.run_id, state, existing)}; starting a new attempt "
                  "(--retry-failed)")
        run_id = _create(api, experiment.experiment_id, name, package, cfg,
                         existing.run_id if existing is not None else None)
    if not args.wait:
        return 0
    print(f"following run {run_id} (up to {args.timeout} s) ...", file=sys.stderr)
    state, run = _follow(api, run_id, args.timeout)
    if state != "SUCCEEDED":
        raise JobFailed(f"{_ended(run_id, state, run)}; see it in the Kubeflow UI.")
    print(f"run {run_id} SUCCEEDED")
    return 0
