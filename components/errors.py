"""The small family of exceptions the CLI turns into exit codes (2 = bad input, 1 = a failure).

Every message is one sentence: what, where, and what to do. kfp_yolo.pipelines.cli.main is the
one place that prints them.
"""

import signal

__all__ = ["Fault", "JobFailed", "Stopped", "UserError"]


class UserError(Exception):
    """Bad input or usage: one sentence naming the file/line/value and the fix. Exit code 2."""

    exit_code = 2


class JobFailed(Exception):
    """The job ran and failed (training error, gate not met, parity too large). Exit code 1."""

    exit_code = 1


class Fault(Exception):
    """A fault outside the user's control (a service that answers 5xx, a full disk), worth
    trying again later. Exit code 1."""

    exit_code = 1


class Stopped(BaseException):
    """The run was stopped by a signal (SIGTERM from a pod or CI runner, SIGINT from Ctrl-C)
    after its processes were stopped. Exit code 128 + the signal's number (143, 130).

    A BaseException, like KeyboardInterrupt: no `except Exception` on the way up may swallow it.
    Raised by components/signals.py, the one SIGTERM policy.
    """

    def __init__(self, signum: int, *, stopped_processes: bool = False) -> None:
        self.signum = int(signum)
        self.stopped_processes = stopped_processes  # the stopped command stopped what it started
        self.exit_code = 128 + self.signum
        super().__init__(f"stopped by {signal.Signals(self.signum).name}")
