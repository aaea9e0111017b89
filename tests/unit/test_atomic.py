"""kfp_yolo.components.atomic: writes appear whole or not at all, and failures leave nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kfp_yolo.components.atomic import PART_SUFFIX, staged, staged_dir, temporary_name, write_atomic


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_atomic_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "summary.json"
    write_atomic(target, "old")
    write_atomic(target, b"new", fsync=True)
    assert target.read_bytes() == b"new" and _names(tmp_path) == ["summary.json"]


def test_a_failed_write_keeps_the_old_content_and_removes_the_temporary(tmp_path):
    target = tmp_path / "latest"
    target.write_text("v1")
    with pytest.raises(RuntimeError), staged(target) as part:
        part.write_text("v2 half")
        raise RuntimeError("killed midway")
    assert target.read_text() == "v1" and _names(tmp_path) == ["latest"]


def test_the_temporary_is_hidden_beside_dest_and_unique_across_threads(tmp_path):
    names: list[Path] = []
    threads = [threading.Thread(target=lambda: names.extend(
        temporary_name(tmp_path / "f.yaml", ".yaml") for _ in range(50))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == 200
    assert all(n.parent == tmp_path and n.name.startswith(".f.yaml.") for n in names)
    assert all(n.name.endswith(f"{PART_SUFFIX}.yaml") for n in names)


def test_unlink_first_still_ends_with_the_new_file(tmp_path):
    target = tmp_path / "big.bin"
    target.write_bytes(b"old")
    with staged(target, unlink_first=True) as part:
        part.write_bytes(b"new")
    assert target.read_bytes() == b"new" and _names(tmp_path) == ["big.bin"]


def test_staged_dir_appears_whole_replaces_and_cleans_up(tmp_path):
    folder = tmp_path / "dataset"
    with staged_dir(folder) as part:
        (part / "images").mkdir(parents=True)
        (part / "images" / "a.jpg").write_bytes(b"a")
        assert not folder.exists()  # nothing visible until the block ends
    assert (folder / "images" / "a.jpg").read_bytes() == b"a"

    with pytest.raises(OSError), staged_dir(folder) as part:
        part.mkdir()
        (part / "b.jpg").write_bytes(b"b")
        raise OSError(28, "No space left on device")
    assert _names(tmp_path) == ["dataset"] and _names(folder) == ["images"]

    with staged_dir(folder) as part:
        part.mkdir()
        (part / "c.jpg").write_bytes(b"c")
    assert _names(folder) == ["c.jpg"] and _names(tmp_path) == ["dataset"]


def test_staged_dir_keeps_the_old_folder_when_the_new_one_cannot_move_in(tmp_path, monkeypatch):
    import os

    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "old.jpg").write_bytes(b"old")
    real = os.replace

    def refuse_the_new_folder(src, dst):
        if Path(src).name.endswith(".part"):
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", refuse_the_new_folder)
    with pytest.raises(OSError), staged_dir(folder) as part:
        part.mkdir()
        (part / "new.jpg").write_bytes(b"new")
    assert _names(folder) == ["old.jpg"] and _names(tmp_path) == ["dataset"]
