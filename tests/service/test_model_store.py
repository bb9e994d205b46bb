"""ModelStore: versions on disk, metadata listing, validated activation and the atomic active pointer."""

from __future__ import annotations

import json

import pytest

from fusion_testkit.factories import VersionFactory
from service.runtime.model_store import (
    InvalidCheckpointError,
    ModelStore,
    ModelStoreError,
    UnknownVersionError,
)


def test_empty_store_has_no_versions_and_no_active(store: ModelStore) -> None:
    assert store.list_versions() == []
    assert store.active_version() is None


def test_new_version_paths_are_unique_and_sort_in_creation_order(store: ModelStore) -> None:
    names = []
    for _ in range(5):
        path = store.new_version_path()
        path.mkdir()
        names.append(path.name)
    assert len(set(names)) == 5
    assert names == sorted(names)


def test_list_versions_reads_metrics_and_config(store: ModelStore, make_version: VersionFactory) -> None:
    first = make_version(labels=("cat", "dog"))
    second = make_version()
    listed = store.list_versions()
    assert [v.version for v in listed] == [first, second]
    assert listed[0].metrics == {"accuracy": 0.5}
    assert listed[0].meta is not None and listed[0].meta["labels"] == ["cat", "dog"]
    assert listed[0].error is None


def test_list_versions_reports_an_unreadable_version_instead_of_failing(
    store: ModelStore, make_version: VersionFactory
) -> None:
    version = make_version()
    (store.version_path(version) / "config.json").write_text("{not json", encoding="utf-8")
    (listed,) = store.list_versions()
    assert listed.meta is None
    assert listed.error is not None and "JSON" in listed.error


def test_activate_writes_the_pointer(store: ModelStore, make_version: VersionFactory) -> None:
    version = make_version()
    store.activate(version)
    assert store.active_version() == version
    assert json.loads(store.active_file.read_text())["version"] == version


def test_activate_leaves_no_temporary_files(store: ModelStore, make_version: VersionFactory) -> None:
    store.activate(make_version())
    store.activate(make_version())
    assert sorted(p.name for p in store.root.iterdir()) == ["active.json", "versions"]


def test_activate_unknown_version_raises(store: ModelStore) -> None:
    with pytest.raises(UnknownVersionError):
        store.activate("does-not-exist")


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/b", "", ".hidden"])
def test_version_names_that_could_leave_the_store_are_refused(store: ModelStore, name: str) -> None:
    with pytest.raises(UnknownVersionError):
        store.version_path(name)
    assert not store.exists(name)


def test_corrupt_checkpoint_is_refused_and_active_unchanged(
    store: ModelStore, make_version: VersionFactory
) -> None:
    good, bad = make_version(), make_version()
    store.activate(good)
    weights = store.version_path(bad) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InvalidCheckpointError, match=bad):
        store.activate(bad)
    assert store.active_version() == good


def test_checkpoint_with_mismatched_tensors_is_refused(
    store: ModelStore, make_version: VersionFactory
) -> None:
    version = make_version()
    meta_file = store.version_path(version) / "config.json"
    meta = json.loads(meta_file.read_text())
    meta["model_config"]["hidden_dim"] = 32  # the weights were saved with 16
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(InvalidCheckpointError, match="mis-shaped"):
        store.validate(version)


def test_unreadable_pointer_raises_a_store_error(store: ModelStore) -> None:
    store.root.mkdir(parents=True)
    store.active_file.write_text("[]")
    with pytest.raises(ModelStoreError, match=r"active\.json"):
        store.active_version()


def test_get_unknown_version_raises(store: ModelStore) -> None:
    with pytest.raises(UnknownVersionError):
        store.get("nope")


def test_what_killed_writes_left_is_removed_and_complete_files_kept(
    store: ModelStore, make_version: VersionFactory
) -> None:
    version = make_version()
    store.activate(version)
    folder = store.versions_dir / version
    # What a process killed mid-write leaves: nobody holds these temporaries' locks any more.
    (folder / ".model.onnx.0123abcd.tmp").write_bytes(b"half a graph")
    (store.root / ".active.json.4567cdef.tmp").write_text('{"vers')
    (store.versions_dir / f".{version}x.tmp-89ab").mkdir()
    before = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    removed = store.remove_abandoned_saves()

    assert sorted(removed) == [
        ".active.json.4567cdef.tmp",
        f"versions/.{version}x.tmp-89ab",
        f"versions/{version}/.model.onnx.0123abcd.tmp",
    ]
    assert sorted(p.name for p in folder.iterdir()) == before
    assert sorted(p.name for p in store.root.iterdir()) == ["active.json", "versions"]
    assert store.active_version() == version and store.list_versions()[0].version == version
