"""Flags are never guessed and a secret never goes on the command line (issue #26)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from kfp_yolo.pipelines.cli import build_parser

KFP_YOLO = Path(sys.executable).parent / "kfp-yolo"
SECRET = "T0k3n-sup3r-s3cret-9d1"


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KFP_YOLO), *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [
    ["submit", "--token", SECRET],
    ["submit", f"--token={SECRET}"],
    ["submit", "--config", "x.yaml", "--password", SECRET],
    ["run", "--api-key", SECRET],
    ["submit", "--secret", SECRET, "--wait"],
])
def test_secret_flag_refused_without_echoing_its_value(argv):
    done = _cli(*argv)
    assert done.returncode == 2
    assert SECRET not in done.stdout + done.stderr
    assert "put it in a file: --token-file F" in done.stderr
    assert done.stderr.count("\n") == 1  # one sentence, no usage block, no traceback


def test_token_file_flag_still_works_and_is_not_mistaken_for_a_secret(tmp_path):
    done = _cli("submit", "--token-file", str(tmp_path / "missing"), "--host",
                "http://127.0.0.1:9", "--config", str(tmp_path / "none.yaml"))
    assert done.returncode == 2 and "--token-file" not in done.stderr.split(":")[2]


@pytest.mark.parametrize("argv", [
    ["run", "--work", "somewhere"],      # --workdir
    ["plan", "--mod", "yolov5n"],        # --model
    ["submit", "--tok", SECRET],          # --token-file: the guess that printed a token
    ["quotas", "--name", "team"],        # --namespace
])
def test_no_flag_abbreviation_is_accepted(argv):
    done = _cli(*argv)
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_parser_and_subparser_refuses_abbreviations():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 10
    assert [p.prog for p in parsers if p.allow_abbrev] == []
