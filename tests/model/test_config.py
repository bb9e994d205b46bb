"""Tests for model.config."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from model.config import ModelConfig, TrainConfig, image_tags_problem, resolve_image_tags


def test_model_config_default_is_the_production_recipe() -> None:
    config = ModelConfig()
    assert (config.image_encoder, config.text_encoder, config.fusion) == (
        "efficientnet_lite0",
        "minilm",
        "sum",
    )
    assert config.pretrained
    assert config.text_image_tags == 3 and config.image_tags == 3


@pytest.mark.parametrize(
    ("model_overrides", "finetune", "problem"),
    [
        ({}, "text", None),
        ({}, "none", None),
        ({}, "last", "needs the image encoder frozen"),
        ({}, "all", "needs the image encoder frozen"),
        ({"image_encoder": "resnet18"}, "text", "needs a pretrained efficientnet_lite"),
        ({"pretrained": False}, "text", "needs a pretrained efficientnet_lite"),
        ({"text_encoder": "none"}, "text", "needs a text encoder"),
    ],
)
def test_image_tags_apply_where_the_recipe_can_tag(
    model_overrides: dict[str, Any], finetune: str, problem: str | None
) -> None:
    config = ModelConfig(**model_overrides)
    train_config = TrainConfig(finetune=finetune)

    found = image_tags_problem(config, train_config)

    assert (found is None) if problem is None else (found is not None and found.startswith(problem))
    assert resolve_image_tags(config, train_config).text_image_tags == (3 if problem is None else 0)


def test_a_stored_config_from_before_a_field_keeps_the_behaviour_it_was_trained_with() -> None:
    stored = ModelConfig(labels=("a", "b")).to_dict()
    del stored["text_image_tags"]
    assert ModelConfig.from_stored(stored).text_image_tags == 0
    assert ModelConfig.from_stored({**stored, "text_image_tags": 2}).text_image_tags == 2
    with pytest.raises(ValueError, match=r"^bogus: unknown field"):
        ModelConfig.from_stored({**stored, "bogus": 1})


def test_model_config_round_trips_through_json() -> None:
    config = ModelConfig(labels=("neg", "pos"), image_encoder="cnn", text_encoder="lstm", hidden_dim=32)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_train_config_round_trips_through_json() -> None:
    config = TrainConfig(epochs=3, schedule="step", finetune="last", kfold=5, metric="accuracy")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_to_dict_gives_lists_not_tuples() -> None:
    data = ModelConfig(labels=("a", "b")).to_dict()
    assert data["labels"] == ["a", "b"]
    assert isinstance(data["image_mean"], list)


@pytest.mark.parametrize("cls", [ModelConfig, TrainConfig])
def test_from_dict_rejects_unknown_keys(cls: Any) -> None:
    with pytest.raises(ValueError, match=r"^colour: unknown field"):
        cls.from_dict({"colour": "red"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("lr", 0.0),
        ("warmup_ratio", 0.9),
        ("schedule", "linear"),
        ("finetune", "some"),
        ("device", "tpu"),
        ("kfold", 1),
        ("metric", "auc"),
        ("patience", -2),
        ("finetune_layers", 7),
        ("label_smoothing", 0.6),
        ("keep", "first"),
    ],
)
def test_train_config_rejects_out_of_range_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        TrainConfig.from_dict({field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image_encoder", "vit"),
        ("text_encoder", "gpt"),
        ("fusion", "attention"),
        ("hidden_dim", 0),
        ("modality_dropout", 0.6),
        ("image_size", 8),
        ("max_text_tokens", 1000),
        ("image_std", [0.5, 0.0, 0.5]),
        ("image_mean", [0.5, 0.5]),
    ],
)
def test_model_config_rejects_bad_values_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        ModelConfig.from_dict({field: value})


@pytest.mark.parametrize(
    ("field", "value"), [("epochs", True), ("epochs", 2.5), ("lr", "fast"), ("augment", 1)]
)
def test_wrong_json_types_are_rejected(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: expected"):
        TrainConfig.from_dict({field: value})


def test_integer_is_accepted_for_a_float_field() -> None:
    assert TrainConfig.from_dict({"lr": 1}).lr == 1.0


def test_labels_must_be_unique_and_non_empty() -> None:
    with pytest.raises(ValueError, match=r"^labels: .*unique"):
        ModelConfig(labels=("a", "a"))
    with pytest.raises(ValueError, match=r"^labels: .*non-empty"):
        ModelConfig(labels=("a", " "))


def test_a_model_needs_at_least_one_encoder() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ModelConfig(image_encoder="none", text_encoder="none")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"modality_dropout": 0.0}, False),
        ({"modality_dropout": 0.1}, True),
        ({"modality_dropout": 0.0, "image_encoder": "none"}, True),
        ({"modality_dropout": 0.0, "text_encoder": "none"}, True),
    ],
)
def test_supports_missing_modality(overrides: dict[str, Any], expected: bool) -> None:
    assert ModelConfig(**overrides).supports_missing_modality is expected


def test_batch_size_below_two_rows_per_process_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^batch_size: must be >= 8 .* got 7$"):
        TrainConfig(nproc=4, batch_size=7)


def test_batch_size_of_two_rows_per_process_is_accepted() -> None:
    assert TrainConfig(nproc=4, batch_size=8).batch_size == 8


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 3  # type: ignore[misc]
