"""What torchrun starts in every training process: ultralytics' DetectionTrainer, made to work
under an external launcher (one process per device, several nodes), with AMP and checkpoints.

One process (CPU or one GPU):
    torchrun --standalone --nproc-per-node=1 \
        -m kfp_yolo.components.training.worker --spec @spec.json
N processes on one node:
    torchrun --standalone --nproc-per-node=N \
        -m kfp_yolo.components.training.worker --spec @spec.json
N nodes x M processes (run on every node; a PyTorchJob sets these from PET_* variables):
    torchrun --nnodes=N --nproc-per-node=M --node-rank=$NODE_RANK \
        --master-addr=$MASTER_ADDR --master-port=$MASTER_PORT --rdzv-conf=timeout=300 \
        -m kfp_yolo.components.training.worker --spec @spec.json --scratch /scratch

The environment is read once, in `DistEnv.from_environ`; `import ultralytics` happens after it
(ultralytics reads RANK at import). Only global rank 0 writes weights, checkpoints and outputs;
every rank records its own throughput in SCRATCH/progress/rank<R>.json.

Checkpoints (kfp_yolo.components.training.checkpoints): rank 0 uploads them every epoch; a job
started again with the same run id resumes.

Tracking (kfp_yolo.components.training.reporting): with MLFLOW_TRACKING_URI set, rank 0 logs the
parameters and every epoch's metrics (step = epoch) to MLflow; with KUBEFLOW_TRAINER_SERVER_URL
set (a TrainJob with the TrainJobStatus gate), it posts the job's progress after each epoch.

Dataloader workers and image cache are chosen per run from the pod's CPUs and memory, the
processes sharing it and the dataset (kfp_yolo.components.training.inputs), unless the spec sets
them; `--procs-per-host` says how many processes share the machine when it is more than this
node's (the local launcher runs several nodes on one machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from kfp_yolo.components import storage
from kfp_yolo.components.atomic import staged_dir
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.runtime import (
    die_with_parent,
    offline_environment,
    usable_cpus,
    usable_memory_bytes,
)
from kfp_yolo.components.spec import TrainSpec, check_batch_shape
from kfp_yolo.components.training.checkpoints import (
    Checkpoint,
    fetch_checkpoint,
    upload_checkpoint,
    write_results_csv,
)
from kfp_yolo.components.training.dist import (
    COLLECTIVE_TIMEOUT_S,
    DistEnv,
    barrier,
    check_gpu,
    destroy,
    device_type_of,
    from_main,
    init_distributed,
)
from kfp_yolo.components.training.inputs import (
    InputPipeline,
    choose_input_pipeline,
    decoded_bytes,
    split_images,
)
from kfp_yolo.components.training.node import EXIT_BAD_INPUT, EXIT_OUT_OF_MEMORY
from kfp_yolo.components.training.reporting import EpochReporter, Tracking
from kfp_yolo.components.training.trainer import Progress, job_summary, make_trainer
from kfp_yolo.components.training.warm_start import localise_base_model, transfer_report

__all__ = ["COLLECTIVE_TIMEOUT_S", "DistEnv", "entry", "main", "run_worker"]

log = logging.getLogger("kfp_yolo.worker")
METRIC_NAME = "map50_95"
"""The objective's name in the metric lines (and the Katib Experiment's objectiveMetricName)."""
LOSS_NAME = "val_loss"
"""The validation loss's name in the metric lines (a Katib additional metric)."""


