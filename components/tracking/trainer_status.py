"""TrainJob progress: rank 0 posts `status.trainerStatus` to the Kubeflow Trainer after each epoch.

With the TrainJobStatus feature gate (Trainer v2.3, alpha) the controller gives every trainer
container KUBEFLOW_TRAINER_SERVER_URL (the full https URL, ending in
/apis/trainer.kubeflow.org/v1alpha1/namespaces/NS/trainjobs/NAME/status),
KUBEFLOW_TRAINER_SERVER_CA_CERT (a path to the server's CA) and KUBEFLOW_TRAINER_SERVER_TOKEN (a
path to a projected service-account token that rotates, so it is read for every post).

Posting is bounded and off the training loop: `report` hands the newest body to one background
thread and returns at once (an older body not yet sent is replaced); a failure is logged once;
`close` waits a few seconds at most for the last post.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["ENV_KEYS", "TrainerStatusReporter", "TrainerStatusSettings", "status_body"]

log = logging.getLogger("kfp_yolo.trainer_status")

ENV_KEYS = ("KUBEFLOW_TRAINER_SERVER_URL", "KUBEFLOW_TRAINER_SERVER_CA_CERT",
            "KUBEFLOW_TRAINER_SERVER_TOKEN")
MAX_METRICS = 256  # the CRD's maxItems
MAX_TEXT = 64  # the CRD's maxLength of a metric's name and value


@dataclass(frozen=True)
class TrainerStatusSettings:
    """The status endpoint; read once at the worker's boundary, then passed as a value."""

    url: str = ""
    ca_cert: str = ""
    """Path of the CA bundle that signed the server's certificate ('' = the system's)."""
    token_path: str = ""
    """Path of the bearer token file ('' = no Authorization header)."""

    @property
    def enabled(self) -> bool:
        return self.url.startswith("https://") or self.url.startswith("http://")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> TrainerStatusSettings:
        environ = os.environ if environ is None else environ
        return cls(*(environ.get(key, "").strip() for key in ENV_KEYS))


def _text(value: object) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text[:MAX_TEXT] or "-"


def status_body(*, progress_percentage: int, estimated_remaining_s: float | None,
                metrics: Mapping[str, object], now: datetime | None = None) -> dict:
    """The request body: `{"trainerStatus": {...}}` as the v2.3.0 CRD's schema wants it."""
    status: dict = {
        "progressPercentage": max(0, min(100, int(progress_percentage))),
        "metrics": [{"name": str(name)[:MAX_TEXT], "value": _text(value)}
                    for name, value in list(metrics.items())[:MAX_METRICS] if str(name)],
        "lastUpdatedTime": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if estimated_remaining_s is not None:
        status["estimatedRemainingSeconds"] = max(0, min(2**31 - 1, int(estimated_remaining_s)))
    return {"trainerStatus": status}


class TrainerStatusReporter:
    """Posts status bodies from one daemon thread; the newest body wins.

    Args:
        settings: the endpoint; a disabled one makes `report` a no-op.
        timeout_s: the longest one post may take.
    """

    def __init__(self, settings: TrainerStatusSettings, *, timeout_s: float = 3.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.sent = 0
        self.failed = 0
        self._pending: dict | None = None
        self._closing = False
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def report(self, body: dict) -> None:
        """Queues `body` and returns at once."""
        if not self.settings.enabled:
            return
        with self._wake:
            self._pending = body
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="trainer-status",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def close(self, timeout_s: float | None = None) -> None:
        """Lets the last body go out, waiting at most `timeout_s` (default 2 x the post timeout)."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s * 2 if timeout_s is None else timeout_s)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closing:
                    self._wake.wait()
                body, self._pending = self._pending, None
                if body is None:
                    return
            self._post(body)

    def _post(self, body: dict) -> None:
        try:
            request = urllib.request.Request(
                self.settings.url, data=json.dumps(body).encode(), method="POST",
                headers={"Content-Type": "application/json", **self._authorization()})
            context = (ssl.create_default_context(cafile=self.settings.ca_cert or None)
                       if self.settings.url.startswith("https://") else None)
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=context) as answer:
                answer.read()
            self.sent += 1
        except Exception as exc:  # a server we do not own: log once, training goes on
            self.failed += 1
            if self.failed == 1:
                log.warning("posting the TrainJob's progress to %s failed (%s: %s); training "
                            "goes on, later failures are not logged", self.settings.url,
                            type(exc).__name__, exc)

    def _authorization(self) -> dict[str, str]:
        if not self.settings.token_path:
            return {}
        from kfp_yolo.components.redact import register

        with open(self.settings.token_path, encoding="utf-8") as handle:  # it rotates: read now
            token = handle.read().strip()
        register(token)  # masked in every log line of this process from now on
        return {"Authorization": f"Bearer {token}"}
