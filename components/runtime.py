"""Process-boundary settings: ultralytics offline, no downloads, a writable config folder.

Call `offline_environment()` once at the start of a process, before `import ultralytics`
(it reads its settings at import time).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["offline_environment"]

_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def offline_environment(config_dir: str | Path | None = None) -> Path:
    """Sets ultralytics' offline variables and seeds its config folder with a local font.

    Ultralytics downloads Arial.ttf for its plots on first use; matplotlib ships DejaVu Sans,
    which is put under those names in the config folder so nothing is fetched.
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
    return config_dir


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
