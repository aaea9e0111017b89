"""The README's Commands table names every option each command takes (the table had lost
submit's --token-file, --experiment and --timeout, compile's --image, and others)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from kfp_yolo.pipelines.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"
_EVERYWHERE = {"-h", "--help", "--debug"}  # said once under the table


def _commands(parser: argparse.ArgumentParser, prefix: str = "kfp-yolo"):
    """(command words, its long options) of every leaf command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")
            return
    # each option's spellings (-o, --output): the row may use any one of them
    yield prefix, [tuple(a.option_strings) for a in parser._actions
                   if a.option_strings and not set(a.option_strings) & _EVERYWHERE]


def test_each_commands_row_names_all_its_options():
    table = README.read_text().split("\n## Commands\n", 1)[1].split("\n\n", 2)[0]
    for command, options in _commands(build_parser()):
        words = command.split(" ", 1)[1]
        # a row starts with `kfp-yolo <command> ...`; `dataset synth` shares dataset check's row
        rows = [line for line in table.splitlines()
                if re.search(rf"`(kfp-yolo )?{re.escape(words)}( |`)", line)]
        assert rows, f"README.md's Commands table has no row for {command!r}"
        missing = sorted(spellings[-1] for spellings in options
                         if not any(re.search(rf"{re.escape(o)}\b", row)
                                    for o in spellings for row in rows))
        assert not missing, f"README.md's row of {command!r} does not name {missing}"
