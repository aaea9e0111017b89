"""The CLI's promise: bad input -> one sentence and exit 2, a fault -> one sentence and exit 1,
never a traceback unless --debug (or KFP_YOLO_DEBUG=1) asks, Ctrl-C -> 130.

Each case of issue 13 that used to end in a traceback or be accepted has a row here; the
`kfp-yolo run` cases run the real DAG with kfp.local up to the step that refuses the input.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kfp_yolo.components.data.synth import SynthSpec, synthesize
from kfp_yolo.components.errors import Stopped
from kfp_yolo.pipelines import cmd_quotas
from kfp_yolo.pipelines.cli import main
from kfp_yolo.pipelines.summary import run_failure

POOL = {"name": "a", "gpu_product": "NVIDIA-L4", "gpu_memory_mib": 23034, "gpus_per_node": 4,
        "max_nodes": 2, "flavor": "gpu-24g"}


def _cli(capfd, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def _one_sentence(err: str) -> str:
    """The only line on stderr, which must not be part of a traceback."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------ the boundary


def _raise(exc: BaseException):
    def run(args):
        raise exc
    return run


def test_unexpected_error_is_one_sentence_exit_1_with_a_hint(capfd, monkeypatch):
    monkeypatch.delenv("KFP_YOLO_DEBUG", raising=False)
    monkeypatch.setattr(cmd_quotas, "run", _raise(RuntimeError("the frobnicator broke\nline 2")))
    code, _, err = _cli(capfd, "quotas")
    assert code == 1
    assert _one_sentence(err) == ("kfp-yolo: failed: unexpected RuntimeError: the frobnicator "
                                  "broke; rerun with --debug (or KFP_YOLO_DEBUG=1) for the "
                                  "traceback.")


@pytest.mark.parametrize("how", ["flag before", "flag after", "environment"])
def test_debug_adds_the_traceback_before_the_sentence(capfd, monkeypatch, how):
    monkeypatch.setattr(cmd_quotas, "run", _raise(RuntimeError("the frobnicator broke")))
    argv = {"flag before": ["--debug", "quotas"], "flag after": ["quotas", "--debug"],
            "environment": ["quotas"]}[how]
    if how == "environment":
        monkeypatch.setenv("KFP_YOLO_DEBUG", "1")
    code, _, err = _cli(capfd, *argv)
    assert code == 1
    assert err.startswith("Traceback (most recent call last):")
    assert "RuntimeError: the frobnicator broke" in err
    assert err.strip().splitlines()[-1] == ("kfp-yolo: failed: unexpected RuntimeError: the "
                                            "frobnicator broke.")


def test_interrupt_is_130(capfd, monkeypatch):
    monkeypatch.setattr(cmd_quotas, "run", _raise(KeyboardInterrupt()))
    code, _, err = _cli(capfd, "quotas")
    assert code == 130 and _one_sentence(err) == "kfp-yolo: interrupted"


@pytest.mark.parametrize("exc, code, sentence", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/out"), 1,
     "kfp-yolo: failed: /data/out: No space left on device; free the resource (disk space, "
     "memory) and run again."),
    (PermissionError(errno.EACCES, "Permission denied", "/data/out"), 2,
     "kfp-yolo: error: /data/out: Permission denied; check the path and its permissions."),
    (MemoryError(), 1, "kfp-yolo: failed: out of memory; use smaller inputs or a larger machine."),
])
def test_system_errors_are_sorted_into_fault_or_input(capfd, monkeypatch, exc, code, sentence):
    monkeypatch.setattr(cmd_quotas, "run", _raise(exc))
    got, _, err = _cli(capfd, "quotas")
    assert got == code and _one_sentence(err) == sentence


