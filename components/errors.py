"""The small family of exceptions the CLI turns into exit codes (2 = bad input, 1 = a failure).

Every message is one sentence: what, where, and what to do. kfp_yolo.pipelines.cli.main is the
one place that prints them.
"""

__all__ = ["Fault", "JobFailed", "UserError"]


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
