"""Tests for model.datasets: layouts, validation problems, skipping, fingerprints and splits."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from fusion_testkit.factories import encode_image, make_image, make_jpeg, make_png
from model.datasets import DatasetError, load_dataset

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)


def write_rows(root: Path, rows: list[dict], name: str = "train.jsonl") -> Path:
    """Write a JSONL manifest of `rows` under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_images(root: Path, count: int) -> list[str]:
    """`count` distinct JPEGs under root/images; returns their relative paths."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"images/{i}.jpg"
        (root / name).write_bytes(make_jpeg((10 * i % 256, 100, 200 - 10 * i % 200)))
        names.append(name)
    return names


@pytest.fixture
def good_root(tmp_path: Path) -> Path:
    """A valid JSONL dataset of 6 samples over labels neg/pos."""
    images = write_images(tmp_path, 6)
    rows = [
        {"image": img, "text": f"text {i}", "label": "pos" if i % 2 else "neg"}
        for i, img in enumerate(images)
    ]
    write_rows(tmp_path, rows)
    return tmp_path


def problem_of(root: Path, rows: list[dict], **kwargs: object) -> DatasetError:
    write_rows(root, rows)
    with pytest.raises(DatasetError) as info:
        load_dataset(root, **kwargs)  # type: ignore[arg-type]
    return info.value


# --- layouts ---


def test_jsonl_manifest_loads_samples_in_order(good_root: Path) -> None:
    ds = load_dataset(good_root / "train.jsonl")
    assert [s.text for s in ds.samples] == [f"text {i}" for i in range(6)]
    assert ds.samples[0].image == (good_root / "images/0.jpg").resolve()
    assert ds.samples[2].location == "train.jsonl:3"
    assert ds.labels == ("neg", "pos")
    assert ds.label_counts() == {"neg": 3, "pos": 3}


def test_csv_manifest_loads(tmp_path: Path) -> None:
    images = write_images(tmp_path, 2)
    (tmp_path / "data.csv").write_text(
        f'image,text,label\n{images[0]},"hello, world",a\n{images[1]},second,b\n', encoding="utf-8"
    )
    ds = load_dataset(tmp_path)
    assert [(s.text, s.label) for s in ds.samples] == [("hello, world", "a"), ("second", "b")]
    assert ds.samples[1].location == "data.csv:3"


def test_image_folder_layout_reads_captions_and_formats(tmp_path: Path) -> None:
    files = {
        "cats/a.jpg": make_jpeg(RED),
        "cats/b.png": make_png(GREEN),
        "dogs/c.webp": encode_image(make_image(BLUE), "WEBP"),
        "dogs/d.gif": encode_image(make_image(GREEN, (20, 20)), "GIF"),
        "dogs/e.bmp": encode_image(make_image(RED, (24, 24)), "BMP"),
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
        (tmp_path / name).with_suffix(".txt").write_text(f"caption of {name}", encoding="utf-8")
    ds = load_dataset(tmp_path)
    assert ds.labels == ("cats", "dogs")
    assert ds.label_counts() == {"cats": 2, "dogs": 3}
    assert {s.text for s in ds.samples} == {f"caption of {name}" for name in files}


def test_directory_prefers_train_manifest_and_split_selects_another(good_root: Path) -> None:
    write_rows(good_root, [{"image": "images/0.jpg", "text": "dev text", "label": "neg"}], name="dev.jsonl")
    assert len(load_dataset(good_root)) == 6
    assert [s.text for s in load_dataset(good_root, split="dev").samples] == ["dev text"]


def test_missing_split_is_an_error(good_root: Path) -> None:
    with pytest.raises(DatasetError, match="no manifest named test"):
        load_dataset(good_root, split="test")


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope")


# --- problems ---


def test_missing_image_is_reported_with_row(tmp_path: Path) -> None:
    images = write_images(tmp_path, 1)
    error = problem_of(
        tmp_path,
        [
            {"image": images[0], "text": "a", "label": "x"},
            {"image": "images/gone.jpg", "text": "b", "label": "x"},
        ],
    )
    assert error.counts == {"missing_image": 1}
    assert "train.jsonl:2: images/gone.jpg not found" in str(error)


@pytest.mark.parametrize(
    "content",
    [b"this is not an image", make_jpeg(RED, (64, 64))[:300], b""],
    ids=["garbage", "truncated-jpeg", "empty"],
)
def test_unreadable_image_is_reported(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.jpg").write_bytes(content)
    error = problem_of(tmp_path, [{"image": "bad.jpg", "text": "a", "label": "x"}])
    assert error.counts == {"unreadable_image": 1}
    assert "train.jsonl:1: bad.jpg: cannot decode" in str(error)


def test_empty_text_is_reported(tmp_path: Path) -> None:
    images = write_images(tmp_path, 1)
    error = problem_of(tmp_path, [{"image": images[0], "text": "  \n", "label": "x"}])
    assert error.counts == {"empty_text": 1}
    assert "train.jsonl:1: text is empty" in str(error)


def test_unknown_label_is_reported_when_labels_are_given(good_root: Path) -> None:
    write_rows(good_root, [{"image": "images/0.jpg", "text": "t", "label": "maybe"}], name="dev.jsonl")
    with pytest.raises(DatasetError, match="label 'maybe' is not known") as info:
        load_dataset(good_root, split="dev", labels=("neg", "pos"))
    assert info.value.counts == {"unknown_label": 1}


def test_given_labels_fix_the_label_order(good_root: Path) -> None:
    assert load_dataset(good_root, labels=("pos", "neg", "other")).labels == ("pos", "neg", "other")


def test_duplicate_rows_and_duplicate_image_text_pairs_are_reported(tmp_path: Path) -> None:
    images = write_images(tmp_path, 1)
    (tmp_path / "images/copy.jpg").write_bytes((tmp_path / images[0]).read_bytes())
    rows = [
        {"image": images[0], "text": "same", "label": "x"},
        {"image": images[0], "text": "same", "label": "x"},
        {"image": "images/copy.jpg", "text": "same", "label": "y"},
    ]
    error = problem_of(tmp_path, rows)
    assert error.counts == {"duplicate": 2}
    assert "train.jsonl:2: same row as train.jsonl:1" in str(error)
    assert "train.jsonl:3: same image and text, other label than train.jsonl:1" in str(error)


def test_bad_rows_are_reported(tmp_path: Path) -> None:
    images = write_images(tmp_path, 1)
    (tmp_path / "train.jsonl").write_text(
        "{not json\n"
        + json.dumps({"image": images[0], "text": "no label"})
        + "\n[1, 2]\n"
        + json.dumps({"image": images[0], "text": 5, "label": "x"})
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path)
    message = str(info.value)
    assert info.value.counts == {"bad_row": 4}
    assert "train.jsonl:1: invalid JSON" in message
    assert "train.jsonl:2: missing columns: label" in message
    assert "and 1 more" in message  # only the first few of a kind are listed


def test_csv_without_required_columns_is_a_bad_row(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("image,caption,label\na.jpg,hi,x\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=re.escape("train.csv:1: missing columns: text")):
        load_dataset(tmp_path)


@pytest.mark.parametrize("image", ["../outside.jpg", "images/../../outside.jpg", "/etc/passwd"])
def test_paths_leaving_the_root_are_rejected(tmp_path: Path, image: str) -> None:
    (tmp_path / "outside.jpg").write_bytes(make_jpeg())
    error = problem_of(tmp_path / "data", [{"image": image, "text": "t", "label": "x"}])
    assert error.counts == {"path_outside_root": 1}
    assert "is outside the dataset" in str(error)


def test_symlink_pointing_outside_the_root_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "secret.jpg").write_bytes(make_jpeg())
    root = tmp_path / "data"
    root.mkdir()
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    error = problem_of(root, [{"image": "link.jpg", "text": "t", "label": "x"}])
    assert error.counts == {"path_outside_root": 1}


def test_every_problem_is_collected_before_failing(tmp_path: Path) -> None:
    images = write_images(tmp_path, 1)
    rows = [{"image": "images/gone.jpg", "text": "a", "label": "x"}] * 5 + [
        {"image": images[0], "text": "", "label": "x"}
    ]
    error = problem_of(tmp_path, rows)
    assert error.counts == {"missing_image": 5, "empty_text": 1}
    assert "missing_image x5" in str(error)
    assert "and 2 more" in str(error)
    assert len(error.problems) == 6


# --- skipping and decoding ---


def test_skip_invalid_drops_bad_rows_and_counts_them(tmp_path: Path) -> None:
    images = write_images(tmp_path, 2)
    (tmp_path / "train.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"image": images[0], "text": "ok", "label": "x"}),
                "{broken",
                json.dumps({"image": "images/gone.jpg", "text": "b", "label": "x"}),
                json.dumps({"image": images[1], "text": "fine", "label": "y"}),
            ]
        ),
        encoding="utf-8",
    )
    ds = load_dataset(tmp_path, skip_invalid=True)
    assert [s.text for s in ds.samples] == ["ok", "fine"]
    assert ds.skipped == 2
    assert ds.skipped_kinds == {"bad_row": 1, "missing_image": 1}


def test_skip_invalid_still_fails_when_nothing_is_left(tmp_path: Path) -> None:
    error = problem_of(tmp_path, [{"image": "gone.jpg", "text": "t", "label": "x"}], skip_invalid=True)
    assert error.counts == {"missing_image": 1, "no_data": 1}
    assert "no valid samples" in str(error)


def test_invalid_utf8_in_manifest_is_replaced_not_rejected(tmp_path: Path) -> None:
    images = write_images(tmp_path, 1)
    line = json.dumps({"image": images[0], "text": "caf@", "label": "x"}).encode().replace(b"@", b"\xe9")
    (tmp_path / "train.jsonl").write_bytes(line + b"\n")
    assert load_dataset(tmp_path).samples[0].text == "caf\ufffd"


def test_invalid_utf8_in_caption_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x/a.png").write_bytes(make_png())
    (tmp_path / "x/a.txt").write_bytes(b"bad \xff byte")
    assert load_dataset(tmp_path).samples[0].text == "bad \ufffd byte"


def test_image_without_caption_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x/a.png").write_bytes(make_png())
    with pytest.raises(DatasetError, match=re.escape("x/a.png: no caption file a.txt")):
        load_dataset(tmp_path)


# --- fingerprint, summary and splits ---


def test_fingerprint_is_stable_and_follows_image_bytes(good_root: Path) -> None:
    first = load_dataset(good_root).fingerprint
    assert load_dataset(good_root).fingerprint == first
    (good_root / "images/3.jpg").write_bytes(make_jpeg(BLUE))
    assert load_dataset(good_root).fingerprint != first


def test_describe_summarises_counts(good_root: Path) -> None:
    summary = load_dataset(good_root).describe()
    assert summary["samples"] == 6
    assert summary["label_counts"] == {"neg": 3, "pos": 3}
    assert summary["skipped"] == 0
