"""The one process boundary: one SIGTERM policy (components/signals.py) and one verdict
(components/verdict.py) that the CLI and a step's failure record share."""

from __future__ import annotations

import os
import signal

import pytest

from kfp_yolo.components.boundary import failure_record
from kfp_yolo.components.errors import Fault, Stopped, UserError
from kfp_yolo.components.signals import stop_on_signals
from kfp_yolo.pipelines.cli import _report


def test_the_first_sigterm_stops_and_a_second_one_during_cleanup_is_ignored():
    before = signal.getsignal(signal.SIGTERM)
    stops, cleaned = [], []
    with pytest.raises(Stopped) as raised, stop_on_signals(on_stop=stops.append):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("SIGTERM did not stop the work")
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the cleanup goes on
            cleaned.append(True)
    assert stops == [signal.SIGTERM] and cleaned == [True]
    assert raised.value.exit_code == 143 and raised.value.stopped_processes
    assert signal.getsignal(signal.SIGTERM) is before


def test_without_on_stop_the_stop_says_it_stopped_nothing():
    with pytest.raises(Stopped) as raised, stop_on_signals((signal.SIGINT,)):
        os.kill(os.getpid(), signal.SIGINT)
    assert raised.value.exit_code == 130 and not raised.value.stopped_processes


@pytest.mark.parametrize("exc", [
    UserError("epochs=-1 must be >= 1; set\nepochs to 1 or more."),
    Fault("the store answered 503."),
    OSError(28, "No space left on device", "/data/x"),
    FileNotFoundError(2, "No such file or directory", "/data/missing.yaml"),
    MemoryError(),
    Stopped(signal.SIGTERM),
    KeyError("names"),
])
def test_a_step_records_the_sentence_and_code_the_cli_prints(exc, capsys):
    code = _report(exc, debug=False)
    line = capsys.readouterr().err.strip()
    record = failure_record(exc)
    assert record["exit_code"] == code
    assert record["message"] in line and "\n" not in line
