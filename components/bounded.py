"""One bound for every client of a server we do not own (MLflow, the Kubeflow Model Registry,
the API server KServe's objects go to): a timeout per request and a number of retries, so a
server that is down costs seconds, not the minutes of a library's own defaults.

The user's own setting wins: MLflow reads MLFLOW_HTTP_REQUEST_TIMEOUT / _MAX_RETRIES /
_BACKOFF_FACTOR from the environment, and where the user set one, it stays.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Bound", "bound_mlflow", "request_timeout", "run_bounded"]

MLFLOW_ENV = {"timeout_s": "MLFLOW_HTTP_REQUEST_TIMEOUT",
              "retries": "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
              "backoff_s": "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"}
"""Where MLflow's HTTP client reads each bound (per request, from the environment only)."""


@dataclass(frozen=True)
class Bound:
    """How long one request may take, and how often a failed one is tried again."""

    timeout_s: float
    retries: int = 0
    backoff_s: float = 1.0


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def bound_mlflow(default: Bound, environ: MutableMapping[str, str] | None = None) -> Bound:
    """Sets MLflow's HTTP bounds to default where the user has not set them; the bound in force.

    MLflow's own defaults (120 s timeout, 7 retries with backoff) would hold a training or a
    publish for minutes when the server is down.
    """
    environ = os.environ if environ is None else environ
    values = {}
    for field, key in MLFLOW_ENV.items():
        mine = getattr(default, field)
        environ.setdefault(key, str(int(mine) if float(mine).is_integer() else mine))
        found = _number(environ[key])
        values[field] = mine if found is None else found
    return Bound(timeout_s=values["timeout_s"], retries=int(values["retries"]),
                 backoff_s=values["backoff_s"])


def request_timeout(bound: Bound) -> tuple[float, float]:
    """The kubernetes client's `_request_timeout` (connect, read) for one API call."""
    return (min(bound.timeout_s, 10.0), bound.timeout_s)


def run_bounded(coro: Coroutine[Any, Any, Any], bound: Bound) -> Any:
    """Runs an async client's call on a loop of its own, cancelled after bound.timeout_s.

    One loop per call: no loop is left open, and nest_asyncio's global patch is never needed.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, bound.timeout_s))
    finally:
        loop.close()
