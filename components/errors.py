"""The small family of exceptions the CLI turns into exit codes (2 = bad input, 1 = job failed)."""

__all__ = ["UserError", "JobFailed"]


class UserError(Exception):
    """Bad input or usage: one sentence naming the file/line/value and the fix. Exit code 2."""

    exit_code = 2


class JobFailed(Exception):
    """The job ran and failed (training error, gate not met, parity too large). Exit code 1."""

    exit_code = 1
