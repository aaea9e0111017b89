"""One Kubernetes API client for the launchers, deploy and the checks, and its error sentences:
where the client's configuration comes from (in-cluster, else the kubeconfig), a cheap check
that one exists, and the API server's Status message of a refusal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from kfp_yolo.components.errors import UserError

__all__ = ["NO_CLUSTER", "cluster_config_problem", "default_api_client", "status_message"]


def status_message(exc: Any) -> str:
    """The API server's Status message of an ApiException."""
    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(getattr(exc, "reason", exc))


NO_CLUSTER = ("a cluster launcher (pytorchjob, trainjob or auto) found no Kubernetes cluster "
              "to create the job in: no in-cluster service account and no kubeconfig "
              "(KUBECONFIG or ~/.kube/config); run it in a cluster, point KUBECONFIG at one, "
              "or set launcher=local.")


def cluster_config_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """None when a kubernetes client can be configured here, else NO_CLUSTER (cheap: no API
    call, no kubernetes import), so a run can refuse before it prepares any data."""
    environ = os.environ if environ is None else environ
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    if environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(token):
        return None
    paths = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    paths = paths or [os.path.expanduser("~/.kube/config")]
    return None if any(os.path.isfile(p) for p in paths) else NO_CLUSTER


def default_api_client() -> Any:
    """An ApiClient from the in-cluster config, else the kubeconfig; neither is a UserError."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except config.ConfigException as exc:  # not a traceback: one sentence, exit 2
            raise UserError(f"{NO_CLUSTER.rstrip('.')} ({' '.join(str(exc).split())}).") from None
    return client.ApiClient()
