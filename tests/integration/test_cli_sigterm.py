"""SIGTERM ends any command with exit 143 and a last line, not only `kfp-yolo run`.

`kfp-yolo submit --wait` runs in Argo CD's PostSync hook pod and in CI jobs, which stop it with
SIGTERM; before, it died with no last line (the shell's 143, nothing said).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


def test_sigterm_during_submit_is_exit_143_with_one_last_line(tmp_path):
    with socket.socket() as stalled:  # accepts connections (the backlog), never answers
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(8)
        host = f"http://127.0.0.1:{stalled.getsockname()[1]}"
        env = {**os.environ, "HOME": str(tmp_path), "KF_PIPELINES_TOKEN": ""}
        env.pop("KF_PIPELINES_SA_TOKEN_PATH", None)
        proc = subprocess.Popen([sys.executable, "-m", "kfp_yolo.pipelines.cli", "submit",
                                 "--host", host, "--api-timeout", "120"],
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until it waits on the API (compiled first)
                try:
                    conn, _ = stalled.accept() if _ready(stalled) else (None, None)
                except OSError:
                    conn = None
                if conn is not None:
                    break
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "kfp-yolo: stopped by SIGTERM", err[-2000:]
    assert "Traceback" not in err


def _ready(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])
