"""Where a dataset comes from: one resolver of the URIs a user gives (a path, file://,
s3://, minio://, synthetic://shapes) with one sentence per mistake, and the fetch that brings
the dataset into a working folder.
"""

import errno
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from kfp_yolo.components import storage
from kfp_yolo.components.errors import UserError

__all__ = ["fetch", "local_folder", "refuse_inside"]


def local_folder(uri: str) -> Path:
    """The local folder a path or file:// URI names; every mistake is one UserError sentence.

    The one resolver of a local dataset or export (fetch, `dataset convert`, prepare's
    export detection): an empty URI, an unknown scheme, a file, a folder that does not exist.
    """
    if not uri.strip():
        raise UserError("no dataset given; give a folder with images/ and labels/, or an "
                        "s3://, minio://, file:// or synthetic:// URI.")
    try:
        source = storage.local_path(uri).expanduser()
    except UserError:
        raise UserError(f"{uri!r}: unknown URI scheme {urlparse(uri).scheme!r}; use s3://, "
                        "minio://, file://, a path, or synthetic://shapes.") from None
    if source.is_file():
        raise UserError(f"{uri!r} is a file; give the dataset's folder, the one that holds "
                        "images/ and labels/ (for an export: its top folder, which holds the "
                        "annotation file and the images).")
    if not source.is_dir():
        raise UserError(f"{uri!r}: dataset folder does not exist; give a folder with images/ "
                        "and labels/.")
    return source


def refuse_inside(folder: Path, source: Path, *, what: str) -> None:
    """Refuses a work folder inside the dataset folder: preparing would copy it into itself."""
    if folder.resolve().is_relative_to(source.resolve()):
        raise UserError(f"{folder}, {what} is inside the dataset folder {source}, which would "
                        "copy the dataset into itself; put the work folder (--workdir) outside "
                        "the dataset.")


def fetch(uri: str, dest: Path, *, link: bool = False) -> Path:
    """Brings the dataset at uri into dest; returns dest.

    link: for a read-only check of a local dataset, dest gets the source's folders and a
    symbolic link per file instead of a copy, so the files are read in place whatever
    filesystem they are on. ultralytics replaces a file it repairs by renaming a new one over
    it: over a link, that replaces the link in dest, never the source file.
    """
    if not uri.strip():
        local_folder(uri)  # its sentence for an empty URI
    if urlparse(uri).scheme == "synthetic":
        from kfp_yolo.components.data.synth import synthesize, synthetic_spec

        synthesize(dest, synthetic_spec(uri))
        return dest
    if storage.is_remote(uri):
        storage.download(uri, dest)
        if not dest.is_dir():
            raise UserError(f"{uri} is one object; give the prefix that holds images/ and "
                            "labels/.")
        return dest
    source = local_folder(uri)
    if not link:
        refuse_inside(dest.parent, source, what="where the prepared dataset goes,")
    _mirror(source, dest, _symlink if link else shutil.copy2)
    return dest


def _symlink(source: Path, dest: Path) -> None:
    os.symlink(source.absolute(), dest)


def _mirror(source: Path, dest: Path, place: Callable[[Path, Path], object]) -> None:
    """Recreates source's folders under dest, placing each regular file with place(src, dst).

    Links to folders are followed; a link loop or a broken link is refused with its path.
    Other special files (sockets, pipes, devices) are never read. A dest inside source (a
    scratch folder of a check of `/`) is skipped.
    """
    dest.mkdir(parents=True, exist_ok=True)
    skip = _identity(dest)

    def walk(folder: Path, target: Path, chain: tuple[tuple[int, int], ...]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise UserError(f"{_shown(folder, source)}: cannot list the folder "
                            f"({exc.strerror}); fix its permissions.") from None
        for entry in entries:
            path = Path(entry.path)
            try:
                info = path.stat()
            except OSError as exc:
                raise UserError(_unreadable(path, source, exc)) from None
            if stat.S_ISDIR(info.st_mode):
                identity = (info.st_dev, info.st_ino)
                if identity in chain:
                    raise UserError(f"{_shown(path, source)}: symbolic link loop (it leads back "
                                    "to a folder that contains it); remove the link.")
                if identity == skip:
                    continue
                (target / entry.name).mkdir()
                walk(path, target / entry.name, (*chain, identity))
            elif stat.S_ISREG(info.st_mode):
                place(path, target / entry.name)

    walk(source, dest, (_identity(source),))


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def _shown(path: Path, source: Path) -> str:
    return path.relative_to(source).as_posix() if path != source else str(source)


def _unreadable(path: Path, source: Path, exc: OSError) -> str:
    shown = _shown(path, source)
    if exc.errno == errno.ELOOP:
        return f"{shown}: symbolic link loop; remove the link."
    if path.is_symlink():
        return (f"{shown}: broken symbolic link (to {os.readlink(path)}); fix the link or "
                "remove it.")
    return f"{shown}: cannot be read ({exc.strerror}); fix its permissions or remove it."