def test_secrets_in_an_unexpected_message_are_redacted(capfd, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-42")
    monkeypatch.setattr(cmd_quotas, "run", _raise(ValueError(
        "GET http://h/b/k?X-Amz-Signature=abcdef0123&x=1 with s3cr3t-value-42 failed")))
    _, _, err = _cli(capfd, "quotas")
    assert "s3cr3t-value-42" not in err and "abcdef0123" not in err
    assert "X-Amz-Signature=***" in err


def test_usage_errors_are_one_sentence(capfd):
    code, _, err = _cli(capfd, "plan", "--imgsz", "big")
    assert code == 2
    assert _one_sentence(err) == ("kfp-yolo: error: argument --imgsz: invalid int value: 'big'; "
                                  "see `kfp-yolo plan --help`.")
    assert _cli(capfd, "--help")[0] == 0


# ------------------------------------------------------------- paths that ended in a traceback


def _dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    synthesize(root, SynthSpec(images=6, imgsz=48, seed=1))
    return root


def _write(path: Path, data: str | bytes) -> str:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def _catalog(tmp_path: Path, *pools: object) -> str:
    return _write(tmp_path / "pools.yaml", yaml.safe_dump({"pools": list(pools)}))


def _loop(tmp_path: Path) -> list[str]:
    root = _dataset(tmp_path)
    (root / "images" / "train" / "loop").symlink_to("..")
    return ["dataset", "check", str(root)]


def _workdir_in_dataset(tmp_path: Path) -> list[str]:
    root = _dataset(tmp_path)
    return ["run", "--workdir", str(root / "runs"), "--set", f"dataset_uri={root}"]


def _existing_file(tmp_path: Path) -> list[str]:
    return ["quotas", "-o", _write(tmp_path / "quotas.yaml", "mine")]


def _existing_dir(tmp_path: Path) -> list[str]:
    (tmp_path / "out").mkdir()
    return ["compile", "-o", str(tmp_path / "out")]


TRACEBACK_CASES = {
    "directory symlink loop in a dataset": (_loop, "images/train/loop: symbolic link loop"),
    "config key not a string": (
        lambda t: ["compile", "--config", _write(t / "c.yaml", "epochs: 3\n7: 1\n")],
        "c.yaml: key 7 is not a name"),
    "config not UTF-8": (
        lambda t: ["job", "render", "--config", _write(t / "c.yaml", b"name: \xff\xfe\n")],
        "c.yaml: line 1 is not UTF-8 text; save the config file as UTF-8."),
    "catalog not UTF-8": (
        lambda t: ["quotas", "--pools", _write(t / "p.yaml", b"pools:\n- name: \xe9\n")],
        "p.yaml: the node-pool catalog is not UTF-8 text"),
    "catalog entry an integer": (
        lambda t: ["quotas", "--pools", _catalog(t, 3)], "pools.yaml:2: pool #1 is 3, not a "
                                                         "mapping"),
    "gpus_per_node: abc": (
        lambda t: ["quotas", "--pools", _catalog(t, {**POOL, "gpus_per_node": "abc"})],
        "pools.yaml:2: pool #1 (a): gpus_per_node must be a positive integer, got 'abc'."),
    "gpu_memory_mib: true": (
        lambda t: ["plan", "--pools", _catalog(t, {**POOL, "gpu_memory_mib": True})],
        "gpu_memory_mib must be a positive integer in MiB, got True."),
    "tolerations not a list": (
        lambda t: ["quotas", "--pools", _catalog(t, {**POOL, "tolerations": "gpu"})],
        "tolerations must be a list of Kubernetes tolerations, got 'gpu'."),
    "pools a mapping": (
        lambda t: ["quotas", "--pools", _write(t / "p.yaml", "pools: {a: 1}\n")],
        "'pools:' must be a list of pools"),
    "synth --images 0": (lambda t: ["dataset", "synth", str(t / "d"), "--images", "0"],
                         "images=0 is out of range"),
    "synth into /proc": (lambda t: ["dataset", "synth", "/proc/kfp-yolo-x", "--images", "2"],
                         "/proc/kfp-yolo-x: cannot write there"),
    "check synthetic://shapes?images=0": (
        lambda t: ["dataset", "check", "synthetic://shapes?images=0"], "images=0 is out of range"),
    "plan a classification model": (
        lambda t: ["plan", "--model", "yolov8n-cls.yaml"],
        "--model 'yolov8n-cls.yaml' is a classification model"),
    "quotas -o an existing file": (_existing_file, "quotas.yaml is a file where a folder goes"),
    "compile -o an existing folder": (_existing_dir, "is a folder; give a file name such as"),
    "work folder inside the dataset": (_workdir_in_dataset,
                                       "is inside the dataset folder"),
    # found by trying
    "token file that is not text": (
        lambda t: ["submit", "--host", "http://127.0.0.1:9", "--token-file",
                   _write(t / "token", b"\xff\xfe")],
        "the API token from --token-file"),
    "check an empty path": (lambda t: ["dataset", "check", ""], "no dataset given"),
    "check data.yaml instead of its folder": (
        lambda t: ["dataset", "check", str(_dataset(t) / "data.yaml")], "is a file; give the "
                                                                         "dataset's folder"),
    "synth into an empty path": (lambda t: ["dataset", "synth", ""], "no folder given"),
    "empty --config": (lambda t: ["compile", "--config", ""], "--config is empty"),
    "seed numpy cannot take": (lambda t: ["compile", "--set", f"seed={2**40}"],
                               "Input should be less than or equal to 4294967295"),
    "run --workdir a file": (
        lambda t: ["run", "--workdir", _write(t / "f", "x"), "--set", f"dataset_uri={t}/none"],
        "is a file, not a directory; give a folder"),
}


@pytest.mark.parametrize("case", list(TRACEBACK_CASES))
def test_paths_that_ended_in_a_traceback_are_one_sentence(tmp_path, capfd, case):
    make, fragment = TRACEBACK_CASES[case]
    code, _, err = _cli(capfd, *make(tmp_path))
    assert code == 2
    line = _one_sentence(err)
    assert line.startswith("kfp-yolo: error: ") and fragment in line


# --------------------------------------------------------------- accepted when it should not be


ACCEPTED_CASES = {
    "--set epochs=true": (["compile", "--set", "epochs=true"], "epochs=True is invalid: True is "
                                                               "a boolean; give a number."),
    "--set onnx_tolerance=.inf": (["compile", "--set", "onnx_tolerance=.inf"],
                                  "onnx_tolerance=inf is invalid: give a finite number."),
    "registry_uri with an unsupported scheme": (
        ["compile", "--set", "registry_uri=https://models.example.com"],
        "registry_uri='https://models.example.com' is invalid: unsupported scheme 'https'"),
    "quotas --namespace Bad_NS!": (["quotas", "--namespace", "Bad_NS!"],
                                   "namespace 'Bad_NS!' is invalid: a Kubernetes name is 1-63 "
                                   "lower-case letters"),
    "synth --imgsz 5": (["dataset", "synth", "{tmp}/d", "--imgsz", "5"],
                        "imgsz=5 is out of range"),
}


@pytest.mark.parametrize("case", list(ACCEPTED_CASES))
def test_values_once_accepted_are_refused(tmp_path, capfd, case):
    argv, fragment = ACCEPTED_CASES[case]
    code, out, err = _cli(capfd, *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert code == 2 and out == ""
    assert fragment in _one_sentence(err)


# ---------------------------------------------------------------------------- kfp-yolo run


def _run(workdir: Path, *overrides: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "kfp_yolo.pipelines.cli", "run", "--workdir", str(workdir)]
    for item in overrides:
        argv += ["--set", item]
    env = {k: v for k, v in os.environ.items() if k != "KFP_YOLO_DEBUG"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)


def _assert_refused(result: subprocess.CompletedProcess, workdir: Path, sentence: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"kfp-yolo: error: {sentence}"
    log = (workdir / "run.log").read_text()
    assert "Traceback" in log and sentence in log  # the details are in the log
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["steps"]["prepare"] == "failed" and summary["steps"]["train"] == "not run"
    assert summary["failure"] == {"step": "prepare-dataset-component", "message": sentence,
                                  "exit_code": 2,
                                  "type": "kfp_yolo.components.errors.UserError"}
    # the step's own record, beside its executor output in this run's folder
    record = Path(summary["run_dir"]) / "prepare-dataset-component" / "failure.json"
    assert json.loads(record.read_text())["message"] == sentence


def test_run_with_a_bad_dataset_path_ends_with_its_sentence(tmp_path):
    missing = tmp_path / "no-such-dataset"
    result = _run(tmp_path / "work", f"dataset_uri={missing}")
    _assert_refused(result, tmp_path / "work", f"{str(missing)!r}: dataset folder does not "
                    "exist; give a folder with images/ and labels/.")
    assert "kfp-yolo: prepare-dataset failed" in result.stderr  # one line per step, UI's name
    assert len(result.stderr.splitlines()) < 30  # not the executor's 150 lines


def test_run_with_wrong_s3_credentials_ends_with_their_sentence(tmp_path, s3_env, s3_bucket,
                                                                monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-0451")
    result = _run(tmp_path / "work", f"dataset_uri=s3://{s3_bucket}/shapes")
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert last.startswith(f"kfp-yolo: error: s3://{s3_bucket}/shapes")
    assert "refused the credentials" in last
    assert "not-the-secret-0451" not in result.stderr


def test_a_step_that_fails_on_a_fault_is_exit_1(tmp_path):
    """A step's record decides: a non-input error is exit 1 with the CLI's sentence; a step that
    left no record (killed) is reported as such."""
    run_dir = tmp_path / "kfp-yolo-training-1"
    (run_dir / "prepare-dataset-component").mkdir(parents=True)
    assert run_failure(run_dir) is None
    assert run_failure(run_dir, "train-component") == {
        "step": "train-component", "type": "", "exit_code": 1,
        "message": "it ended without a failure record (killed, or out of memory?)"}
    from kfp_yolo.components.boundary import write_failure

    write_failure(OSError(5, "Input/output error"), run_dir / "prepare-dataset-component")
    failure = run_failure(run_dir, "prepare-dataset-component")
    assert failure["step"] == "prepare-dataset-component" and failure["exit_code"] == 1
    # the CLI's verdict (components/verdict.py): the same sentence a command would print
    assert failure["message"] == ("Input/output error; free the resource (disk space, memory) "
                                  "and run again.")
    assert failure["type"] == "builtins.OSError"


def test_the_readme_exit_code_table_is_true(tmp_path, capfd, monkeypatch):
    """Each row of README.md's table, produced by a real case, with its last line's prefix."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {}
    for line in readme.split("Exit codes:", 1)[1].split("\n\n", 2)[1].splitlines()[2:]:
        code, _, last = (cell.strip() for cell in line.strip("|").split("|"))
        rows[int(code)] = last.strip("`").split("<", 1)[0]
    assert set(rows) == {0, 1, 2, 130, 143}
    cases = {
        0: (None, ["quotas"]),
        1: (RuntimeError("boom"), ["quotas"]),
        2: (None, ["quotas", "--namespace", "Bad_NS!"]),
        130: (KeyboardInterrupt(), ["quotas"]),
        143: (Stopped(signal.SIGTERM), ["quotas"]),
    }
    real_run = cmd_quotas.run
    for code, (exc, argv) in cases.items():
        monkeypatch.setattr(cmd_quotas, "run", _raise(exc) if exc else real_run)
        got, _, err = _cli(capfd, *argv)
        assert got == code
        assert (err.strip().splitlines() or [""])[-1].startswith(rows[code]), (code, err)
