"""The local backend: plain paths and file:// URIs.

Every write goes to a temporary name beside its target and is renamed into place
(kfp_yolo.components.atomic): a file or a whole folder appears at once, so a folder that exists
is a finished upload and no manifest is needed. Sources are never modified.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from kfp_yolo.components.atomic import staged, staged_dir, write_atomic
from kfp_yolo.components.errors import UserError
from kfp_yolo.components.storage.backend import local_path

__all__ = ["LocalBackend"]


@dataclass
class LocalBackend:
    """A file or folder on a filesystem."""

    uri: str
    path: Path

    @classmethod
    def open(cls, uri: str) -> LocalBackend:
        return cls(uri, local_path(uri))

    def exists(self) -> bool:
        return self.path.exists()

    def names(self) -> list[str]:
        root = self.path
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def read(self) -> bytes:
        if not self.path.is_file():
            raise UserError(f"{self.uri!r} does not exist.")
        return self.path.read_bytes()

    def write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Flushed: these are pointers (a registry's `latest`) that must survive a machine crash.
        write_atomic(self.path, data, fsync=True)

    def finished(self) -> bool:
        return self.path.exists()  # upload renames a whole file or folder into place

    def remove(self) -> None:
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path)
        else:
            self.path.unlink(missing_ok=True)

    def download(self, dest: Path, *, workers: int, progress: bool | None) -> Path:
        if self.path.is_dir():
            shutil.copytree(self.path, dest, dirs_exist_ok=True)
        elif self.path.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.path, dest)
        else:
            raise UserError(f"{self.uri!r} does not exist.")
        return dest

    def upload(self, source: Path, *, workers: int, progress: bool | None) -> None:
        target = self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            with staged_dir(target) as part:
                shutil.copytree(source, part)
        else:
            with staged(target) as part:
                shutil.copy2(source, part)
