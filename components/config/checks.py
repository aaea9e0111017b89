"""The `validate-config` step's logic: a run's parameter values, checked as `--set` checks them.

The Kubeflow UI hands each step raw values; the first step of the DAG rebuilds a RunConfig
from them (plus the compile-time keys compiled into the pipeline) and the node-pool catalog,
so a bad value fails the run in seconds, before any data is read or a GPU is asked for,
with the sentence `--set` would give. The later steps take the checked values it returns.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from pydantic import ValidationError

from kfp_yolo.components.config.preflight import check_environment
from kfp_yolo.components.config.run_config import COMPILE_TIME, RunConfig, format_error
from kfp_yolo.components.config.values import check_local_model
from kfp_yolo.components.config.warm_start_keys import fine_tunes
from kfp_yolo.components.errors import UserError

__all__ = ["CLUSTER_JOB_KEYS", "CONFIG", "NODE_POOLS", "PARAMETER_SOURCE", "check_config",
           "check_run_parameters", "step_values"]

NODE_POOLS = "node_pools"
"""The pipeline parameter that carries the node-pool catalog's text."""
CLUSTER_JOB_KEYS = ("queue", "workload_priority_class", "priority_class", "service_account",
                    "backoff_limit", "ttl_after_finished_s", "mlflow_secret")
"""Settings of a cluster launcher's training job: a pipeline compiled with launcher=local trains
in the train step's own pod, and they change nothing there (the description says so, and
validate-config warns when one is set)."""
CONFIG = "config"
"""The validate step's extra output: every checked value as one structured value (step_values),
which the search, train and publish steps take whole (a new training key needs no new wire)."""
PARAMETER_SOURCE = "run parameter"
"""How a refused value's sentence starts: `run parameter: epochs=-1 is invalid: ...`."""


def check_config(values: dict[str, Any], node_pools: str,
                 source: str = PARAMETER_SOURCE) -> RunConfig:
    """RunConfig from raw values, checked against the catalog too; refusals are UserErrors
    whose sentence starts with source."""
    from kfp_yolo.components.k8s.pools import load_pools_text, pools_for_precision

    try:
        cfg = RunConfig(**values)
    except ValidationError as err:
        raise UserError(format_error(err, source)) from None
    pools = load_pools_text(node_pools, source=f"the {NODE_POOLS} parameter")
    if not pools_for_precision(pools, cfg.precision):
        products = ", ".join(sorted({p.gpu_product for p in pools}))
        raise UserError(f"{source}: precision='bf16' is invalid: no node pool's GPU "
                        f"runs bf16 natively (it needs an Ampere or newer GPU; the catalog has "
                        f"{products}); use precision=amp, or add such a pool to the catalog.")
    largest = max((p.gpu_memory_mib for p in pools), default=0)
    if cfg.deploy == "kserve" and cfg.serving_gpu_memory_mib > largest:
        # no node has that much: the InferenceService would wait deploy_timeout_s, then fail
        raise UserError(f"{source}: serving_gpu_memory_mib="
                        f"{cfg.serving_gpu_memory_mib} is invalid: no node pool's GPU has that "
                        f"much memory (the catalog's largest has {largest} MiB); use at most "
                        f"{largest}, or 0 to serve on CPU.")
    return cfg


def check_run_parameters(values: dict[str, Any], *, compiled: dict[str, Any]) -> tuple:
    """The step: every run-time value in `values` (node_pools included) checked; the checked
    values out, in the same order, with lr0 resolved to the optimizer's default when unset.

    compiled: the compile-time keys' values; a run cannot change them.
    """
    values = dict(values)
    node_pools = values.pop(NODE_POOLS)
    refused = sorted(set(values) & COMPILE_TIME)
    if refused:  # only a pipeline edited by hand gets here: compile writes no such input
        raise UserError(f"{PARAMETER_SOURCE}: {', '.join(refused)} is fixed at compile time; "
                        "set it with `kfp-yolo compile --set KEY=VALUE` and upload again.")
    cfg = check_config({**compiled, **values}, node_pools)
    if cfg.launcher != "local" or cfg.deploy == "kserve":  # found out hours later otherwise
        from kfp_yolo.components.k8s.api import cluster_config_problem

        if problem := cluster_config_problem():
            raise UserError(problem if cfg.launcher != "local" else (
                f"{PARAMETER_SOURCE}: deploy='kserve' needs a Kubernetes API server and this "
                "step found none (no in-cluster service account and no kubeconfig); run on a "
                "cluster or set deploy=none."))
    if cfg.launcher == "local":  # the train step trains in a pod of this step's image
        check_local_model(cfg.model, PARAMETER_SOURCE)
        unused = [f"{key}={getattr(cfg, key)!r}" for key in CLUSTER_JOB_KEYS
                  if key in values and getattr(cfg, key) != RunConfig.model_fields[key].default]
        if unused:
            print(f"validate-config: warning: {', '.join(unused)} change nothing: this pipeline "
                  "was compiled with launcher=local (the train step trains in its own pod); "
                  "compile with `--set launcher=auto` for a cluster job.")
    # This step's pod has the image and environment of publish and the train step
    check_environment(cfg, PARAMETER_SOURCE)
    config = step_values(cfg)
    checked = {name: config[name] for name in values}
    checked[NODE_POOLS] = node_pools
    # the later steps' config, and what a version's lineage records (the catalog is a
    # parameter of the pipeline, not a value of the run)
    checked[CONFIG] = config
    print("validate-config: every parameter is valid: " + ", ".join(
        f"{name}={value!r}" for name, value in checked.items()
        if name not in (NODE_POOLS, CONFIG)))
    return namedtuple("CheckedConfig", list(checked))(**checked)


def step_values(cfg: RunConfig) -> dict[str, Any]:
    """Every key's checked value as the steps take it (JSON values), lr0 resolved.

    lr0 0 (unset) becomes the optimizer's default, except with a warm start from a YAML: the
    train step picks the fine-tune or from-scratch default once the plan step has found (or
    not) the registry's version, so it stays 0 here. `kfp-yolo job render` and `tune` use the
    same values, so they show what a run's steps would do.
    """
    values = cfg.model_dump(mode="json")
    undecided = not cfg.lr0 and cfg.warm_start != "none" and not fine_tunes(cfg.model)
    values["lr0"] = 0.0 if undecided else cfg.learning_rate
    return values
