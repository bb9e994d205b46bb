"""Tests for model.demo_data: the XOR dataset is valid, balanced and solvable only from both modalities."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model import demo_data
from model.datasets import Dataset, load_dataset
from model.demo_data import write_demo_dataset


def is_warm_image(path: Path) -> bool:
    """Warm pictures are red/orange, cool ones cyan/blue: compare the red and blue channel means."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return bool(pixels[..., 0].mean() > pixels[..., 2].mean())


def is_warm_text(text: str) -> bool:
    words = set(re.findall(r"\w+", text))
    warm = bool(words & set(demo_data._WORDS["warm"]))
    cool = bool(words & set(demo_data._WORDS["cool"]))
    assert warm != cool, f"caption names exactly one group: {text!r}"
    return warm


def test_writes_loadable_train_and_dev_splits(demo_train: Dataset, demo_dev: Dataset) -> None:
    assert demo_train.labels == demo_data.LABELS
    assert demo_train.label_counts() == {"match": 100, "mismatch": 100}
    assert demo_dev.label_counts() == {"match": 25, "mismatch": 25}
    assert demo_train.skipped == 0


def test_label_is_the_xor_of_image_colour_and_caption_group(demo_train: Dataset) -> None:
    for sample in demo_train.samples:
        agrees = is_warm_image(sample.image) == is_warm_text(sample.text)
        assert (sample.label == "match") == agrees, sample.location


def test_neither_modality_alone_predicts_the_label(demo_train: Dataset) -> None:
    images = Counter((s.label, is_warm_image(s.image)) for s in demo_train.samples)
    texts = Counter((s.label, is_warm_text(s.text)) for s in demo_train.samples)
    for label in demo_data.LABELS:
        assert images[(label, True)] == images[(label, False)] == 50
        assert texts[(label, True)] == texts[(label, False)] == 50


def test_captions_vary(demo_train: Dataset) -> None:
    assert len({s.text for s in demo_train.samples}) > len(demo_train) // 2


def test_same_seed_gives_same_files_and_other_seed_differs(tmp_path: Path) -> None:
    first = write_demo_dataset(tmp_path / "a", n_per_class=4, seed=1)
    again = write_demo_dataset(tmp_path / "b", n_per_class=4, seed=1)
    other = write_demo_dataset(tmp_path / "c", n_per_class=4, seed=2)
    assert load_dataset(first).fingerprint == load_dataset(again).fingerprint
    assert load_dataset(first).fingerprint != load_dataset(other).fingerprint


def test_too_few_samples_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_per_class"):
        write_demo_dataset(tmp_path, n_per_class=1)
