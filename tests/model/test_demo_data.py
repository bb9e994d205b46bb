"""Tests for model.demo_data: a valid, balanced sentiment task whose label each modality carries part of."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model import demo_data
from model.datasets import Dataset, Sample, load_dataset
from model.demo_data import write_demo_dataset


def picture_mood(path: Path) -> str:
    """Read the mood from the pixels: grey is neutral, warm (red over blue) positive, cool negative."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).reshape(-1, 3)
    red, green, blue = np.median(pixels, axis=0)  # the background: shapes cover well under half
    if max(red, green, blue) - min(red, green, blue) < 15:
        return "neutral"
    return "positive" if red > blue else "negative"


def caption_mood(text: str) -> str:
    """Read the mood from the words: a happy phrase, a sad phrase, or neither."""
    words = set(re.findall(r"\w+", text))
    moods = [
        mood for mood, phrases in demo_data._PHRASES.items() if any(set(p.split()) <= words for p in phrases)
    ]
    assert len(moods) <= 1, text
    return moods[0] if moods else "neutral"


def clue(sample: Sample) -> str:
    """Which modality carries the sample's label, checking that neither contradicts it."""
    picture, caption = picture_mood(sample.image), caption_mood(sample.text)
    assert picture in (sample.label, "neutral") and caption in (sample.label, "neutral"), sample.location
    return {(False, False): "both", (False, True): "image", (True, False): "text"}[
        (picture == "neutral", caption == "neutral")
    ]  # KeyError when both are neutral: that sample would carry no label at all


def test_writes_loadable_train_and_dev_splits(demo_train: Dataset, demo_dev: Dataset) -> None:
    assert demo_train.labels == demo_data.LABELS == ("negative", "positive")
    assert demo_train.label_counts() == {"negative": 100, "positive": 100}
    assert demo_dev.label_counts() == {"negative": 25, "positive": 25}
    assert demo_train.skipped == 0


def test_each_sample_carries_its_label_in_the_picture_the_caption_or_both(demo_train: Dataset) -> None:
    counts = Counter((sample.label, clue(sample)) for sample in demo_train.samples)
    for label in demo_data.LABELS:
        assert [counts[(label, kind)] for kind in demo_data.CLUES] == [34, 33, 33]


def test_one_modality_alone_is_blind_on_a_third_of_the_samples(demo_dev: Dataset) -> None:
    kinds = Counter(clue(sample) for sample in demo_dev.samples)
    # Always-right fusion vs. a single modality that must guess where it is neutral.
    assert kinds["image"] / len(demo_dev) >= 0.3 and kinds["text"] / len(demo_dev) >= 0.3


def test_captions_vary(demo_train: Dataset) -> None:
    assert len({s.text for s in demo_train.samples}) > len(demo_train) // 4


def test_same_seed_gives_same_files_and_other_seed_differs(tmp_path: Path) -> None:
    first = write_demo_dataset(tmp_path / "a", n_per_class=4, seed=1)
    again = write_demo_dataset(tmp_path / "b", n_per_class=4, seed=1)
    other = write_demo_dataset(tmp_path / "c", n_per_class=4, seed=2)
    assert load_dataset(first).fingerprint == load_dataset(again).fingerprint
    assert load_dataset(first).fingerprint != load_dataset(other).fingerprint


def test_too_few_samples_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_per_class"):
        write_demo_dataset(tmp_path, n_per_class=1)
