"""One transfer's progress line and its parallel jobs.

When a person watches (stderr is a terminal), a download or upload shows one progress line:
files and bytes as they move, redrawn every PROGRESS_EVERY_S by a ticker thread, with a growing
"no data from ENDPOINT for N s" once nothing has moved for WAITING_AFTER_S, so a slow or frozen
endpoint never looks like silence. `run` executes the transfer's jobs on a thread pool; the first
failure halts the transfer: `stop` is set, which ends the other jobs' streams and retries, and
the callbacks given to `on_halt` run (closing connections that other jobs are blocked on).
When no terminal watches (a CI log, a pod's log) and nobody asked for silence, the same line is
written as a plain line every progress.EVERY_S instead, once the files are listed and the
transfer outlasts that.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

__all__ = ["PROGRESS_EVERY_S", "WAITING_AFTER_S", "Stopped", "Transfer", "run_parallel"]

PROGRESS_EVERY_S = 0.5
WAITING_AFTER_S = 2.0


class Stopped(Exception):
    """Another job of the same transfer failed; this one gave up without an error of its own."""


def run_parallel(jobs: list[Callable[[], object]], workers: int, halt: Callable[[], None],
                 on_done: Callable[[], None] | None = None) -> None:
    """Runs jobs on a thread pool, on_done after each; the first failure calls halt, cancels the
    jobs not started yet and is raised once the running ones have noticed."""
    if not jobs:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        futures = [pool.submit(job) for job in jobs]
        try:
            for future in as_completed(futures):
                future.result()
                if on_done is not None:
                    on_done()
        except BaseException:
            halt()
            for future in futures:
                future.cancel()
            raise


class Transfer:
    """Bytes and files moved by one download or upload, shown on stderr when enabled.

    Use as a context manager: the ticker runs inside the block and the last line ends with a
    newline, so whatever is printed next (an error sentence) starts on a line of its own.
    """

    def __init__(self, label: str, *, enabled: bool | None, endpoint: str = "") -> None:
        """enabled: None = when stderr is a terminal."""
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.plain = enabled is None and not self.enabled  # lines into a log, every EVERY_S
        self._plain_lines = 0
        self.label, self.endpoint = label, endpoint
        self.files = self.total_bytes = self.done_files = self.done_bytes = 0
        self.planned = False
        self.stop = threading.Event()
        self._on_halt: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._last_data = time.monotonic()
        self._closed = threading.Event()
        self._ticker: threading.Thread | None = None
        self._width = 0

    def __enter__(self) -> Transfer:
        if self.enabled or self.plain:
            self._ticker = threading.Thread(target=self._tick if self.enabled else self._lines,
                                            name="storage-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.enabled:
            self._draw(end="\n")
        elif self._plain_lines:
            self._write_line()

    def plan(self, files: int, total_bytes: int) -> None:
        """What the transfer will move, once listed."""
        with self._lock:
            self.files, self.total_bytes, self.planned = files, total_bytes, True
            self._last_data = time.monotonic()

    def moved(self, nbytes: int) -> None:
        """Counts nbytes more (thread-safe); a negative count undoes a failed try's bytes."""
        with self._lock:
            self.done_bytes += nbytes
            if nbytes > 0:
                self._last_data = time.monotonic()

    def file_done(self) -> None:
        with self._lock:
            self.done_files += 1
            self._last_data = time.monotonic()

    def on_halt(self, callback: Callable[[], None]) -> None:
        """Calls callback when the transfer halts (after stop is set)."""
        self._on_halt.append(callback)

    def halt(self) -> None:
        """Stops every job of the transfer: one failed, the others need not finish."""
        self.stop.set()
        for callback in self._on_halt:
            callback()

    def run(self, jobs: list[Callable[[], object]], workers: int) -> None:
        """Runs one job per file in parallel (see `run_parallel`)."""
        run_parallel(jobs, workers, self.halt, self.file_done)

    def line(self, now: float | None = None) -> str:
        """The progress line as it reads now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            quiet = now - self._last_data
            if not self.planned:
                text = f"{self.label}: listing"
            else:
                text = (f"{self.label}: {self.done_files}/{self.files} files, "
                        f"{self.done_bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB")
        if quiet >= WAITING_AFTER_S and not self._closed.is_set():
            text += f", no data from {self.endpoint or 'the server'} for {quiet:.0f} s"
        return text

    def _lines(self) -> None:
        from kfp_yolo.components.progress import EVERY_S

        while not self._closed.wait(EVERY_S):
            # Not while listing: a server that never lists is reported once, as the error.
            if self.planned:
                self._write_line()

    def _write_line(self) -> None:
        try:
            sys.stderr.write(self.line() + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            return
        self._plain_lines += 1

    def _tick(self) -> None:
        while not self._closed.wait(PROGRESS_EVERY_S):
            self._draw()

    def _draw(self, end: str = "") -> None:
        text = self.line()
        pad = max(0, self._width - len(text))  # blanks over the end of a longer previous line
        self._width = len(text)
        sys.stderr.write(f"\r{text}{' ' * pad}{end}")
        sys.stderr.flush()
