"""`launcher: auto`: the job kind is chosen at run time, by asking the API server what it serves.

TrainJob (trainer.kubeflow.org/v1alpha1, Kubeflow Trainer v2) is preferred to PyTorchJob
(kubeflow.org/v1, Training Operator v1): Kueue v0.19 admits TrainJobs in its default
configuration and has deprecated its PyTorchJob integration. The question is API discovery
(`GET /apis/<group>/<version>`), which the built-in ClusterRole `system:discovery` grants to
every authenticated user; the step's Role needs nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.api import default_api_client, status_message
from kfp_yolo.components.launchers.cluster import cluster_settings
from kfp_yolo.components.launchers.kinds import PYTORCHJOB, TRAINJOB, JobKind
from kfp_yolo.components.spec import TrainSpec

__all__ = ["PREFERENCE", "AutoLauncher", "resolve_kind", "serves"]

PREFERENCE = (TRAINJOB, PYTORCHJOB)
"""The kinds `auto` may use, best first."""


def serves(api_client: Any, kind: JobKind) -> bool:
    """Whether the API server serves this kind's resource (its group/version lists the plural)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        listed = client.CustomObjectsApi(api_client).get_api_resources(kind.group, kind.version)
    except ApiException as exc:
        if exc.status == 404:
            return False
        if exc.status == 403:
            raise UserError(
                f"permission denied: this step's service account may not get "
                f"/apis/{kind.api_version} (API discovery, which the built-in ClusterRole "
                "system:discovery grants to every authenticated user); restore that binding or "
                f"set launcher to trainjob or pytorchjob. API server: {status_message(exc)}"
            ) from None
        raise
    return any(resource.name == kind.plural for resource in listed.resources or [])


def resolve_kind(api_client: Any) -> tuple[JobKind, str]:
    """The preferred kind the API server serves, and one line saying so for the step's log."""
    skipped: list[JobKind] = []
    for kind in PREFERENCE:
        if serves(api_client, kind):
            note = "".join(f", not {k.kind} ({k.api_version})" for k in skipped)
            return kind, (f"launcher auto: the API server serves {kind.kind} "
                          f"({kind.api_version}){note}; using {kind.kind}")
        skipped.append(kind)
    host = getattr(getattr(api_client, "configuration", None), "host", "?")
    raise UserError(
        f"launcher auto: the API server at {host} serves neither TrainJob "
        f"({TRAINJOB.api_version} trainjobs) nor PyTorchJob ({PYTORCHJOB.api_version} "
        "pytorchjobs); install Kubeflow Trainer v2.3 (k8s/README.md) or set launcher: local.")


class AutoLauncher:
    """A TrainJob or PyTorchJob launcher, whichever the API server serves (TrainJob first).

    The choice is made on first use of `kind` or `launch`, logged in one line, and kept:
    `kind` then says which it was, for the run summary.
    """

    def __init__(self, *, api_client: Any = None, out: Callable[[str], None] | None = None,
                 **options: Any) -> None:
        """Args:
            api_client: a kubernetes ApiClient; default: in-cluster config, else kubeconfig.
            out: where the choice and the job's status lines go (default: stdout).
            **options: what the chosen launcher takes (ClusterJobLauncher's arguments:
                ClusterSettings fields, clock and sleep).
        """
        # Bad settings fail now, before the API server is asked anything.
        settings = {k: v for k, v in options.items() if k not in ("clock", "sleep")}
        cluster_settings("auto", **settings)
        self._api_client = api_client
        self._out = out or (lambda line: print(line, flush=True))
        self._options = dict(options)
        self._chosen: Any = None

    @property
    def kind(self) -> str:
        """TrainJob or PyTorchJob: the kind the API server serves (asked once)."""
        return self.resolve().kind

    def resolve(self) -> Any:
        """The launcher of the kind the API server serves (asked on the first call only)."""
        if self._chosen is None:
            from kfp_yolo.components.launchers.lifecycle import (
                PyTorchJobLauncher,
                TrainJobLauncher,
            )

            if self._api_client is None:
                self._api_client = default_api_client()
            kind, line = resolve_kind(self._api_client)
            self._out(line)
            launcher = TrainJobLauncher if kind is TRAINJOB else PyTorchJobLauncher
            self._chosen = launcher(api_client=self._api_client, out=self._out,
                                    **self._options)
        return self._chosen

    def launch(self, spec: TrainSpec) -> None:
        """Chooses the kind (if not yet chosen) and launches the job with it."""
        self.resolve().launch(spec)
