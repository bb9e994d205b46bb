"""DatasetStore: uploads refused with the store's errors, validation, listing, references and deletion."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from fusion_testkit.factories import make_jpeg
from fusion_testkit.zips import demo_zip, tree, valid_entries, zip_entries
from model.datasets import DatasetError
from service.runtime.dataset_store import (
    DatasetExists,
    DatasetInUse,
    DatasetNotFound,
    DatasetStore,
    InvalidDataset,
    UploadTooLarge,
)
from service.runtime.zip_extract import ZipLimits


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(tmp_path / "data")


def _archive(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "upload.zip"
    path.write_bytes(data)
    return path


def _reject(store: DatasetStore, tmp_path: Path, data: bytes, error: type[Exception]) -> Exception:
    """Upload `data`, expect `error`, and check that the data directory holds nothing new."""
    archive = _archive(tmp_path, data)
    before = tree(tmp_path)
    with pytest.raises(error) as caught:
        store.create_from_zip("upload", archive)
    assert tree(tmp_path) == before
    return caught.value


def test_manifest_zip_becomes_a_dataset_with_its_splits(store: DatasetStore, tmp_path: Path) -> None:
    info = store.create_from_zip("demo", _archive(tmp_path, demo_zip(tmp_path, n_per_class=4)))

    assert info.format == "jsonl"
    assert info.default_split == "train"
    assert info.samples == 8
    assert info.label_counts == {"negative": 4, "positive": 4}
    assert sorted(s.name for s in info.splits if s.name) == ["dev", "train"]
    assert info.size_bytes > 0
    assert store.names() == ["demo"]
    assert len(store.load("demo:dev")) == 8


def test_image_folder_layout_is_accepted(store: DatasetStore, tmp_path: Path) -> None:
    entries = {}
    for label, colour in (("cat", (200, 0, 0)), ("dog", (0, 0, 200))):
        for i in range(3):
            entries[f"{label}/{i}.jpg"] = make_jpeg((colour[0], 20 * i, colour[2]))
            entries[f"{label}/{i}.txt"] = f"a {label} number {i}".encode()

    info = store.create_from_zip("folders", _archive(tmp_path, zip_entries(entries)))

    assert info.format == "image_folder"
    assert info.label_counts == {"cat": 3, "dog": 3}
    assert store.load("folders").labels == ("cat", "dog")


def test_unsafe_zip_is_an_invalid_dataset_on_the_file_field(store: DatasetStore, tmp_path: Path) -> None:
    entries = {**valid_entries(), "../../../evil.txt": b"owned"}

    error = _reject(store, tmp_path, zip_entries(entries), InvalidDataset)

    assert "traversal" in str(error)
    assert getattr(error, "field", None) == "file"


def test_zip_over_the_size_limit_is_too_large_on_the_file_field(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "data", ZipLimits(max_uncompressed_bytes=20_000))
    entries = {**valid_entries(), "notes.txt": bytes(range(256)) * 100}

    error = _reject(store, tmp_path, zip_entries(entries), UploadTooLarge)

    assert "20000" in str(error)
    assert getattr(error, "field", None) == "file"


def test_manifest_pointing_outside_the_archive_is_refused(store: DatasetStore, tmp_path: Path) -> None:
    (tmp_path / "secret.jpg").write_bytes(make_jpeg())
    entries = valid_entries()
    entries["train.jsonl"] += b'{"image": "../../../secret.jpg", "text": "peek", "label": "cat"}\n'

    error = _reject(store, tmp_path, zip_entries(entries), InvalidDataset)

    assert "path_outside_root" in str(error)


def test_invalid_content_is_refused_with_the_model_message(store: DatasetStore, tmp_path: Path) -> None:
    entries = valid_entries()
    entries["train.jsonl"] += b'{"image": "images/nope.jpg", "text": "gone", "label": "cat"}\n'
    entries["images/broken.jpg"] = make_jpeg()[:40]
    entries["train.jsonl"] += b'{"image": "images/broken.jpg", "text": "cut", "label": "dog"}\n'

    error = _reject(store, tmp_path, zip_entries(entries), InvalidDataset)

    assert "missing_image" in str(error) and "images/nope.jpg" in str(error)
    assert "unreadable_image" in str(error)


def test_existing_name_is_a_conflict(store: DatasetStore, tmp_path: Path) -> None:
    store.create_from_zip("upload", _archive(tmp_path, zip_entries(valid_entries())))

    _reject(store, tmp_path, zip_entries(valid_entries()), DatasetExists)


def test_same_name_placed_by_another_replica_meanwhile_is_a_conflict(
    store: DatasetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rename = os.rename

    def other_replica_first(src: str, dst: Path) -> None:
        # Another API process (its own lock) renames its upload into place between the check and ours.
        (dst / "images").mkdir(parents=True)
        rename(src, dst)

    monkeypatch.setattr("service.runtime.dataset_store.os.rename", other_replica_first)
    archive = _archive(tmp_path, zip_entries(valid_entries()))

    with pytest.raises(DatasetExists):
        store.create_from_zip("upload", archive)
    assert store.names() == ["upload"] and os.listdir(store.root / "upload") == ["images"]
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".tmp-")] == []


@pytest.mark.parametrize("name", ["", "Upper", "-dash-first", "a" * 65, "dot.name", "../x"])
def test_invalid_names_are_refused(store: DatasetStore, tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidDataset) as caught:
        store.create_from_zip(name, _archive(tmp_path, zip_entries(valid_entries())))

    assert caught.value.field == "name"


def test_folder_placed_by_hand_is_a_dataset(store: DatasetStore, tmp_path: Path) -> None:
    source = tmp_path / "src"
    with zipfile.ZipFile(_archive(tmp_path, demo_zip(tmp_path, 4))) as zf:
        zf.extractall(source)
    shutil.copytree(source, store.root / "mounted")

    assert store.names() == ["mounted"]
    assert store.info("mounted").samples == 8
    assert store.resolve("mounted:dev") == (store.root / "mounted", "dev")


def test_summary_follows_changes_to_a_hand_placed_folder(store: DatasetStore, tmp_path: Path) -> None:
    folder = store.root / "grows"
    for name, data in valid_entries().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    assert store.info("grows").samples == 6

    rows = (folder / "train.jsonl").read_text().splitlines()
    (folder / "train.jsonl").write_text("\n".join(rows[:4]) + "\n")

    assert store.info("grows").samples == 4


def test_unknown_dataset_and_split_are_not_found(store: DatasetStore, tmp_path: Path) -> None:
    store.create_from_zip("small", _archive(tmp_path, zip_entries(valid_entries())))

    with pytest.raises(DatasetNotFound):
        store.resolve("missing")
    with pytest.raises(DatasetNotFound):
        store.resolve("small:dev")


def test_load_with_training_labels_reports_unknown_labels(store: DatasetStore, tmp_path: Path) -> None:
    store.create_from_zip("small", _archive(tmp_path, zip_entries(valid_entries())))

    with pytest.raises(DatasetError) as caught:
        store.load("small", labels=["cat", "bird"])

    assert caught.value.counts.get("unknown_label") == 3


def test_delete_refuses_a_dataset_in_use_and_removes_otherwise(store: DatasetStore, tmp_path: Path) -> None:
    store.create_from_zip("small", _archive(tmp_path, zip_entries(valid_entries())))

    with pytest.raises(DatasetInUse):
        store.delete("small", in_use={"small"})
    assert store.names() == ["small"]

    store.delete("small", in_use={"other"})

    assert store.names() == []
    assert list(store.root.iterdir()) == []


def test_temp_folders_are_not_datasets(store: DatasetStore, tmp_path: Path) -> None:
    (store.root / ".tmp-leftover").mkdir()
    (store.root / ".tmp-leftover" / "train.jsonl").write_text(json.dumps({}))

    assert store.names() == []
