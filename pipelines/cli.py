"""The `kfp-yolo` command: parse, dispatch, and turn every failure into the exit-code contract.

Exit codes: 0 ok; 1 a fault outside the user's control (the job failed, a service kept failing,
an unexpected error); 2 bad input or usage; 130 interrupted; 143 stopped by SIGTERM. Every
failure ends in one sentence on stderr, and a traceback is printed only with --debug or
KFP_YOLO_DEBUG=1. `main` is the one place that decides this: commands raise UserError or
JobFailed and never print their own errors.

Each subcommand's work lives in pipelines/cmd_<name>.py (`run(args) -> int`), imported only when
that subcommand runs, so `kfp-yolo --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from kfp_yolo.components.errors import Stopped, UserError
from kfp_yolo.components.redact import install as install_redaction
from kfp_yolo.components.signals import stop_on_signals
from kfp_yolo.components.spec import OPTIMIZERS, PRECISIONS
from kfp_yolo.components.verdict import verdict

__all__ = ["DEBUG_ENV", "build_parser", "main", "refuse_secret_flags"]

DEBUG_ENV = "KFP_YOLO_DEBUG"
"""Set to 1 for a traceback after the one-sentence error, like --debug."""
_SECRET_FLAG = re.compile(r"^--?[\w-]*(token|password|passwd|secret|api-?key|access-?key|"
                          r"credential)[\w-]*$", re.IGNORECASE)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error raised as one sentence (exit 2) instead of the usage block,
    and no abbreviated flags: `--token T` must never become `--token-file T`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message}; see `{self.prog} --help`.")


def _common() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    # SUPPRESS: a subcommand's default must not overwrite a --debug given before it.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help=f"print the traceback of a failure (or set {DEBUG_ENV}=1)")
    return common


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config (keys = pipeline parameters)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key; repeatable")


def _pools_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pools", metavar="FILE", default=None,
                        help="node-pool catalog (default: k8s/node-pools.yaml)")


def _version_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", default=None,
                        help="published version to serve (default: the one `latest` names)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kfp-yolo",
                     description="Train YOLO detectors as a Kubeflow Pipelines DAG.")
    parser.add_argument("--debug", action="store_true",
                        help=f"print the traceback of a failure (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common()]

    run = sub.add_parser("run", parents=common, help="run the whole DAG locally (kfp.local)")
    _config_args(run)
    run.add_argument("--workdir", default="runs/local", metavar="DIR",
                     help="where artifacts, run.log and summary.json go (default: runs/local)")
    run.add_argument("--verbose", action="store_true",
                     help="also print the steps' logs here (they always go to DIR/run.log)")
    run.set_defaults(module="run")

    compile_ = sub.add_parser("compile", parents=common,
                              help="write the KFP pipeline YAML for the UI")
    _config_args(compile_)
    _pools_arg(compile_)
    compile_.add_argument("-o", "--output", default="pipeline.yaml", metavar="FILE",
                          help="where the YAML goes (default: pipeline.yaml; - = stdout)")
    compile_.add_argument("--image", default=None, help="project image for every step")
    compile_.set_defaults(module="compile")

    submit = sub.add_parser("submit", parents=common,
                            help="submit a run to a KFP endpoint (idempotent per config)")
    _config_args(submit)
    _pools_arg(submit)
    submit.add_argument("--host", default=None,
                        help="KFP API URL (default: $KF_PIPELINES_ENDPOINT)")
    submit.add_argument("--token-file", default=None, metavar="FILE",
                        help="file holding the API token (never pass a token on the command line)")
    submit.add_argument("--experiment", default="kfp-yolo")
    submit.add_argument("--wait", action="store_true", help="follow the run; exit 0/1 by its end")
    submit.add_argument("--timeout", type=int, default=86400, metavar="S",
                        help="seconds --wait follows the run")
    submit.add_argument("--api-timeout", type=float, default=None, metavar="S",
                        help="seconds all the API calls of the submit may take, retries "
                             "included (default 110; each answer may take up to 60 s)")
    submit.add_argument("--retry-failed", action="store_true",
                        help="when this config's last run ended FAILED or CANCELED, start a "
                             "new attempt (without it: exit 1 naming that run)")
    submit.set_defaults(module="submit")

    plan = sub.add_parser("plan", parents=common,
                          help="predict peak GPU memory, time and cost per node pool; choose one")
    _config_args(plan)
    # None = the config's value (RunConfig's defaults without --config)
    plan.add_argument("--model", default=None, help="config key model (a bare yolov5l works)")
    plan.add_argument("--imgsz", type=int, default=None)
    plan.add_argument("--batch", type=int, default=None,
                      help="global batch, as the config's; 0 = auto: the largest of "
                           "64/32/16/... in total that fits (ultralytics' nominal batch 64)")
    plan.add_argument("--precision", choices=list(PRECISIONS), default=None)
    plan.add_argument("--optimizer", choices=list(OPTIMIZERS), default=None)
    plan.add_argument("--objective", choices=["smallest", "cost", "time"], default=None,
                      help="how the pool is chosen (config key objective)")
    plan.add_argument("--epochs", type=int, default=None)
    plan.add_argument("--deadline-h", dest="deadline_h", type=float, default=None,
                      help="hours the run may take; 0 = no deadline")
    plan.add_argument("--train-images", dest="train_images", type=int, default=None,
                      metavar="N", help="images in the training split (epoch time and cost)")
    plan.add_argument("--history", default=None, metavar="URI",
                      help="throughput history to read (default: <registry_uri or "
                           "checkpoint_uri>/_throughput of the config)")
    plan.add_argument("--nc", type=int, default=80, help="number of classes")
    plan.add_argument("--gpus", type=int, default=None,
                      help="GPUs in the job, any shape (default: nodes x procs_per_node)")
    _pools_arg(plan)
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(module="plan")

    dataset = sub.add_parser("dataset", help="check, convert or synthesize a dataset")
    dsub = dataset.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    check = dsub.add_parser("check", parents=common,
                            help="validate a dataset and print its statistics")
    check.add_argument("uri", metavar="PATH|URI")
    check.add_argument("--json", action="store_true")
    check.set_defaults(module="dataset")
    convert = dsub.add_parser("convert", parents=common,
                              help="write a COCO JSON, NDJSON or Pascal VOC export as the YOLO "
                                   "layout (images linked, not copied)")
    convert.add_argument("src", metavar="SRC", help="the export: a folder, file://, s3://, minio://")
    convert.add_argument("dst", metavar="DST", help="a new (or empty) folder")
    convert.add_argument("--json", action="store_true")
    convert.set_defaults(module="dataset")
    synth = dsub.add_parser("synth", parents=common,
                            help="write the deterministic synthetic shapes dataset")
    synth.add_argument("dir", metavar="DIR")
    synth.add_argument("--images", type=int, default=256)
    synth.add_argument("--imgsz", type=int, default=128)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--replace", action="store_true",
                       help="replace what DIR holds (otherwise DIR must be empty or absent)")
    synth.set_defaults(module="dataset")

    tune = sub.add_parser("tune", parents=common,
                          help="run the hyperparameter search alone here; print the trials")
    _config_args(tune)
    _pools_arg(tune)
    tune.add_argument("--workdir", default="runs/tune", metavar="DIR",
                      help="where the dataset, the trials, search.json and the report go "
                           "(default: runs/tune)")
    tune.set_defaults(module="tune")

    job = sub.add_parser("job", help="the TrainJob or PyTorchJob the launcher would create")
    jsub = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")
    render = jsub.add_parser("render", parents=common,
                             help="print the job manifest (kubectl-appliable)")
    _config_args(render)
    _pools_arg(render)
    render.add_argument("--launcher", choices=["trainjob", "pytorchjob"], default=None,
                        help="the kind to render (default: the config's launcher when it names "
                             "one, else trainjob)")
    render.set_defaults(module="job")

    serve = sub.add_parser("serve", help="the KServe InferenceService of a published version")
    ssub = serve.add_subparsers(dest="serve_command", required=True, metavar="ACTION")
    srender = ssub.add_parser(
        "render", parents=common, help="print the InferenceService (kubectl-appliable)",
        description="Print the KServe InferenceService (Triton runtime, runtimeVersion = "
                    "serving_runtime_version) that serves a published version's triton/ "
                    "folder; pipe it to `kubectl apply -f -`.")
    _config_args(srender)
    _pools_arg(srender)
    _version_arg(srender)
    srender.set_defaults(module="serve")
    slocal = ssub.add_parser(
        "local", parents=common, help="serve a published version with a real Triton on loopback",
        description="Serve a published version's triton/ folder on this machine with the Triton "
                    "of the serve extra (nvidia-pytriton), loopback only, until SIGTERM or "
                    "Ctrl-C; prints the end-to-end model's HTTP and gRPC URLs on stdout.")
    _config_args(slocal)
    _version_arg(slocal)
    slocal.add_argument("--http-port", type=int, default=None, metavar="P",
                        help="HTTP port on 127.0.0.1 (default: a free one)")
    slocal.add_argument("--grpc-port", type=int, default=None, metavar="P",
                        help="gRPC port on 127.0.0.1 (default: a free one)")
    slocal.set_defaults(module="serve_local")

    predict = sub.add_parser(
        "predict", parents=common, help="boxes from a served model for image files",
        description="Send image files to a served end-to-end model (kfp-yolo serve local, or "
                    "KServe) and print the boxes in each image's pixels.")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG or PNG files")
    predict.add_argument("--url", required=True, metavar="URL",
                         help="the served model: http://HOST:PORT/MODEL")
    predict.add_argument("--conf", type=float, default=None,
                         help="minimum score (default: the model's, 0.25)")
    predict.add_argument("--iou", type=float, default=None,
                         help="NMS IoU threshold (default: the model's, 0.7)")
    predict.add_argument("--json", action="store_true", help="machine-readable output")
    predict.set_defaults(module="predict")

    promote = sub.add_parser(
        "promote", parents=common,
        help="point `latest` and the registries' champion at a version",
        description="Roll back (or forward): move the champion of MLflow (when "
                    "MLFLOW_TRACKING_URI is set) and of the Kubeflow Model Registry (when "
                    "model_registry_address is), then `latest` under registry_uri, to VERSION. "
                    "A registry that is down leaves `latest` where it was (exit 1).")
    _config_args(promote)
    promote.add_argument("version", metavar="VERSION", help="an earlier finished version")
    promote.set_defaults(module="promote")

    lineage = sub.add_parser(
        "lineage", parents=common,
        help="the chain of versions a published version was fine-tuned from",
        description="Print VERSION's lineage (dataset URI and content hash, parent checkpoint "
                    "and its sha256, config hash, kfp-yolo version, image) and its parent's, "
                    "back to the first version trained from scratch or from a file.")
    _config_args(lineage)
    lineage.add_argument("version", metavar="VERSION",
                         help="a finished version, or latest (the one `latest` names)")
    lineage.add_argument("--json", action="store_true",
                         help="print the chain as JSON (newest first) on stdout")
    lineage.set_defaults(module="lineage")

    quotas = sub.add_parser("quotas", parents=common,
                            help="Kueue objects for the node-pool catalog")
    _pools_arg(quotas)
    quotas.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="write one file per object kind here (default: print)")
    quotas.add_argument("--namespace", default="kubeflow-user",
                        help="team namespace of the LocalQueue")
    quotas.set_defaults(module="quotas")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    """Refuses values argparse cannot judge (paths of the wrong kind) before any work is done."""
    if args.module == "plan" and args.model is not None:
        from kfp_yolo.components.config.run_config import check_detection_model

        try:
            check_detection_model(args.model)
        except ValueError as exc:
            raise UserError(f"--model {exc}.") from None
        if "://" in args.model or args.model.startswith("registry:"):
            raise UserError(f"--model {args.model!r}: `kfp-yolo plan` reads a model YAML or a "
                            "local .pt (a run's plan step fetches a URI or registry version); "
                            "download the checkpoint and give its path.")
    if args.module == "compile" and Path(args.output).is_dir():
        raise UserError(f"-o {args.output}: is a folder; give a file name such as "
                        f"{Path(args.output) / 'pipeline.yaml'}.")


def refuse_secret_flags(argv: list[str]) -> None:
    """A secret-looking flag (--token, --password, --api-key ...) is refused before argparse
    sees argv, naming the flag only: its value would be in `ps` and the shell's history."""
    for arg in argv:
        if arg == "--":
            return
        flag = arg.split("=", 1)[0]
        if flag.startswith("-") and _SECRET_FLAG.match(flag) and not flag.endswith("-file"):
            raise UserError(f"{flag} is not an option: a secret on the command line is seen by "
                            "every user of this machine (ps, shell history); put it in a file: "
                            "--token-file F (kfp-yolo submit), or in the environment from a "
                            "Kubernetes Secret.")


