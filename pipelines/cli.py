"""The `kfp-yolo` command: parse, dispatch, turn errors into exit codes.

Exit codes: 0 ok, 1 the job failed, 2 bad input or usage.

Each subcommand's work lives in pipelines/cmd_<name>.py (`run(args) -> int`), imported only when
that subcommand runs, so `kfp-yolo --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from kfp_yolo.components.errors import JobFailed, UserError

__all__ = ["build_parser", "main"]


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config (keys = pipeline parameters)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key; repeatable")


def _pools_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pools", metavar="FILE", default=None,
                        help="node-pool catalog (default: k8s/node-pools.yaml)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kfp-yolo", description="Train YOLO detectors as a Kubeflow Pipelines DAG.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the whole DAG locally (kfp.local)")
    _config_args(run)
    run.add_argument("--workdir", default="runs/local", metavar="DIR",
                     help="where artifacts, logs and summary.json go (default: runs/local)")
    run.set_defaults(module="run")

    compile_ = sub.add_parser("compile", help="write the KFP pipeline YAML for the UI")
    _config_args(compile_)
    _pools_arg(compile_)
    compile_.add_argument("-o", "--output", default="pipeline.yaml", metavar="FILE")
    compile_.add_argument("--image", default=None, help="project image for every step")
    compile_.set_defaults(module="compile")

    submit = sub.add_parser("submit", help="submit a run to a KFP endpoint (idempotent per config)")
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
    submit.set_defaults(module="submit")

    plan = sub.add_parser("plan", help="predict peak GPU memory and choose a node pool")
    plan.add_argument("--model", default="yolov5l.yaml")
    plan.add_argument("--imgsz", type=int, default=640)
    plan.add_argument("--batch", type=int, default=16, help="batch per GPU; 0 = largest that fits")
    plan.add_argument("--precision", choices=["amp", "fp32", "bf16"], default="amp")
    plan.add_argument("--optimizer", choices=["SGD", "Adam", "AdamW", "auto"], default="SGD")
    plan.add_argument("--nc", type=int, default=80, help="number of classes")
    plan.add_argument("--gpus", type=int, default=1,
                      help="GPUs in the job (global batch = batch x gpus)")
    _pools_arg(plan)
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(module="plan")

    dataset = sub.add_parser("dataset", help="check or synthesize a YOLO dataset")
    dsub = dataset.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    check = dsub.add_parser("check", help="validate a dataset and print its statistics")
    check.add_argument("uri", metavar="PATH|URI")
    check.add_argument("--json", action="store_true")
    check.set_defaults(module="dataset")
    synth = dsub.add_parser("synth", help="write the deterministic synthetic shapes dataset")
    synth.add_argument("dir", metavar="DIR")
    synth.add_argument("--images", type=int, default=256)
    synth.add_argument("--imgsz", type=int, default=128)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(module="dataset")

    job = sub.add_parser("job", help="the TrainJob or PyTorchJob the launcher would create")
    jsub = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")
    render = jsub.add_parser("render", help="print the job manifest (kubectl-appliable)")
    _config_args(render)
    _pools_arg(render)
    render.add_argument("--launcher", choices=["trainjob", "pytorchjob"], default=None,
                        help="the kind to render (default: the config's launcher when it names "
                             "one, else trainjob)")
    render.set_defaults(module="job")

    quotas = sub.add_parser("quotas", help="Kueue objects for the node-pool catalog")
    _pools_arg(quotas)
    quotas.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="write one file per object kind here (default: print)")
    quotas.add_argument("--namespace", default="kubeflow-user",
                        help="team namespace of the LocalQueue")
    quotas.set_defaults(module="quotas")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors already
        return int(exc.code or 0)
    try:
        module = importlib.import_module(f"kfp_yolo.pipelines.cmd_{args.module}")
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"kfp-yolo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except JobFailed as exc:
        print(f"kfp-yolo: failed: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kfp-yolo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
