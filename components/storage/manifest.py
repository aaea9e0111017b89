"""The manifest of a prefix upload: `_manifest.json`, written last, listing each object's size.

A prefix with a manifest holds exactly what it lists: readers fetch those objects, ignore any
others (added later by someone else) and refuse a listed object that is missing or changed. A
prefix without one was filled by other tools and holds whatever is there. The manifest is also
the marker that an upload finished (storage.finished): until it exists, nothing is published.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from kfp_yolo.components.errors import UserError

__all__ = ["MANIFEST_NAME", "encode", "follow"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"


def encode(sizes: dict[str, int]) -> bytes:
    """The manifest of an upload: {relative name: size in bytes}."""
    return json.dumps({"objects": sizes}, indent=1, sort_keys=True).encode()


def follow(uri: str, prefix: str, objects: dict[str, int],
           read: Callable[[str], bytes]) -> dict[str, int]:
    """The objects a prefix's manifest lists, when it has one; else all of them.

    Args:
        uri: the prefix's URI, for messages.
        prefix: the key prefix ('' or ending with '/').
        objects: {key: size} as listed under prefix.
        read: reads one object's bytes by key.
    """
    manifest_key = prefix + MANIFEST_NAME
    if manifest_key not in objects:
        return objects
    listed = json.loads(read(manifest_key))["objects"]
    chosen = {prefix + name: size for name, size in listed.items()}
    absent = sorted(k for k in chosen if objects.get(k) != chosen[k])
    if absent:
        raise UserError(f"{uri}: {absent[0][len(prefix):]!r} is listed in {MANIFEST_NAME} but "
                        "missing or of another size; the prefix was changed after upload, "
                        "upload it again.")
    extra = len(objects) - len(chosen) - 1
    if extra:
        log.warning("%s: %d objects are not in its %s (added after the upload?); ignored.",
                    uri, extra, MANIFEST_NAME)
    return chosen
