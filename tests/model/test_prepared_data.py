"""Tests for model.prepared_data with image tags: the texts a model with them trains and is evaluated on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from fusion_testkit.factories import build_tiny_model
from model.config import TrainConfig
from model.datasets import Dataset
from model.evaluation import evaluate
from model.features import FeatureCache
from model.fusion import FusionClassifier
from model.image_tags import tag_text
from model.prepared_data import prepare_data
from model.training import train


@pytest.fixture(scope="module")
def small(demo_train: Dataset) -> Dataset:
    return demo_train.subset(range(24))


def tagging_model(labels: tuple[str, ...]) -> FusionClassifier:
    """A tiny bag-of-words model over EfficientNet-Lite0 (32 px) whose texts carry two image tags."""
    return build_tiny_model(
        labels=labels, image_encoder="efficientnet_lite0", pretrained=True, text_image_tags=2
    )


def test_texts_carry_their_photos_tags_and_the_plain_texts_stay_beside_them(
    small: Dataset, tmp_path: Path
) -> None:
    model = tagging_model(small.labels)
    cache = FeatureCache(tmp_path)
    assert model.image_tagger is not None

    data = prepare_data(model, small, cache=cache)

    image = cache.get_or_compute(model, small, modalities=("image",)).image
    assert image is not None
    tags = model.image_tagger.tags(image)
    tagged = [tag_text(s.text, t) for s, t in zip(small.samples, tags, strict=True)]
    assert data.text_inputs is not None and data.plain_text is not None
    assert data.plain_text.text_inputs is not None
    for key, value in model.tokenize(tagged).items():
        assert torch.equal(data.text_inputs[key], value)
    for key, value in model.tokenize([s.text for s in small.samples]).items():
        assert torch.equal(data.plain_text.text_inputs[key], value)
    assert not torch.equal(data.text_inputs["input_ids"], data.plain_text.text_inputs["input_ids"])
    assert prepare_data(model, small, cache=cache, plain_text=False).plain_text is None


def test_the_text_only_report_reads_the_texts_without_their_tags(small: Dataset, tmp_path: Path) -> None:
    torch.manual_seed(1)  # an untrained head whose text-only predictions tell tagged texts from plain ones
    model = tagging_model(small.labels).eval()
    cache = FeatureCache(tmp_path)
    data = prepare_data(model, small, cache=cache)

    reports = evaluate(model, data)
    misread = evaluate(model, dataclasses.replace(data, plain_text=data))  # as if the tags were left on
    model.image_tagger = None  # the same weights reading the same texts, untagged
    plain = evaluate(model, small, cache=cache)

    assert reports["text_only"] == plain["text_only"]
    assert misread["text_only"] != plain["text_only"]
    assert reports["image_only"] == plain["image_only"]


def test_rows_prepared_without_their_plain_texts_refuse_the_text_only_mode(
    small: Dataset, tmp_path: Path
) -> None:
    model = tagging_model(small.labels)
    data = prepare_data(model, small, cache=FeatureCache(tmp_path), plain_text=False)

    with pytest.raises(ValueError, match=r"^text_only: "):
        evaluate(model, data)
    assert evaluate(model, data, modes=("fusion",))["fusion"] is not None


def test_a_model_with_image_tags_trains_and_reports_every_mode(small: Dataset, tmp_path: Path) -> None:
    config = tagging_model(small.labels).config
    one_epoch = TrainConfig(epochs=1, batch_size=8, finetune="none")

    result = train(config, one_epoch, small, cache=FeatureCache(tmp_path))

    assert result.model.image_tagger is not None
    assert all(result.metrics[mode] is not None for mode in ("fusion", "image_only", "text_only"))
    # Training the image encoder's last blocks would change the features the tags come from: no tags.
    last_blocks = train(
        config, dataclasses.replace(one_epoch, finetune="last"), small, cache=FeatureCache(tmp_path)
    )
    assert last_blocks.model.image_tagger is None and last_blocks.model.config.text_image_tags == 0
