"""write_atomic: the old content or the new one, never a mix, and no temporary file left behind (a killed
writer's is removed later, a live one's kept); temp folders: those of a writer that died are removed, those
being written are not."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from model.atomic import remove_abandoned, remove_abandoned_writes, temp_folder, write_atomic


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


def _writer(code: str, path: Path) -> subprocess.Popen[str]:
    """Another process running `code` on `path` (`sys.argv[1]`); returns once it prints that it is writing."""
    prelude = (
        "import sys, time; from pathlib import Path; from model.atomic import temp_folder, write_atomic\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", prelude + code, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline() == "writing\n"
    return child


def _holder(folder: Path) -> subprocess.Popen[str]:
    """Another process that makes `folder` with `temp_folder` and holds it until killed."""
    return _writer(
        "with temp_folder(Path(sys.argv[1])) as f:\n"
        "    (f / 'part').write_bytes(b'half'); print('writing', flush=True); time.sleep(120)\n",
        folder,
    )


def test_the_temp_folder_of_a_killed_writer_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    killed, live = _holder(tmp_path / ".tmp-killed"), _holder(tmp_path / ".tmp-live")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)

        assert remove_abandoned(tmp_path, ".tmp-*") == [".tmp-killed"]
        assert sorted(os.listdir(tmp_path)) == [".tmp-live"]
        assert (tmp_path / ".tmp-live" / "part").read_bytes() == b"half"
    finally:
        for child in (killed, live):
            child.kill()
            child.wait(30)


def test_a_temp_folder_held_in_this_process_is_kept_and_a_plain_leftover_file_removed(tmp_path: Path) -> None:
    (tmp_path / ".tmp-upload-old.zip").write_bytes(b"PK")  # never locked: nobody is writing it
    (tmp_path / "dataset").mkdir()

    with temp_folder(tmp_path / ".tmp-mine") as mine:
        assert remove_abandoned(tmp_path, ".tmp-*") == [".tmp-upload-old.zip"]
        assert mine.is_dir()

    assert remove_abandoned(tmp_path, ".tmp-*") == [".tmp-mine"]
    assert os.listdir(tmp_path) == ["dataset"]


def _atomic_writer(target: Path) -> subprocess.Popen[str]:
    """Another process inside `write_atomic(target)`: it has written half and waits until killed."""
    return _writer(
        "def half(tmp):\n"
        "    tmp.write_bytes(b'half'); print('writing', flush=True); time.sleep(120)\n"
        "write_atomic(Path(sys.argv[1]), half)\n",
        target,
    )


def test_the_temp_file_of_a_killed_atomic_write_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    version = tmp_path / "versions" / "v1"
    version.mkdir(parents=True)
    (version / "model.onnx").write_bytes(b"complete")
    killed, live = _atomic_writer(version / "model.onnx"), _atomic_writer(version / "config.json")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        leftover = [name for name in os.listdir(version) if name.startswith(".model.onnx.")]
        assert len(leftover) == 1 and leftover[0].endswith(".tmp")

        assert remove_abandoned_writes(tmp_path) == [f"versions/v1/{leftover[0]}"]
        names = sorted(os.listdir(version))
        assert len(names) == 2 and names[0].startswith(".config.json.") and names[1] == "model.onnx"
        assert (version / "model.onnx").read_bytes() == b"complete"
    finally:
        for child in (killed, live):
            child.kill()
            child.wait(30)
    assert remove_abandoned_writes(tmp_path) == [f"versions/v1/{names[0]}"]
    assert os.listdir(version) == ["model.onnx"]
    assert remove_abandoned_writes(tmp_path / "missing") == []
