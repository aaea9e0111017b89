"""What the environment must allow, checked before training (`kfp-yolo run` and validate-config).

A config can be valid and still fail after tens of GPU minutes because of where it runs: a
local registry or checkpoint folder that cannot be created or written (`registry_uri=/proc/x`),
or an MLFLOW_TRACKING_URI that MLflow cannot use. `check_environment` finds these first and
refuses them in one sentence (UserError, exit 2). Nothing is left behind: a folder that does
not exist yet is probed in its nearest existing parent with a temporary folder, removed at once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from kfp_yolo.components.errors import UserError
from kfp_yolo.components.redact import redact

__all__ = ["MLFLOW_SCHEMES", "check_environment", "check_mlflow_uri", "check_writable"]

MLFLOW_SCHEMES = ("http", "https", "file", "databricks", "sqlite", "postgresql", "mysql",
                  "mssql")
"""Tracking URI schemes MLflow's client accepts (a plain path is a file store too)."""


def check_writable(uri: str, key: str, source: str) -> None:
    """Refuses a local store (a path or file://) that cannot be created or written."""
    from kfp_yolo.components import storage

    if not uri or storage.is_remote(uri):
        return
    path = storage.local_path(uri).expanduser().absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    fix = f"give {key} a folder this process can write (e.g. under {Path.home()}), or an s3:// URI"
    if existing is None or not existing.is_dir():
        where = f"{existing} is a file" if existing is not None else "no parent exists"
        raise UserError(f"{source}: {key}={uri!r} cannot be created ({where}); {fix}.")
    # os.access says yes to root on /proc; only making something there tells the truth
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".kfp-yolo-probe-", dir=existing))
    except OSError as exc:
        doing = "written" if existing == path else f"created (in {existing})"
        raise UserError(f"{source}: {key}={uri!r} cannot be {doing}: "
                        f"{exc.strerror or type(exc).__name__}; {fix}.") from None


def check_mlflow_uri(uri: str) -> None:
    """Refuses an MLFLOW_TRACKING_URI that MLflow's client cannot use (its own error only
    comes after training, when the first metric is logged)."""
    shown = redact(uri)
    parsed = urlparse(uri)
    fix = ("write http(s)://HOST[:PORT][/PATH] (e.g. http://mlflow.kubeflow:5000), a "
           "file:///PATH, or unset MLFLOW_TRACKING_URI")
    problem = ""
    if any(c.isspace() for c in uri) or "\0" in uri:
        problem = "it contains a space or a control character"
    elif parsed.scheme and parsed.scheme.lower() not in MLFLOW_SCHEMES \
            and not (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        problem = f"scheme {parsed.scheme!r} is none MLflow knows"
    elif parsed.scheme.lower() in ("http", "https"):
        try:
            port_ok = parsed.port is None or parsed.port > 0
        except ValueError:
            port_ok = False
        if not parsed.hostname:
            problem = "it names no host"
        elif not port_ok:
            problem = "its port is not a number from 1 to 65535"
    if problem:
        raise UserError(f"MLFLOW_TRACKING_URI {shown!r} is not a URI kfp-yolo can use "
                        f"({problem}); {fix}.")


def check_environment(cfg: object, source: str,
                      environ: Mapping[str, str] | None = None) -> None:
    """Everything about where cfg runs that would otherwise fail only after training."""
    environ = os.environ if environ is None else environ
    for key in ("registry_uri", "checkpoint_uri"):
        check_writable(str(getattr(cfg, key, "") or ""), key, source)
    if environ.get("MLFLOW_TRACKING_URI", "").strip():
        check_mlflow_uri(environ["MLFLOW_TRACKING_URI"].strip())
