"""The quality gate's else-branch step: a gate not met fails the run with the gate's sentence.

The compiled run end to end is in tests/integration/test_compiled_pipeline_run.py; here the
step itself, on the metadata the evaluate step writes on its report.
"""

from __future__ import annotations

import pytest
from kfp.dsl import Markdown

from kfp_yolo.components.boundary import failure_record
from kfp_yolo.components.errors import JobFailed
from kfp_yolo.components.steps import gate_not_met_component


@pytest.mark.parametrize(("verdict", "champion"), [
    ("mAP50-95 0.4123 < min_map50_95 0.5", "none published"),
    ("mAP50-95 0.6000 is worse than the published champion v3 (0.6500) on the same validation "
     "set", "v3 (mAP50-95 0.6500)"),
])
def test_the_step_fails_with_score_threshold_and_champion(tmp_path, verdict, champion):
    report = Markdown(uri=str(tmp_path / "report"))
    report.metadata.update(verdict=verdict, champion=champion)
    with pytest.raises(JobFailed) as err:
        gate_not_met_component(report)
    record = failure_record(err.value)  # what the pod's termination message and the UI show
    assert record["exit_code"] == 1
    assert record["message"] == (f"quality gate not met: {verdict} (champion: {champion}); "
                                 "nothing was exported or published; the evaluate step's report "
                                 "has the metrics.")
