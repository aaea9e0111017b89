"""One reader of users' YAML (components/yaml_text.py): the config file, the node-pool catalog
and a dataset's data.yaml refuse a syntax error in the same one sentence, with the line."""

from __future__ import annotations

import pytest

from kfp_yolo.components.config.file import load_config
from kfp_yolo.components.data.layout import discover
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.k8s.pools import load_pools

BROKEN = "a: 1\nb: [unclosed\n"


def test_config_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(BROKEN)
    with pytest.raises(UserError, match=rf"^{path}: line \d+ is not valid YAML \(.+\); fix"):
        load_config(path)


def test_node_pool_catalog(tmp_path):
    path = tmp_path / "pools.yaml"
    path.write_text(BROKEN)
    with pytest.raises(UserError, match=rf"^{path}: line \d+ the node-pool catalog is not "
                                        r"valid YAML \(.+\); fix the syntax\.$"):
        load_pools(path)


def test_data_yaml(tmp_path):
    (tmp_path / "data.yaml").write_text(BROKEN)
    with pytest.raises(UserError, match=r"^data\.yaml: line \d+ is not valid YAML \(.+\); fix"):
        discover(tmp_path)