def _report(exc: BaseException, debug: bool) -> int:
    """Prints the one-sentence verdict for exc (after its traceback with debug); the exit code."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    found = verdict(exc)  # its sentence is redacted there
    if found.expected:
        print(f"kfp-yolo: {found.kind}: {found.sentence}", file=sys.stderr)
    else:
        hint = "" if debug else f"; rerun with --debug (or {DEBUG_ENV}=1) for the traceback"
        print(f"kfp-yolo: failed: unexpected {found.sentence}{hint}.", file=sys.stderr)
    return found.exit_code


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code (0, 1, 2, 130 or 143) and never raises."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0") or "--debug" in argv
    # SIGTERM (a pod's, a CI runner's or Argo's hook stop) ends any command with exit 143 and a
    # last line, as Ctrl-C does with 130; `kfp-yolo run` stops its process tree first (its own
    # stop_on_signals inside this one)
    with stop_on_signals():
        return _run_command(argv, debug)


def _run_command(argv: list[str], debug: bool) -> int:
    try:
        install_redaction()
        refuse_secret_flags(argv)
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        _check_args(args)
        module = importlib.import_module(f"kfp_yolo.pipelines.cmd_{args.module}")
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("kfp-yolo: interrupted", file=sys.stderr)
        return 130
    except Stopped as exc:  # a command that owns processes stopped them first (cmd_run)
        if exc.signum == signal.SIGINT:
            print("kfp-yolo: interrupted", file=sys.stderr)
        elif exc.stopped_processes:
            print(f"kfp-yolo: {exc}; every process it started was stopped", file=sys.stderr)
        else:
            print(f"kfp-yolo: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader of our stdout went away (`| head`): nothing more to say to anyone.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:  # noqa: BLE001 - the one boundary that turns any failure into a sentence
        return _report(exc, debug)


if __name__ == "__main__":
    sys.exit(main())
