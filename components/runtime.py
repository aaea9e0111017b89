"""Process-boundary settings: ultralytics offline, no downloads, a writable config folder; how
many CPUs and how much memory this process really has; and a child's life tied to its parent's.

Call `offline_environment()` once at the start of a process, before `import ultralytics`
(it reads its settings at import time). It is also where ultralytics is first imported, with its
output sent to stderr: a command's stdout is its product (`job render | kubectl apply -f -`,
`--json`), and ultralytics prints its settings banner and every LOGGER line on stdout.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["die_with_parent", "offline_environment", "parent_death_hook", "ultralytics_to_stderr",
           "usable_cpus", "usable_memory_bytes"]

_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def offline_environment(config_dir: str | Path | None = None, *,
                        load_ultralytics: bool = True) -> Path:
    """Sets ultralytics' offline variables, seeds its config folder with a local font, and
    imports ultralytics with its output on stderr (`load_ultralytics`).

    Ultralytics downloads Arial.ttf for its plots on first use; matplotlib ships DejaVu Sans,
    which is put under those names in the config folder so nothing is fetched. A process that
    only sets the environment for its children (`kfp-yolo run`) passes load_ultralytics=False.
    """
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_VERBOSE", "true")
    os.environ.setdefault("MPLBACKEND", "Agg")
    if config_dir is None:
        config_dir = os.environ.get("YOLO_CONFIG_DIR") or Path(tempfile.gettempdir()) / "kfp-yolo"
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    _seed_fonts(config_dir)
    if load_ultralytics:
        ultralytics_to_stderr()
    return config_dir


def ultralytics_to_stderr() -> None:
    """Imports ultralytics' utils (settings, LOGGER) with stdout sent to stderr, and keeps its
    LOGGER there.

    On a fresh settings folder (every CI runner, pod and new laptop) the import writes
    "Creating new Ultralytics Settings ..." through LOGGER, whose handler is bound to
    sys.stdout when the module is imported: under the redirect it binds stderr for good.
    A LOGGER already imported elsewhere is re-pointed too (its banner, if any, is gone).
    """
    if "ultralytics.utils" not in sys.modules:
        with contextlib.redirect_stdout(sys.stderr):
            import ultralytics.utils  # noqa: F401
    for handler in logging.getLogger("ultralytics").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout,
                                                                             sys.__stdout__):
            handler.setStream(sys.stderr)


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

    In a pod, os.cpu_count() is the node's CPU count; `limits.cpu` is a CFS quota (cgroup v2
    `cpu.max`, v1 `cpu.cfs_quota_us`), rounded up here: a 1.5-CPU limit gives 2.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = _cpu_quota(cgroup_root)
    return max(1, min(count, math.ceil(quota))) if quota else count


def _cpu_quota(root: Path) -> float | None:
    """The cgroup's CPU quota in CPUs, or None when unlimited or unreadable."""
    try:
        quota, period = (root / "cpu.max").read_text().split()  # v2: "max 100000" | "150000 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())  # v1: -1 = unlimited
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def usable_memory_bytes(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Memory this process's container may use: physical memory, capped by a cgroup limit.

    In a pod, /proc/meminfo shows the node; `limits.memory` is the cgroup's `memory.max` (v2) or
    `memory/memory.limit_in_bytes` (v1, where "unlimited" is a huge number).
    """
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            text = (cgroup_root / name).read_text().strip()
        except OSError:
            continue
        if text == "max":
            return physical
        try:
            return max(1, min(physical, int(text)))
        except ValueError:
            continue
    return physical


def die_with_parent(parent: int | None = None, signum: int = signal.SIGTERM) -> bool:
    """Asks Linux to send this process signum when its parent ends (prctl PR_SET_PDEATHSIG).

    Called in a child (first thing in a process, or through `parent_death_hook` between fork
    and exec): torchrun dies with the step that started it, a worker with its torchrun, so no
    training outlives its launcher even when the launcher is SIGKILLed. `parent`: the pid the
    caller expects as parent; if it is already gone, the signal is sent now. Returns False
    where the call is not available.
    """
    prctl = _prctl()
    if prctl is None or prctl(1, int(signum), 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
        return False
    if parent is not None and os.getppid() != parent:  # it died before the prctl
        os.kill(os.getpid(), signum)
    return True


def parent_death_hook(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A Popen preexec_fn: the child gets signum when this process ends (die_with_parent).

    libc is looked up here, in the parent: between fork and exec only the call itself runs.
    """
    parent = os.getpid()
    _prctl()
    return lambda: die_with_parent(parent, signum) and None


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _seed_fonts(config_dir: Path) -> None:
    missing = [name for name in _FONT_NAMES if not (config_dir / name).exists()]
    if not missing:
        return
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in missing:
        partial = config_dir / f".{name}.{os.getpid()}"
        shutil.copyfile(source, partial)
        partial.replace(config_dir / name)
