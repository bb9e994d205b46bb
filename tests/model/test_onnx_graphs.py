"""Tests for model.onnx_graphs: the graphs' inputs, and what the image graph of a model with tags computes."""

from __future__ import annotations

import torch

from fusion_testkit.factories import build_tiny_model, make_jpeg
from model.image_tags import imagenet_categories
from model.onnx_graphs import ImageGraph, graph_inputs, graph_outputs
from model.predictor import Predictor


def test_a_model_without_image_tags_takes_pixels_and_one_with_them_image_features() -> None:
    plain = build_tiny_model()
    tagged = build_tiny_model(image_encoder="efficientnet_lite0", pretrained=True, text_image_tags=3)

    assert graph_inputs(plain) == ["pixels", "input_ids", "attention_mask", "image_present", "text_present"]
    assert graph_inputs(tagged) == [
        "image_features",
        "input_ids",
        "attention_mask",
        "image_present",
        "text_present",
    ]
    assert graph_outputs(tagged) == ["probabilities", "image_only", "text_only", "gate"]


def test_the_image_graph_gives_the_encoders_features_and_the_taggers_classes() -> None:
    model = build_tiny_model(image_encoder="efficientnet_lite0", pretrained=True, text_image_tags=3)
    predictor = Predictor(model, {}, version="v")
    pixels = torch.stack(
        [predictor.preprocess_image(make_jpeg(c, (48, 40))) for c in ((220, 60, 20), (9, 9, 9))]
    )

    with torch.no_grad():
        features, tag_ids = ImageGraph(model).eval()(pixels)

    assert model.image_tagger is not None
    assert torch.equal(features, model.encode_image(pixels))
    categories = imagenet_categories()
    assert tag_ids.shape == (2, 3)
    assert [[categories[i] for i in row] for row in tag_ids.tolist()] == model.image_tagger.tags(features)