def _fetch_dataset(spec: TrainSpec, env: DistEnv, scratch: Path, procs_per_host: int
                   ) -> tuple[Path, InputPipeline]:
    """This node's data.yaml and input pipeline, with the label caches (and a disk image cache)
    built by exactly one writer per folder.

    A remote dataset is downloaded once per node by local rank 0 into the node's scratch folder;
    a local one is shared by every process (and node), so global rank 0 builds its caches.
    """
    remote = storage.is_remote(spec.dataset_uri)
    if remote:
        folder = scratch / "dataset"
        if env.local_rank == 0 and not folder.exists():
            # Downloaded under another name, so a restarted container never sees half of it.
            with staged_dir(folder) as partial:
                storage.download(spec.dataset_uri, partial)
        barrier()
    else:
        folder = storage.local_path(spec.dataset_uri).resolve()
    if not (folder / "data.yaml").exists():
        raise UserError(f"{spec.dataset_uri!r} has no data.yaml; give the prepared Dataset "
                        "artifact's folder.")
    data_yaml = _localised_data_yaml(folder / "data.yaml", folder, scratch, env)
    # Rank 0 decides for every rank: the pods of a job are alike, and the processes of a node
    # must agree on the disk cache they share.
    # .npy files land beside the images: only in this job's own copy of a remote dataset.
    pipeline = from_main(_input_pipeline(spec, env, data_yaml, procs_per_host,
                                         folder if remote else None) if env.is_main else None)
    if env.is_main:
        log.info("input pipeline: %s", pipeline.reason)
    if env.world_size > 1:
        # Ultralytics writes a missing .cache (and .npy) under torch_distributed_zero_first(
        # LOCAL_RANK): one writer per node, so nodes sharing a folder would write at once.
        if (env.local_rank == 0) if remote else env.is_main:
            _build_label_caches(data_yaml, spec.imgsz, disk_cache=pipeline.cache == "disk")
        barrier()
    return data_yaml, pipeline


