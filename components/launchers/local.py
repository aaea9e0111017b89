"""The local launcher: torchrun on this machine, one torchrun per node on a loopback rendezvous.

What it runs, for nodes=2 and procs_per_node=2 (node 0; node 1 has --node-rank=1):
    python -m torch.distributed.run --nnodes=2 --node-rank=0 --master-addr=127.0.0.1 \
        --master-port=P --rdzv-conf=timeout=INIT_TIMEOUT_S --nproc-per-node=2 \
        --max-restarts=0 -m kfp_yolo.components.training.worker \
        --spec @SCRATCH/spec.json --scratch SCRATCH/node0 --procs-per-host=4

Every node runs on this machine, so the workers size their dataloaders (training/inputs.py) from
its CPUs and memory shared by all the processes started here (--procs-per-host).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kfp_yolo.components.errors import JobFailed, Stopped, UserError
from kfp_yolo.components.runtime import parent_death_hook, usable_cpus
from kfp_yolo.components.signals import stop_on_signals
from kfp_yolo.components.spec import TrainSpec, check_batch_shape

__all__ = ["JobStopped", "LocalLauncher"]

TERMINATE_GRACE_S = 15
"""Seconds torchrun gets to stop its workers after SIGTERM before everything is killed."""
_TAIL_LINES = 40
# Variables torchrun sets for its workers; inherited ones (a PyTorchJob pod has RANK and
# WORLD_SIZE) would only confuse it.
_TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                  "ROLE_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


class JobStopped(Exception):
    """The launcher's `stop_when` asked to stop the job (a search pruned its trial)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalLauncher:
    """Runs `spec.nodes` torchrun processes with `spec.procs_per_node` workers each.

    Args:
        scratch: folder for the nodes' work folders (SCRATCH/node<N>), the spec and torchrun's
            error files; None = a temporary folder, removed at the end.
        env: extra environment variables for the workers.
        node_ranks: the nodes to start here (default all); the others are expected to be
            started elsewhere with the same master port.
        master_port: the rendezvous port of a multi-node job (default a free one).
        on_line: called with every output line of node 0 (from its reader thread), e.g. to
            collect the `map50_95=` lines of a search's trial.
        stop_when: polled while the job runs (in the launching thread); when it returns True
            the job is stopped and `launch` raises JobStopped (a pruned trial).
    """

    kind = "local"
    """What ran the job (cluster launchers say PyTorchJob or TrainJob): for the run summary."""

    def __init__(self, *, scratch: str | Path | None = None, env: dict[str, str] | None = None,
                 node_ranks: Sequence[int] | None = None, master_port: int | None = None,
                 on_line: Callable[[str], None] | None = None,
                 stop_when: Callable[[], bool] | None = None):
        self.scratch = Path(scratch) if scratch else None
        self.on_line, self.stop_when = on_line, stop_when
        self.env = dict(env or {})
        self.node_ranks = list(node_ranks) if node_ranks is not None else None
        self.master_port = master_port

    def command(self, spec: TrainSpec, node_rank: int, port: int, scratch: Path,
                procs_per_host: int) -> list[str]:
        """The torchrun command line of one node; `procs_per_host`: processes started here."""
        rdzv = (["--standalone"] if spec.nodes == 1 else
                [f"--nnodes={spec.nodes}", f"--node-rank={node_rank}",
                 "--master-addr=127.0.0.1", f"--master-port={port}",
                 # Static rendezvous: a node waits this long for the others, then fails.
                 f"--rdzv-conf=timeout={spec.init_timeout_s}"])
        return [sys.executable, "-m", "torch.distributed.run", *rdzv,
                f"--nproc-per-node={spec.procs_per_node}", "--max-restarts=0",
                "-m", "kfp_yolo.components.training.worker", "--spec", f"@{scratch / 'spec.json'}",
                "--scratch", str(scratch / f"node{node_rank}"),
                f"--procs-per-host={procs_per_host}"]

    def launch(self, spec: TrainSpec) -> None:
        """Runs the job to its end, streaming logs; raises JobFailed with the worker's error.

        Raises:
            UserError: the spec cannot run (batch not divisible by the world size, a node rank
                out of range), or a worker refused its input.
            JobFailed: a worker or a rendezvous failed; the message is the worker's own error.
        """
        check_batch_shape(spec.batch, spec.world_size, shape=spec.shape)
        node_ranks = self.node_ranks if self.node_ranks is not None else list(range(spec.nodes))
        bad = [rank for rank in node_ranks if not 0 <= rank < spec.nodes]
        if bad:
            raise UserError(f"node rank {bad[0]} is out of range for nodes={spec.nodes}.")
        scratch = self.scratch or Path(tempfile.mkdtemp(prefix=f"kfp-yolo-{spec.run_id}-"))
        try:
            # A cancelled KFP task gets SIGTERM: _run stops torchrun and its workers with it.
            with stop_on_signals():
                self._run(spec, node_ranks, scratch)
        except Stopped as stopped:
            # the step ends with 143, without a traceback, as a terminated process does
            raise SystemExit(stopped.exit_code) from None
        finally:
            if self.scratch is None:
                shutil.rmtree(scratch, ignore_errors=True)

    def _run(self, spec: TrainSpec, node_ranks: list[int], scratch: Path) -> None:
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / "spec.json").write_text(spec.to_json())
        errors = scratch / "errors"
        shutil.rmtree(errors, ignore_errors=True)
        errors.mkdir()
        port = self.master_port or _free_port()
        base = {k: v for k, v in os.environ.items() if k not in _TORCHRUN_VARS}
        procs_here = len(node_ranks) * spec.procs_per_node
        # torchrun gives each process 1 thread when it starts several; share the cores instead.
        threads = max(1, usable_cpus() // procs_here)
        base.setdefault("OMP_NUM_THREADS", str(threads))
        nodes = []
        for node_rank in node_ranks:
            env = {**base, **self.env,
                   "TORCHELASTIC_ERROR_FILE": str(errors / f"node{node_rank}.json")}
            proc = subprocess.Popen(
                self.command(spec, node_rank, port, scratch, procs_here), env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                # torchrun (and through its own pdeathsig, each worker) dies with this process
                # even when it is SIGKILLed: no training outlives the step.
                start_new_session=True,
                preexec_fn=parent_death_hook())
            nodes.append(_Node(node_rank, proc, "" if spec.nodes == 1 else f"[node{node_rank}] ",
                               self.on_line if node_rank == 0 else None))
        failed: _Node | None = None
        try:
            while failed is None and any(node.proc.poll() is None for node in nodes):
                failed = next((n for n in nodes if n.proc.poll() not in (None, 0)), None)
                if failed is None and self.stop_when is not None and self.stop_when():
                    raise JobStopped(f"run {spec.run_id} was stopped before its end")
                time.sleep(0.2)
            failed = failed or next((n for n in nodes if n.proc.returncode), None)
        except BaseException:
            _terminate([node.proc for node in nodes])
            raise
        finally:
            if failed is not None:
                # One node failed: the others would wait for it until their timeouts.
                _terminate([node.proc for node in nodes])
            for node in nodes:
                node.thread.join(timeout=5)
        if failed is not None:
            raise _failure(spec, failed, errors, port)


class _Node:
    """One torchrun process and the thread that streams its output."""

    def __init__(self, rank: int, proc: subprocess.Popen, prefix: str,
                 on_line: Callable[[str], None] | None = None):
        self.rank, self.proc, self.on_line = rank, proc, on_line
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.thread = threading.Thread(target=self._stream, args=(prefix,), daemon=True)
        self.thread.start()

    def _stream(self, prefix: str) -> None:
        assert self.proc.stdout is not None
        echo = True
        for line in self.proc.stdout:
            self.tail.append(line.rstrip("\n"))
            if self.on_line is not None:
                self.on_line(line)
            if echo:
                try:
                    sys.stdout.write(prefix + line)
                except (OSError, ValueError):
                    # Whoever read our output is gone (a killed `kfp-yolo run`): keep draining
                    # torchrun's pipe, or it and its workers block on a full one.
                    echo = False
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()


def _terminate(procs: list[subprocess.Popen]) -> None:
    """SIGTERM to each torchrun (it stops its workers), then SIGKILL to whatever is left."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + TERMINATE_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            proc.wait()


def _kill_tree(pid: int) -> None:
    """SIGKILL a torchrun and its workers (they run in sessions of their own)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        processes = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def _failure(spec: TrainSpec, node: _Node, errors: Path, port: int) -> Exception:
    """The error to raise for a failed node: the worker's own message, in one sentence."""
    message = _recorded_error(errors / f"node{node.rank}.json") or next(
        (e for e in map(_recorded_error, sorted(errors.glob("*.json"))) if e), None)
    if message is None:
        lines = [line for line in node.tail if line.strip()]
        message = lines[-1] if lines else "no error was recorded; see the log above"
    where = f"node {node.rank}, exit code {node.proc.returncode}"
    kind, _, text = message.partition(": ")
    if kind.endswith("UserError"):
        return UserError(text)
    if kind.endswith(("DistStoreError", "DistNetworkError")):
        return JobFailed(f"the {spec.nodes} nodes did not meet at 127.0.0.1:{port} within "
                         f"init_timeout_s={spec.init_timeout_s} s ({where}: {text}); check that "
                         "every node was started and reaches the master.")
    return JobFailed(f"training failed ({where}): {message}")


def _recorded_error(path: Path) -> str | None:
    """The exception torchrun recorded in an error file, as 'Type: message' (last line)."""
    try:
        message = json.loads(path.read_text())["message"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if isinstance(message, dict):
        message = message.get("message", "")
    lines = [line for line in str(message).strip().splitlines() if line.strip()]
    return lines[-1] if lines else None
