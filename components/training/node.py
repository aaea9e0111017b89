"""A training pod's command: torchrun, ending with an exit code the job's failure policy reads.

    python -m kfp_yolo.components.training.node <torchrun's arguments>

torchrun itself exits 1 whatever failed, so the cluster could not tell a broken dataset from a
lost node. This runs torchrun in-process and exits with:

- EXIT_BAD_INPUT (2) when a worker refused its input (a UserError: a bad value, a broken
  dataset) and EXIT_OUT_OF_MEMORY (3) when a worker ran out of GPU memory: the same pod would
  fail the same way again, so the job fails now (PyTorchJob restartPolicy ExitCode treats
  1-127 as permanent; the TrainJob runtime's podFailurePolicy fails the Job on these codes);
- EXIT_RETRYABLE (138) for anything else (a peer that never joined, a storage fault, a crash):
  the job restarts the pod, which resumes from the last checkpoint. 138 (128 + SIGUSR1) is the
  Training Operator's code for "retryable, user-defined": its ExitCode policy retries 130, 137,
  138 and 143 and treats every other code as permanent;
- 128 + N when the pod is stopped by signal N (eviction, preemption): retryable too.

The first failed worker's sentence becomes the container's termination message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["EXIT_BAD_INPUT", "EXIT_OUT_OF_MEMORY", "EXIT_RETRYABLE", "PERMANENT_EXITS",
           "exit_code_for", "main"]

EXIT_BAD_INPUT = 2
"""A worker refused its input (UserError): permanent."""
EXIT_OUT_OF_MEMORY = 3
"""A worker ran out of GPU memory at this batch: permanent (plan a smaller batch or pool)."""
EXIT_RETRYABLE = 138
"""Any other failure: the pod is restarted and resumes from the checkpoint."""
PERMANENT_EXITS = (EXIT_BAD_INPUT, EXIT_OUT_OF_MEMORY)
TERMINATION_LOG = Path("/dev/termination-log")


def exit_code_for(worker_exit_codes: list[int]) -> int:
    """The pod's exit code for the exit codes of its failed workers."""
    for code in PERMANENT_EXITS:
        if code in worker_exit_codes:
            return code
    return EXIT_RETRYABLE


def _message(failure: Any) -> str:
    """The failed worker's sentence (the last line of its recorded error)."""
    text = str(getattr(failure, "message", "") or "")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {getattr(failure, 'exitcode', '?')}"


def _terminate_with(message: str) -> None:
    if TERMINATION_LOG.exists():
        try:
            TERMINATION_LOG.write_text(message[:4000])
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    """Runs torchrun with argv; the pod's exit code (see the module docstring)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except ChildFailedError as exc:
        failures = sorted(exc.failures.items())
        code = exit_code_for([failure.exitcode for _, failure in failures])
        first = next((f for _, f in failures if f.exitcode == code), failures[0][1])
        message = _message(first)
        kind = "permanent" if code in PERMANENT_EXITS else "retryable"
        print(f"kfp-yolo: training failed ({kind}, exit code {code}): {message}",
              file=sys.stderr, flush=True)
        _terminate_with(message)
        return code
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except Exception as exc:  # noqa: BLE001 - a rendezvous that failed, a lost store: retry
        message = f"{type(exc).__name__}: {exc}"
        print(f"kfp-yolo: training failed (retryable, exit code {EXIT_RETRYABLE}): {message}",
              file=sys.stderr, flush=True)
        _terminate_with(message)
        return EXIT_RETRYABLE
    return 0


if __name__ == "__main__":
    sys.exit(main())
