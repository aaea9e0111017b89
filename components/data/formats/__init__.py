"""Annotation exports to the YOLO layout: detection from the files, and one convert().

`kfp-yolo dataset convert`, `dataset check` and the prepare step all go through `convert`:

    detect(root)                    -> 'yolo' | 'coco' | 'ndjson' | 'voc'
    convert(root, dest, mode="hard")  -> Conversion (dest holds images/, labels/, data.yaml)

A data.yaml, another YAML file or classes.txt at the top means the YOLO layout (as before);
otherwise an `*.ndjson` file, a VOC `Annotations/` folder, then COCO JSON in the layouts of
formats.coco, in that order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from kfp_yolo.components import storage
from kfp_yolo.components.atomic import staged_dir
from kfp_yolo.components.data.formats.coco import find_coco, read_coco
from kfp_yolo.components.data.formats.common import Conversion, LinkMode, write_yolo
from kfp_yolo.components.data.formats.ndjson import find_ndjson, read_ndjson
from kfp_yolo.components.data.formats.voc import find_voc, read_voc
from kfp_yolo.components.data.source import fetch, local_folder, refuse_inside
from kfp_yolo.components.errors import UserError

__all__ = ["Conversion", "convert", "convert_uri", "detect"]


def _is_yolo(root: Path) -> bool:
    return (root / "classes.txt").is_file() or any(
        p.suffix in (".yaml", ".yml") and p.is_file() for p in root.iterdir())


def detect(root: Path) -> str:
    """The format of the dataset folder root, from its files ('yolo' when nothing else fits)."""
    if not root.is_dir() or _is_yolo(root):
        return "yolo"
    if find_ndjson(root):
        return "ndjson"
    if find_voc(root):
        return "voc"
    if find_coco(root):
        return "coco"
    return "yolo"


def _refuse_links_out(items: list, root: Path, export: Path) -> None:
    """Refuses an image that is a symbolic link (or lies under one) to a file outside the
    export: the converted dataset would link out of it, to whatever that file becomes."""
    inside = Path(os.path.realpath(export))
    for item in items:
        real = Path(os.path.realpath(item.image))
        if not real.is_relative_to(inside):
            shown = os.path.relpath(item.image, root)
            raise UserError(f"{item.origin or shown}: the image {shown} is a symbolic link to "
                            f"{real}, outside the export {export}; copy the image into the "
                            "export (a dataset holds its own files).")


def convert(root: Path, dest: Path, mode: LinkMode = "hard", *,
            export: Path | None = None) -> Conversion:
    """Converts the export at root into the YOLO layout at dest (which must not exist).

    Args:
        root: the export's folder; only read.
        export: where root's files come from when root is a mirror of links to them (`dataset
            check`); an image must resolve inside it (default: root).
        dest: the new folder: images/[train|val/], labels/, data.yaml (names, splits, and the
            source: format, files, source class ids, counts).
        mode: how images get to dest: 'hard' links (a copy across filesystems), 'symbolic'
            links, or 'copy'.

    Raises:
        UserError: the export is broken (one sentence naming the file, line and culprit), or
            root is in the YOLO layout already.
    """
    found = detect(root)
    if found == "ndjson":
        items, conversion = read_ndjson(root, find_ndjson(root))
    elif found == "voc":
        items, conversion = read_voc(root, find_voc(root))
    elif found == "coco":
        items, conversion = read_coco(root, *find_coco(root))
    elif _is_yolo(root):
        raise UserError(f"{root} is already in the YOLO layout (a YAML file or classes.txt at the "
                        "top); use it as it is.")
    else:
        raise UserError(f"{root}: no COCO JSON, NDJSON or Pascal VOC export found (see the "
                        "README's input formats); give the export's top folder.")
    if not items:
        raise UserError(f"{', '.join(conversion.files)}: lists no images; export the dataset "
                        "with its images.")
    _refuse_links_out(items, root, export or root)
    dest.mkdir(parents=True)
    write_yolo(items, conversion, dest, mode)
    return conversion


def convert_uri(uri: str, dest: str | Path) -> Conversion:
    """`kfp-yolo dataset convert`: the export at uri (a path, file://, s3://, minio://) into the
    YOLO layout at dest, which must be absent or empty.

    dest is filled under a temporary name beside it and renamed into place, so it never holds
    half a dataset. A local export's images are hard-linked (copied across filesystems); a
    remote one is downloaded beside dest first, then linked.
    """
    dest = Path(dest).absolute()
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise UserError(f"{dest} exists and is not an empty folder; give a new folder.")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{dest}: cannot write there ({exc.strerror}); give a folder you can "
                        "write to.") from None
    download = None
    try:
        if storage.is_remote(uri):
            download = Path(tempfile.mkdtemp(prefix=f".{dest.name}.download-", dir=dest.parent))
            source = fetch(uri, download / "export")
        else:
            source = local_folder(uri)
            refuse_inside(dest, source, what="where the converted dataset goes,")
        with staged_dir(dest) as part:
            return convert(source, part, "hard")
    finally:
        if download is not None:
            shutil.rmtree(download, ignore_errors=True)
