"""A local dataset loads no S3 code: every torchrun rank of a local run imports the worker."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_worker_fetching_a_local_dataset_loads_no_s3_backend(tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    (source / "data.yaml").write_text("names: [a]\n")
    code = ("import json, sys\n"
            "import kfp_yolo.components.training.worker\n"
            "from kfp_yolo.components import storage\n"
            f"storage.download({str(source)!r}, {str(tmp_path / 'copy')!r})\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('minio', "
            "'kfp_yolo.components.storage.s3')))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert json.loads(out) == []
    assert (tmp_path / "copy" / "data.yaml").exists()
