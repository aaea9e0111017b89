"""One verdict for any exception: the sentence a person reads and the exit code.

The CLI (pipelines/cli.py) prints it as its last line; a KFP step's boundary
(components/boundary.py) records it as the step's failure record, which `kfp-yolo run` shows:
the same failure reads and exits the same on both sides.
"""

from __future__ import annotations

import errno
import signal
from dataclasses import dataclass

from kfp_yolo.components.errors import Fault, JobFailed, Stopped, UserError
from kfp_yolo.components.redact import redact

__all__ = ["Verdict", "verdict"]

_FAULT_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
_MAX_LINE = 300


@dataclass(frozen=True)
class Verdict:
    """What a failure means to the person who started the work.

    Attributes:
        sentence: one line, without the `kfp-yolo: failed:` prefix.
        exit_code: 2 bad input, 1 a failure, 130 / 143 interrupted / stopped by SIGTERM.
        expected: False for an exception none of our modules turned into a sentence (a bug, or
            a library's error that escaped): the CLI then offers --debug.
    """

    sentence: str
    exit_code: int
    expected: bool = True

    @property
    def kind(self) -> str:
        """'error' for bad input (the user's to fix), 'interrupted', 'stopped', or 'failed'."""
        if self.exit_code == 2:
            return "error"
        if self.exit_code == 128 + signal.SIGINT:
            return "interrupted"
        return "stopped" if self.exit_code > 128 else "failed"


def _one_line(text: str) -> str:
    # a quoted value may carry a newline: the verdict stays one line whatever the message holds
    return " ".join(text.split())


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else ""
    return line[:_MAX_LINE] + ("..." if len(line) > _MAX_LINE else "")


def _os_error(exc: OSError) -> Verdict:
    """An OSError no module turned into a UserError itself: a fault of the machine (disk full,
    I/O error) is exit 1; a path that cannot be used is the user's to fix (exit 2)."""
    reason = exc.strerror or type(exc).__name__
    where = f"{exc.filename}: " if exc.filename is not None else ""
    if exc.errno in _FAULT_ERRNOS:
        return Verdict(f"{where}{reason}; free the resource (disk space, memory) and run again.",
                       1)
    if exc.filename is not None:
        return Verdict(f"{where}{reason}; check the path and its permissions.", 2)
    return Verdict(f"{reason} ({type(exc).__name__}); run again, and with --debug if it "
                   "persists.", 1)


def verdict(exc: BaseException) -> Verdict:
    """The sentence and exit code of exc: our exceptions carry theirs; anything else is named.

    The sentence is redacted (components/redact.py): a URI's password or a token inside an
    exception's text never reaches a terminal, a log or a failure record.
    """
    found = _verdict(exc)
    return Verdict(redact(found.sentence), found.exit_code, found.expected)


def _verdict(exc: BaseException) -> Verdict:
    if isinstance(exc, UserError | JobFailed | Fault):
        return Verdict(_one_line(str(exc)), int(exc.exit_code))
    if isinstance(exc, Stopped):
        return Verdict("interrupted" if exc.signum == signal.SIGINT else str(exc), exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return Verdict("interrupted", 128 + signal.SIGINT)
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, MemoryError):
        return Verdict("out of memory; use smaller inputs or a larger machine.", 1)
    text = _first_line(exc)
    name = type(exc).__name__
    return Verdict(f"{name}: {text}" if text else name, 1, expected=False)
