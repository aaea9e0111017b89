"""Atomic writes: a temporary name beside the destination, then one rename into place.

Every "write to a temporary name, then rename" in kfp-yolo goes through here, so that a reader
(or a process restarted after a crash) sees the old content or the whole new one, never half a
file, and a failed write leaves nothing behind. Temporary names are hidden and unique across
threads and processes: `.NAME.<pid>-<n>.part`.

    with staged(dest) as part:        # any writer that takes a path
        compile_to(part)
    write_atomic(dest, text)          # bytes or str
    with staged_dir(folder) as part:  # a whole folder, renamed into place once filled
        download_into(part)
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PART_SUFFIX", "staged", "staged_dir", "temporary_name", "write_atomic"]

PART_SUFFIX = ".part"
_IDS = itertools.count()


def temporary_name(dest: str | Path, suffix: str = "") -> Path:
    """A hidden name beside dest, unique across threads and processes.

    Args:
        dest: the file or folder the temporary one will become.
        suffix: appended after `.part`, for writers that insist on an extension (".yaml").
    """
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.{os.getpid()}-{next(_IDS)}{PART_SUFFIX}{suffix}")


@contextmanager
def staged(dest: str | Path, *, fsync: bool = False, unlink_first: bool = False,
           suffix: str = "") -> Iterator[Path]:
    """A temporary path beside dest to write: moved onto dest when the block succeeds, removed
    when it fails.

    Args:
        dest: the file to produce; its folder must exist.
        fsync: flush the file and then its folder to disk, so that a crash of the machine (not
            only of the process) also leaves the old or the new content. For small files that
            others rely on (pointers, records); a download can be fetched again instead.
        unlink_first: remove an existing dest just before the rename instead of renaming over
            it. Renaming over a file makes ext4 (auto_da_alloc) write the new one to disk first,
            0.3 s per 200 MB; use it where nobody reads dest meanwhile (downloads).
        suffix: see `temporary_name`.
    """
    dest = Path(dest)
    part = temporary_name(dest, suffix)
    try:
        yield part
        if fsync:
            _fsync(part)
        if unlink_first:
            dest.unlink(missing_ok=True)
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync(dest.parent)  # the rename itself


def write_atomic(dest: str | Path, data: bytes | str, *, fsync: bool = False) -> Path:
    """Writes data (str as UTF-8) to dest through a temporary file; returns dest."""
    dest = Path(dest)
    with staged(dest, fsync=fsync) as part:
        part.write_bytes(data.encode() if isinstance(data, str) else data)
    return dest


@contextmanager
def staged_dir(dest: str | Path) -> Iterator[Path]:
    """A temporary folder path beside dest to fill (the block creates it): renamed to dest when
    the block succeeds, removed when it fails.

    An existing dest is renamed aside, the new folder renamed into place, and only then is the
    old one removed (it is put back if that rename fails): two folders cannot be swapped in one
    step, so readers of dest may find it absent for that moment, never half-filled, and a
    failure never loses the old folder.
    """
    dest = Path(dest)
    part = temporary_name(dest)
    shutil.rmtree(part, ignore_errors=True)  # a dead process of the same pid left it
    aside = None
    try:
        yield part
        if dest.is_dir() and not dest.is_symlink():
            aside = temporary_name(dest, ".old")
            os.replace(dest, aside)
        try:
            os.replace(part, dest)
        except OSError:
            if aside is not None:
                os.replace(aside, dest)  # put the old folder back
                aside = None
            raise
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
