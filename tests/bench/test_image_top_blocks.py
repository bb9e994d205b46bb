"""bench.image_top_blocks: the probe's activations, its folds and its recipes, on real JPEGs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.image_top_blocks import compare, parse_recipe, prepare
from model.datasets import Dataset, load_dataset
from model.demo_data import write_demo_dataset
from model.encoders.efficientnet_lite import EfficientNetLite
from model.features import FeatureCache


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Eight demo tweets per label (negative, positive): real JPEG files and captions."""
    return load_dataset(write_demo_dataset(tmp_path_factory.mktemp("probe"), n_per_class=8, seed=0))


def test_the_frozen_blocks_on_its_activations_give_the_cached_image_features(
    photos: Dataset, tmp_path: Path
) -> None:
    cache = FeatureCache(tmp_path)
    data, model = prepare(photos, [parse_recipe("blocks=2", photos.labels)], cache)
    encoder = model.image_encoder
    assert isinstance(encoder, EfficientNetLite)
    assert data.activations.shape == (len(photos), 192, 7, 7)  # entering Lite0's block 12
    with torch.inference_mode():
        features = encoder.pooled_head(encoder.run_blocks(data.activations, data.first_block, 16))
    cached = cache.get_or_compute(model, photos, modalities=("image",)).image
    torch.testing.assert_close(features, cached, rtol=1e-4, atol=1e-4)
    assert data.labels.tolist() == [photos.labels.index(s.label) for s in photos.samples]


def test_every_recipe_is_scored_on_the_same_held_out_folds(photos: Dataset, tmp_path: Path) -> None:
    out = compare(photos, ["blocks=0 epochs=1", "blocks=1 epochs=1"], 2, 0, FeatureCache(tmp_path))
    for scores in out.values():
        assert set(scores) == {"accuracy", "weighted_f1", "macro_f1"}
        assert all(len(fold_scores) == 2 for fold_scores in scores.values())
        # 8 held-out tweets a fold: every accuracy is a whole number of them.
        assert all(round(acc * 8, 6).is_integer() for acc in scores["accuracy"])


def test_blocks_must_be_named_once_and_fit_the_last_two_stages(photos: Dataset, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="blocks=N exactly once"):
        parse_recipe("encoder_lr=1e-3", photos.labels)
    with pytest.raises(SystemExit, match="blocks: between 0 and 4"):
        prepare(photos, [parse_recipe("blocks=5", photos.labels)], FeatureCache(tmp_path))
