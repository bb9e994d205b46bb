"""Tests for model.image_tags: the ImageNet classes written into a photo's text."""

from __future__ import annotations

import pytest
import torch

from fusion_testkit.factories import build_tiny_model
from model.encoders.efficientnet_lite import imagenet_classifier
from model.image_tags import ImageTagger, imagenet_categories, tag_text


def test_tags_are_the_likeliest_classes_likeliest_first() -> None:
    tagger = ImageTagger(4, 3)
    weight = torch.zeros(1000, 4)
    weight[7, 0], weight[3, 0], weight[500, 0] = 3.0, 2.0, 1.0  # feature 0 votes for classes 7 > 3 > 500
    weight[999, 1] = 5.0
    tagger.load_classifier(weight, torch.zeros(1000))
    names = imagenet_categories()

    tags = tagger.tags(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))

    assert tags[0] == [names[7], names[3], names[500]]
    assert tags[1][0] == names[999]


def test_the_categories_are_imagenets_thousand_in_order() -> None:
    names = imagenet_categories()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[0] == "tench" and names[999] == "toilet tissue"


def test_tag_text_appends_the_tags_and_leaves_an_untagged_text_alone() -> None:
    assert tag_text("what a day", ["seashore", "sandbar"]) == "what a day . photo: seashore, sandbar"
    assert tag_text("what a day", []) == "what a day"


def test_a_model_with_image_tags_carries_the_packaged_classifier_frozen() -> None:
    model = build_tiny_model(image_encoder="efficientnet_lite0", pretrained=True, text_image_tags=2)
    weight, bias = imagenet_classifier("efficientnet_lite0")

    assert model.image_tagger is not None and model.image_tagger.count == 2
    assert torch.equal(model.image_tagger.classifier.weight, weight)
    assert torch.equal(model.image_tagger.classifier.bias, bias)
    assert not any(p.requires_grad for p in model.image_tagger.parameters())
    untagged = build_tiny_model(image_encoder="efficientnet_lite0", pretrained=True, text_image_tags=0)
    assert untagged.image_tagger is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"image_encoder": "cnn"},
        {"image_encoder": "efficientnet_lite0", "pretrained": False},
        {"image_encoder": "efficientnet_lite0", "pretrained": True, "text_encoder": "none"},
    ],
)
def test_a_model_that_cannot_tag_gets_no_tags(overrides: dict) -> None:
    model = build_tiny_model(**{"text_image_tags": 3, **overrides})
    assert model.config.image_tags == 0 and model.image_tagger is None
