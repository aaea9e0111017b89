"""`kfp-yolo submit` against a KFP API that answers every call in 20 s, in real time, with the
real defaults (issue 18): it submits. test_submit.py checks the same at a tenth of the time."""

from __future__ import annotations

import time

import pytest
from kfp_fake import NEW_TOKEN

from kfp_yolo.pipelines import kfp_api
from kfp_yolo.pipelines.cli import main

pytestmark = pytest.mark.timeout(300)


def test_an_api_answering_each_call_in_20_s_still_submits(kfp_server, config_file,
                                                          monkeypatch, capsys):
    state, host = kfp_server
    monkeypatch.setenv("KF_PIPELINES_TOKEN", NEW_TOKEN)
    state.delay_s = 20.0
    started = time.monotonic()

    code = main(["submit", "--config", str(config_file), "--host", host])

    took = time.monotonic() - started
    assert code == 0, capsys.readouterr().err
    assert len(state.created_runs()) == 1 and "submitted run" in capsys.readouterr().out
    assert len(state.requests) * 20 <= took < kfp_api.API_TIMEOUT_S
