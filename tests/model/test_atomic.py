"""write_atomic: the old content or the new one, never a mix, and no temporary file left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from model.atomic import write_atomic


def test_new_content_replaces_the_old(tmp_path: Path) -> None:
    target = tmp_path / "pointer.json"
    target.write_text("old")

    write_atomic(target, lambda tmp: tmp.write_text("new"))

    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["pointer.json"]


def test_failed_write_keeps_the_old_content_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "pointer.json"
    target.write_text("old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("ne")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, half_then_fail)

    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["pointer.json"]


def test_durable_write_syncs_the_file_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "pointer.json"
    events: list[str] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        events.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        fsync(fd)

    def recording_replace(src: str | Path, dst: str | Path) -> None:
        events.append("rename")
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)

    write_atomic(target, lambda tmp: tmp.write_text("new"), durable=True)

    assert events == ["file", "rename", "dir"]
    assert target.read_text() == "new"
