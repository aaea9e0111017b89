"""The one SIGTERM policy of every entry (the CLI, `kfp-yolo run`, the launchers in a step).

Inside `stop_on_signals()` the first signal runs the caller's `on_stop` (stop what it started)
and raises Stopped, a BaseException no `except Exception` on the way up swallows; a second
signal during the cleanup that follows (deleting a job, stopping torchrun) is ignored, so the
cleanup the first one started finishes. Signal handlers live on the main thread only: elsewhere
the context does nothing and the thread's owner handles the signal.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kfp_yolo.components.errors import Stopped

__all__ = ["stop_on_signals"]


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGTERM,),
                    on_stop: Callable[[int], None] | None = None) -> Iterator[None]:
    """While inside: a signal of `signals` calls on_stop(signum), then raises Stopped(signum).

    Stopped.stopped_processes tells whether on_stop ran (the caller stopped what it started).
    The previous handlers are back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if stopping:  # a second signal while stopping: the first one's cleanup goes on
            return
        stopping.append(signum)
        if on_stop is not None:
            on_stop(signum)
        raise Stopped(signum, stopped_processes=on_stop is not None)

    previous = {signum: signal.signal(signum, stop) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
