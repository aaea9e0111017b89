"""What `kfp-yolo run` holds (pipelines/run_control.py): the work folder's lock, and its process
tree, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from kfp_yolo.components.boundary import OWNER_ENV, owner_alive
from kfp_yolo.components.errors import Stopped, UserError
from kfp_yolo.pipelines.run_control import (
    LOCK_NAME,
    hold_workdir,
    own_process_tree,
    stop_descendants,
)

HOLD = """
import sys, time
from pathlib import Path
from kfp_yolo.pipelines.run_control import hold_workdir
with hold_workdir(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_held_workdir_is_refused_naming_its_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError) as err:
            with hold_workdir(tmp_path):
                pass
        message = str(err.value)
        assert message.startswith(f"{tmp_path} is in use by another kfp-yolo run "
                                  f"(pid {holder.pid}, started ")
        assert message.endswith("wait for it to end, stop it, or pass another --workdir.")
    finally:
        holder.kill()
        holder.wait()
    # the holder died without a word: its lock is taken over, and released at the end
    with hold_workdir(tmp_path):
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid()
    assert (tmp_path / LOCK_NAME).read_text() == ""


def test_a_stale_lock_file_is_taken_over_with_a_word(tmp_path, capsys):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 999999, "started": "yesterday"}))
    with hold_workdir(tmp_path):
        pass
    err = capsys.readouterr().err
    assert "taking over" in err and "a run that is gone (pid 999999, started yesterday)" in err


def test_stop_descendants_stops_every_layer():
    tree = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300 & wait"])
    time.sleep(0.5)
    below = psutil.Process(tree.pid).children(recursive=True)
    assert len(below) == 2
    started = time.monotonic()
    assert stop_descendants(grace_s=5) == 3
    assert time.monotonic() - started < 5
    assert not [p for p in below if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert tree.wait(timeout=5) is not None


def test_sigterm_stops_the_tree_and_raises_stopped():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    with pytest.raises(Stopped) as stop:
        with own_process_tree(grace_s=5):
            assert owner_alive(os.environ[OWNER_ENV])
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
    assert stop.value.exit_code == 143
    child.wait(timeout=5)  # already stopped (and reaped by the stop)
    assert not psutil.pid_exists(child.pid) or \
        psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
    assert OWNER_ENV not in os.environ
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


PARENT = """
import subprocess, sys, time
from kfp_yolo.components.runtime import parent_death_hook
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                         preexec_fn=parent_death_hook())
print(child.pid, flush=True)
time.sleep(300)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_dies_with_its_parent_even_when_the_parent_is_sigkilled():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not child.is_running() or child.status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    else:
        child.kill()
        pytest.fail("the child outlived its SIGKILLed parent")
