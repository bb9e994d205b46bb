"""extract_zip: every entry checked before a byte is written (traversal, links, duplicates, bombs, sizes)."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import pytest

from fusion_testkit.zips import demo_zip, tree, valid_entries, with_symlink, zip_entries
from service.runtime.zip_extract import ZipLimits, ZipRejected, ZipTooLarge, extract_zip


def _archive(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "upload.zip"
    path.write_bytes(data)
    return path


def _extract(tmp_path: Path, data: bytes, limits: ZipLimits | None = None) -> Path:
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_zip(_archive(tmp_path, data), dest, limits or ZipLimits())
    return dest


def _reject(
    tmp_path: Path, data: bytes, error: type[ZipRejected] = ZipRejected, limits: ZipLimits | None = None
) -> ZipRejected:
    """Extract `data`, expect `error`, and check that nothing was written anywhere."""
    archive = _archive(tmp_path, data)
    dest = tmp_path / "dest"
    dest.mkdir()
    before = tree(tmp_path)
    with pytest.raises(error) as caught:
        extract_zip(archive, dest, limits or ZipLimits())
    assert tree(tmp_path) == before
    return caught.value


def test_entries_are_written_under_the_destination(tmp_path: Path) -> None:
    entries = valid_entries()

    dest = _extract(tmp_path, zip_entries(entries))

    assert {path: (dest / path).read_bytes() for path in entries} == entries
    assert tree(dest) == set(entries) | {"images"}


def test_single_top_level_folder_is_unwrapped(tmp_path: Path) -> None:
    dest = _extract(tmp_path, demo_zip(tmp_path, 4, prefix="mydata/"))

    assert (dest / "train.jsonl").is_file()
    assert not (dest / "mydata").exists()


def test_single_label_folder_is_kept(tmp_path: Path) -> None:
    dest = _extract(tmp_path, zip_entries({"cat/0.jpg": b"jpeg", "cat/0.txt": b"a cat"}))

    assert tree(dest) == {"cat", "cat/0.jpg", "cat/0.txt"}


def test_system_clutter_is_skipped(tmp_path: Path) -> None:
    entries = {**valid_entries(), "__MACOSX/._train.jsonl": b"x", "images/.DS_Store": b"x"}

    dest = _extract(tmp_path, zip_entries(entries))

    assert not (dest / "__MACOSX").exists() and not (dest / "images" / ".DS_Store").exists()


@pytest.mark.parametrize("name", ["../../../evil.txt", "images/../../../../evil.txt", "..\\..\\..\\evil.txt"])
def test_path_traversal_entry_is_refused(tmp_path: Path, name: str) -> None:
    error = _reject(tmp_path, zip_entries({**valid_entries(), name: b"owned"}))

    assert "traversal" in str(error)


def test_absolute_path_entry_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "absolute-evil.txt"
    error = _reject(tmp_path, zip_entries({**valid_entries(), str(target): b"owned"}))

    assert "absolute" in str(error)
    assert not target.exists()


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    data = with_symlink(valid_entries(), "images/link.jpg", "/etc/passwd")

    error = _reject(tmp_path, data)

    assert "symbolic link" in str(error)


def test_duplicate_entry_names_are_refused(tmp_path: Path) -> None:
    entries = valid_entries()
    data = zip_entries(entries)
    archive = _archive(tmp_path, data)
    with zipfile.ZipFile(archive, "a") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we add on purpose
        zf.writestr("train.jsonl", b'{"image": "images/1.jpg", "text": "x", "label": "cat"}\n')

    error = _reject(tmp_path, archive.read_bytes())

    assert "more than once" in str(error)


def test_high_compression_ratio_is_refused_as_zip_bomb(tmp_path: Path) -> None:
    data = zip_entries({**valid_entries(), "images/bomb.bin": bytes(8 * 1024 * 1024)})

    error = _reject(tmp_path, data)

    assert "zip bomb" in str(error)


def test_uncompressed_size_over_the_limit_is_refused(tmp_path: Path) -> None:
    entries = {**valid_entries(), "notes.txt": bytes(range(256)) * 100}

    error = _reject(tmp_path, zip_entries(entries), ZipTooLarge, ZipLimits(max_uncompressed_bytes=20_000))

    assert "20000" in str(error)


def test_more_entries_than_allowed_are_refused(tmp_path: Path) -> None:
    error = _reject(tmp_path, zip_entries(valid_entries()), limits=ZipLimits(max_entries=3))

    assert "more than 3" in str(error)


def test_bytes_that_are_not_a_zip_are_refused(tmp_path: Path) -> None:
    error = _reject(tmp_path, b"this is not a zip archive" * 10)

    assert "zip" in str(error)