def _input_pipeline(spec: TrainSpec, env: DistEnv, data_yaml: Path, procs_per_host: int,
                    own_copy: Path | None) -> InputPipeline:
    """Workers and cache from this pod's CPUs and memory and the dataset's decoded size; a disk
    cache only in `own_copy`, the job's own copy of the dataset."""
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml))
    images = [p for split in ("train", "val") for p in split_images(data[split])]
    # Reading every image's header only pays where auto may choose a disk cache: the job's
    # own copy of the dataset.
    count, original = (decoded_bytes(images) if own_copy and spec.cache == "auto"
                       else (len(images), None))
    return choose_input_pipeline(
        cpus=usable_cpus(), mem_bytes=usable_memory_bytes(), procs_per_node=procs_per_host,
        n_images=count, imgsz=spec.imgsz, batch_per_proc=max(1, spec.batch // env.world_size),
        workers_override=spec.workers, cache_override=spec.cache, disk_bytes=original,
        disk_free_bytes=shutil.disk_usage(own_copy).free if own_copy else 0)


def _localised_data_yaml(data_yaml: Path, folder: Path, scratch: Path, env: DistEnv) -> Path:
    """data.yaml with `path:` pointing at where the dataset lies on this node."""
    import yaml

    data = yaml.safe_load(data_yaml.read_text())
    if Path(str(data.get("path", ""))) == folder:
        return data_yaml
    data["path"] = str(folder)
    local = scratch / f"data.rank{env.rank}.yaml"
    local.write_text(yaml.safe_dump(data, sort_keys=False))
    return local


def _build_label_caches(data_yaml: Path, imgsz: int, disk_cache: bool) -> None:
    """Builds (or checks) the train and val label caches and .npy images, as the trainer would."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml))
    cfg = get_cfg(overrides={"imgsz": imgsz, "cache": "disk" if disk_cache else False})
    for split in ("train", "val"):
        build_yolo_dataset(cfg, data[split], 1, data, mode="val")


def _publish(files: dict[str, Path], output_uri: str, scratch: Path) -> Path:
    """Uploads best.pt, last.pt, results.csv (and training.json) to output_uri; returns best.pt."""
    outputs = scratch / "outputs"
    shutil.rmtree(outputs, ignore_errors=True)
    outputs.mkdir(parents=True)
    for name, source in files.items():
        if source.exists():
            shutil.copy2(source, outputs / name)
    storage.upload(outputs, output_uri)
    return outputs / "best.pt"


def _finish_from_checkpoint(checkpoint: Checkpoint, spec: TrainSpec, scratch: Path) -> Path:
    """The run had trained every epoch before it stopped: publish what its checkpoint holds."""
    from kfp_yolo.components.ultralytics_patches import finalize_weights

    final = scratch / "final"
    final.mkdir(parents=True, exist_ok=True)
    finalize_weights(checkpoint.last, checkpoint.best or checkpoint.last,
                     out_last=final / "last.pt", out_best=final / "best.pt")
    write_results_csv(checkpoint.results, final / "results.csv")
    return _publish({name: final / name for name in ("best.pt", "last.pt", "results.csv")},
                    spec.output_uri, scratch)


def run_worker(spec: TrainSpec, env: DistEnv, scratch: Path | None = None,
               procs_per_host: int | None = None, tracking: Tracking | None = None
               ) -> Path | None:
    """Trains per spec in this process; returns best.pt on rank 0 (None on other ranks).

    `procs_per_host`: training processes sharing this machine's CPUs and memory (default this
    node's, LOCAL_WORLD_SIZE). `tracking`: where rank 0 reports each epoch (default nowhere).

    Raises:
        UserError: the spec cannot work here (batch not divisible, no data.yaml, no CUDA).
        JobFailed: the process group did not form within spec.init_timeout_s, or the run's
            checkpoint cannot be read.
    """
    check_batch_shape(spec.batch, env.world_size)
    scratch = Path(scratch or tempfile.mkdtemp(prefix=f"kfp-yolo-{spec.run_id}-"))
    scratch.mkdir(parents=True, exist_ok=True)
    # One settings folder per node: nodes sharing a machine must not write one settings file.
    offline_environment(scratch / "ultralytics")
    device_type = device_type_of(spec)
    if device_type == "cuda":
        check_gpu(env)
    if env.world_size > 1:
        init_distributed(env, device_type, spec.init_timeout_s)
    try:
        # Importing ultralytics runs a barrier (its settings file is written under
        # torch_distributed_zero_first) once the group exists: every rank imports it here.
        import ultralytics  # noqa: F401

        data_yaml, pipeline = _fetch_dataset(spec, env, scratch,
                                             procs_per_host or env.local_world_size)
        if spec.model_sha256 or storage.is_remote(spec.model):  # the plan step's bytes
            spec = replace(spec, model=localise_base_model(
                spec.model, spec.model_sha256, scratch / "base_model",
                fetch=env.local_rank == 0))
            barrier()
        checkpoint = fetch_checkpoint(spec, env, scratch)
        if checkpoint is not None and checkpoint.epoch + 1 >= spec.epochs:
            log.info("run %s finished all %d epochs before it stopped; publishing its "
                     "checkpoint", spec.run_id, spec.epochs)
            return _finish_from_checkpoint(checkpoint, spec, scratch) if env.is_main else None
        if checkpoint is not None:
            log.info("run %s resumes after epoch %d of %d", spec.run_id, checkpoint.epoch + 1,
                     spec.epochs)
        trainer = make_trainer(spec, env, device_type, data_yaml, scratch, checkpoint, pipeline)
        progress = Progress(scratch / "progress" / f"rank{env.rank}.json", env, device_type,
                            pipeline)
        trainer.add_callback("on_train_epoch_start", progress.epoch_start)
        trainer.add_callback("on_train_batch_end", progress.batch_end)
        trainer.add_callback("on_train_epoch_end", progress.epoch_end)
        if env.is_main and checkpoint is None and spec.model.endswith(".pt"):
            trainer.add_callback("on_pretrain_routine_end",
                                 lambda t: _report_transfer(t, spec, progress.record))
        if env.is_main and spec.checkpoint_uri:
            trainer.add_callback("on_model_save", lambda t: upload_checkpoint(t, spec))
        reporter = EpochReporter(tracking or Tracking(), spec, progress.record)
        if env.is_main and spec.metric_lines:
            trainer.add_callback("on_fit_epoch_end", print_metric_line)
        if env.is_main:
            trainer.add_callback("on_train_start", reporter.train_start)
            trainer.add_callback("on_fit_epoch_end", reporter.fit_epoch_end)
            trainer.add_callback("on_train_end", reporter.train_end)
        try:
            trainer.train()
        finally:
            mlflow_run = reporter.close() if env.is_main else ""
        if not env.is_main:
            return None
        shape = scratch / "training.json"  # the shape and speed the run summary shows
        record = {**job_summary(progress.record, spec), "mlflow_run_id": mlflow_run}
        shape.write_text(json.dumps(record, indent=1))
        return _publish({"best.pt": trainer.best, "last.pt": trainer.last,
                         "results.csv": trainer.csv, "training.json": shape},
                        spec.output_uri, scratch)
    finally:
        destroy()


def print_metric_line(trainer: Any) -> None:
    """`val_loss=VALUE` then `map50_95=VALUE`, each on a line of its own: Katib's StdOut
    collector takes `name=value` pairs whose name it knows (`metrics/mAP50-95(B)` does not
    match its pattern), and the local search reads the same lines. val_loss is the epoch's
    validation loss (the sum of ultralytics' `val/*` losses): the search's tie-break
    (hpo/objective.py). It comes first, so the map50_95 line closes the epoch."""
    metrics = trainer.metrics or {}
    value = metrics.get("metrics/mAP50-95(B)")
    if value is None:
        return
    losses = [float(v) for k, v in metrics.items() if k.startswith("val/")]
    if losses:
        print(f"{LOSS_NAME}={sum(losses):.6f}", flush=True)
    print(f"{METRIC_NAME}={float(value):.6f}", flush=True)


def trial_spec(spec: TrainSpec, trial: str | None, hyp: list[str]) -> TrainSpec:
    """spec for one trial of a search: `--trial NAME` runs it as run NAME with its outputs in
    a folder of that name; `--hyp KEY=VALUE` sets a searched value (imgsz and lr0 are spec
    fields, the others ultralytics arguments). Katib writes both into a trial's arguments."""
    from kfp_yolo.components.hpo.space import parse_hyp_args

    values = parse_hyp_args(hyp)
    changes: dict[str, Any] = {k: values.pop(k) for k in ("imgsz", "lr0") if k in values}
    if values:
        changes["hyp"] = {**spec.hyp, **values}
    if trial:
        changes.update(run_id=trial, output_uri=_join(spec.output_uri, trial),
                       checkpoint_uri=_join(spec.checkpoint_uri, "trials")
                       if spec.checkpoint_uri else "")
    return replace(spec, **changes) if changes else spec


def _join(uri: str, name: str) -> str:
    return uri.rstrip("/") + "/" + name


def _report_transfer(trainer: object, spec: TrainSpec, record: dict) -> None:
    """Says (and records for the run summary) what ultralytics' transfer kept of the base
    checkpoint, once the model is built and before its first step."""
    names = trainer.data["names"]
    try:
        report = transfer_report(trainer.model, spec.model,
                                 [str(names[k]) for k in sorted(names)]
                                 if isinstance(names, dict) else [str(n) for n in names])
    except Exception as exc:  # noqa: BLE001 - a report, never the reason a training fails
        log.warning("fine-tune: the transfer was not counted (%s)", exc)
        return
    log.info("fine-tune: %s", report["sentence"])
    record["fine_tune"] = report


def main(argv: list[str] | None = None) -> int:
    """`python -m kfp_yolo.components.training.worker --spec JSON|@FILE [--scratch DIR]
    [--procs-per-host N]`."""
    parser = argparse.ArgumentParser(prog="python -m kfp_yolo.components.training.worker")
    parser.add_argument("--spec", required=True, help="TrainSpec as JSON, or @FILE")
    parser.add_argument("--scratch", default=None, help="node-local work folder")
    parser.add_argument("--procs-per-host", type=int, default=None,
                        help="training processes sharing this machine (default: this node's)")
    parser.add_argument("--trial", default=None, metavar="NAME",
                        help="run as trial NAME of a search (outputs under OUTPUT/NAME)")
    parser.add_argument("--hyp", action="append", default=[], metavar="KEY=VALUE",
                        help="a searched value (imgsz, lr0, momentum, ...); repeatable")
    args = parser.parse_args(argv)
    text = Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec
    spec = trial_spec(TrainSpec.from_json(text), args.trial, args.hyp)
    env = DistEnv.from_environ()
    tracking = Tracking.from_environ(os.environ)
    logging.basicConfig(level=logging.INFO, format=f"[rank{env.rank}] %(message)s")
    from kfp_yolo.components.redact import install_streams

    install_streams()  # a pod's log is read by everyone who can list its pods
    run_worker(spec, env, Path(args.scratch) if args.scratch else None, args.procs_per_host,
               tracking)
    return 0


def entry(argv: list[str] | None = None) -> int:
    """What torchrun runs: main() with torch's error file, and an exit code that says whether
    a restart could help (training/node.py turns it into the pod's): EXIT_BAD_INPUT for a
    UserError, EXIT_OUT_OF_MEMORY for a CUDA out-of-memory error, 1 for anything else."""
    import torch
    from torch.distributed.elastic.multiprocessing.errors import record

    die_with_parent()  # a torchrun killed outright takes its workers with it
    try:
        return record(main)(argv)
    except UserError:
        traceback.print_exc()
        return EXIT_BAD_INPUT
    except torch.OutOfMemoryError:
        traceback.print_exc()
        return EXIT_OUT_OF_MEMORY


if __name__ == "__main__":
    sys.exit(entry())
