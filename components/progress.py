"""A line on stderr every few seconds for long local work, so nothing long runs silent.

Used by the synthetic dataset, the dataset checks and (when no terminal watches) transfers.
Work that ends within EVERY_S prints nothing; longer work prints `what: done/total unit (p%),
R/s, about S s left` every EVERY_S and a last line when it ends. Lines, not a redrawn line:
they read the same in a terminal, a CI log and a pod's log.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

__all__ = ["EVERY_S", "Progress", "duration"]

EVERY_S = 5.0
"""Seconds between two progress lines."""


def duration(seconds: float) -> str:
    """'1h02m03s' or '2m03s': how a wait, an ETA or a wall time is said in logs and reports."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Counts work done and reports it on stderr every EVERY_S seconds (thread-safe)."""

    def __init__(self, what: str, total: int, unit: str, *, every_s: float | None = None,
                 stream: TextIO | None = None) -> None:
        self.what, self.total, self.unit = what, max(0, int(total)), unit
        self.every_s = EVERY_S if every_s is None else every_s
        self._stream = stream
        self.done = 0
        self.lines = 0
        self._started = self._last = time.monotonic()
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, cls: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if cls is None and self.lines:  # it talked: say that it finished
            took = time.monotonic() - self._started
            self._write(f"{self.what}: {self.done}/{self.total} {self.unit} (100%) in "
                        f"{took:.0f} s")

    def advance(self, count: int = 1) -> None:
        """count more units done; a line when one is due."""
        with self._lock:
            self.done += count
            now = time.monotonic()
            if now - self._last < self.every_s:
                return
            self._last = now
            line = self.line(now)
        self._write(line)

    def line(self, now: float | None = None) -> str:
        """The progress line as it reads now."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.what}: {self.done}/{self.total} {self.unit}"
        if self.total:
            text += f" ({100 * self.done // self.total}%)"
        text += f", {rate:.1f}/s" if rate < 10 else f", {rate:.0f}/s"
        if rate > 0 and self.total > self.done:
            text += f", about {(self.total - self.done) / rate:.0f} s left"
        return text

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stderr  # looked up late: tests and redirections swap it
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            return  # a closed or broken stderr must not fail the work
        self.lines += 1
