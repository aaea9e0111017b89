"""`kfp-yolo job render [--config FILE] [--set KEY=VALUE] [--pools FILE] [--launcher KIND]`.

Prints the TrainJob or PyTorchJob the cluster launcher would create for the config, as YAML
that `kubectl apply -f -` takes. `--launcher` picks the kind (trainjob or pytorchjob); without it,
the config's launcher when it names one, else trainjob, which `launcher: auto` prefers (auto
itself is decided by the API server at run time). What only a pipeline run knows is filled with
placeholders:

- dataset_uri: where the prepare step's Dataset artifact would be under the pipeline root,
  `minio://mlpipeline/v2/artifacts/<name>/prepare-dataset/dataset`; the real train step passes
  the artifact's own URI;
- output_uri: `.../<name>/train/weights`; checkpoint_uri: the config's, else
  `.../<name>/train/checkpoints`, beside the weights, where the train step puts them
  (spec.default_checkpoint_uri);
- run_id: the config's name (a pipeline run uses its run name);
- placement: the memory planner's pool (affinity on nvidia.com/gpu.memory and the pool's
  tolerations) for nc=80 classes, and its batch when the config's batch is 0.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.config.run_config import RunConfig
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.pools import load_pools
from kfp_yolo.components.launchers.cluster import ClusterSettings, cluster_settings_from
from kfp_yolo.components.launchers.kinds import KINDS
from kfp_yolo.components.spec import TrainSpec, train_spec_from

__all__ = ["PIPELINE_ROOT", "job_kind_name", "render_job", "run"]

PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
"""KFP's default pipeline root on a cluster: the placeholder URIs live under it."""
PLANNER_NC = 80
"""Classes assumed by the planner here (the dataset is not read to render a job)."""


def _placement(cfg: RunConfig, pools_path: str | None) -> tuple[dict, int, str]:
    """(ClusterSettings placement fields, global batch, note) from the memory planner."""
    from kfp_yolo.components.planner import plan

    pools = load_pools(pools_path)
    # `auto` lets ultralytics pick AdamW for short runs: plan for its larger state.
    optimizer = "AdamW" if cfg.optimizer == "auto" else cfg.optimizer
    result = plan(cfg.model, imgsz=cfg.imgsz, batch=cfg.batch, world_size=cfg.world_size,
                  precision=cfg.precision, optimizer=optimizer, nc=PLANNER_NC, pools=pools,
                  procs_per_node=cfg.procs_per_node, objective=cfg.objective,
                  epochs=cfg.epochs)  # no dataset here: a deadline is judged by the plan step
    placement = {"node_affinity": tuple(result.affinity),
                 "tolerations": tuple(result.pool.tolerations)}
    return placement, cfg.batch or result.batch, f"planned for pool {result.pool.name}"


def job_kind_name(cfg: RunConfig, launcher: str | None) -> str:
    """trainjob or pytorchjob: the one asked for, else the config's, else trainjob."""
    chosen = launcher or (cfg.launcher if cfg.launcher in KINDS else "trainjob")
    if chosen not in KINDS:
        raise UserError(f"--launcher {chosen!r} renders no job; use one of {sorted(KINDS)}.")
    return chosen


def render_job(cfg: RunConfig, *, pools_path: str | None = None,
               launcher: str | None = None) -> tuple[dict, str]:
    """The TrainJob or PyTorchJob for cfg and a one-line note on how it was placed."""
    kind = KINDS[job_kind_name(cfg, launcher)]
    placement, batch, note = _placement(cfg, pools_path)
    base = f"{PIPELINE_ROOT}/{cfg.name}"
    output_uri = f"{base}/train/weights"
    # the values the validate step would pass on: lr0 resolved to the optimizer's default
    values = {**cfg.model_dump(), "lr0": cfg.learning_rate}
    spec = train_spec_from(values, run_id=cfg.name, batch=batch, output_uri=output_uri,
                           dataset_uri=f"{base}/prepare-dataset/dataset")
    cluster = ClusterSettings(**cluster_settings_from(values, **placement))
    if cfg.hpo_trials:
        return _experiment(cfg, spec, cluster), note
    return kind.build(spec, cluster), note


def _experiment(cfg: RunConfig, spec: TrainSpec, cluster: ClusterSettings) -> dict:
    """The Katib Experiment the search step would create (its trials: TrainJobs)."""
    from dataclasses import replace

    from kfp_yolo.components.hpo.experiment import build_experiment
    from kfp_yolo.components.hpo.space import SearchSpace

    trials = replace(spec, epochs=cfg.hpo_epochs, checkpoint_uri="",
                     output_uri=f"{PIPELINE_ROOT}/{cfg.name}/search/trials",
                     hyp={"fraction": cfg.hpo_fraction} if cfg.hpo_fraction < 1 else {})
    return build_experiment(trials, cluster, SearchSpace.from_config(cfg.model_dump()),
                            trials=cfg.hpo_trials, parallel=cfg.hpo_parallel,
                            algorithm=cfg.hpo_algorithm)


class _NoAliases(yaml.SafeDumper):
    """Writes a value the Master and Worker share twice, not as &id001/*id001 (which reviewers
    of a GitOps diff and some tools read badly)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def run(args: argparse.Namespace) -> int:
    """Prints the manifest to stdout."""
    cfg = load_config(args.config, args.overrides)
    job, note = render_job(cfg, pools_path=args.pools, launcher=getattr(args, "launcher", None))
    header = (f"# {job['kind']} for config {args.config or '(built-in defaults)'}; {note}.\n"
              "# dataset_uri and output_uri are placeholders under the pipeline root.\n")
    if job["kind"] == "Experiment":
        header += ("# hpo_trials > 0: the Katib Experiment of the search before the training "
                   "(trials: TrainJobs; needs Katib 0.19 and the namespace label "
                   "katib.kubeflow.org/metrics-collector-injection: enabled). Render with "
                   "--set hpo_trials=0 for the training's job.\n")
    if job["kind"] in ("TrainJob", "Experiment"):
        runtime = (job if job["kind"] == "TrainJob" else
                   job["spec"]["trialTemplate"]["trialSpec"])["spec"]["runtimeRef"]["name"]
        header += (f"# Needs the ClusterTrainingRuntime {runtime!r} "
                   "(kubectl apply -k k8s/trainer).\n")
    # One write: the manifest is far smaller than a pipe's buffer, so `| head` cannot break it.
    sys.stdout.write(header + yaml.dump(job, Dumper=_NoAliases, sort_keys=False, width=100))
    return 0
