"""The commands that read a registry share one sentence for a config without one, and one way
to name the version `latest` names (pipelines/published.py)."""

from __future__ import annotations

import pytest

from kfp_yolo.pipelines.cli import main


@pytest.mark.parametrize(("argv", "doing"), [
    (["promote", "v1"], "promote"), (["lineage", "latest"], "trace"),
    (["serve", "render"], "serve"), (["serve", "local"], "serve")])
def test_a_command_without_a_registry_says_so_in_one_sentence(argv, doing, capsys):
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(f"registry_uri is empty: nothing is published to {doing}; set "
                         "registry_uri in the config (the registry root publish writes to).")


@pytest.mark.parametrize("argv", [["lineage", "latest"], ["serve", "local"]])
def test_latest_of_an_empty_registry_is_named_with_what_to_do(argv, tmp_path, capsys):
    registry = tmp_path / "registry"
    assert main([*argv, "--set", f"registry_uri={registry}", "--set", "name=shapes"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"nothing is published under {registry}/shapes yet (it has no `latest`); run " \
           "`make demo`" in line
