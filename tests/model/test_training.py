"""Tests for model.training on the demo (sentiment) data with tiny encoders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset
from model.distributed import Ranks
from model.features import FeatureCache
from model.fusion import FusionClassifier
from model.prepared_data import batch_features, head_output, iter_batches, prepare_data
from model.progress import Progress
from model.training import TrainingCancelled, TrainResult, epoch_batches, train


def test_loss_falls(xor_result: TrainResult) -> None:
    losses = [epoch["loss"] for epoch in xor_result.history]
    assert losses[-1] < 0.5 * losses[0]


def test_fusion_beats_each_modality_alone(xor_result: TrainResult) -> None:
    metrics = xor_result.metrics
    assert metrics["fusion"]["accuracy"] >= 0.9
    # A third of the samples is neutral in each modality: alone it can be right on about 0.83 of them.
    single = max(metrics["image_only"]["accuracy"], metrics["text_only"]["accuracy"])
    assert single <= 0.92 and metrics["fusion"]["accuracy"] >= single + 0.05


def test_result_carries_labels_and_training_vocabulary(xor_result: TrainResult, demo_train: Dataset) -> None:
    assert xor_result.model.labels == demo_train.labels
    assert xor_result.model.vocab is not None
    assert {"happy", "sad"} <= set(xor_result.model.vocab.tokens)


def test_progress_reports_each_step_and_epoch(xor_result: TrainResult, progress_log: list[Progress]) -> None:
    training = [p for p in progress_log if p.stage == "training"]
    evaluating = [p for p in progress_log if p.stage == "evaluating"]
    assert len(evaluating) == len(xor_result.history) == 10
    assert len(training) == 10 * training[0].steps
    assert [p.fraction for p in training] == sorted(p.fraction for p in training)
    assert training[-1].fraction == pytest.approx(1.0)
    assert training[-1].eta_s == pytest.approx(0.0)
    assert evaluating[-1].metrics == xor_result.history[-1]["val"]
    assert not [p for p in progress_log if p.stage == "encoding"]  # nothing frozen, nothing to cache


def test_same_seed_gives_the_same_model(
    xor_model_config: ModelConfig, xor_train_config: TrainConfig, demo_train: Dataset
) -> None:
    config = dataclasses.replace(xor_train_config, epochs=1)
    small = demo_train.subset(range(40))
    first, second = (train(xor_model_config, config, small).model.state_dict() for _ in range(2))
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_should_stop_cancels_with_the_weights_so_far(
    xor_model_config: ModelConfig, xor_train_config: TrainConfig, demo_train: Dataset
) -> None:
    calls = []

    def stop_after_three_steps() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(TrainingCancelled) as info:
        train(xor_model_config, xor_train_config, demo_train, should_stop=stop_after_three_steps)
    assert len(calls) == 4
    assert info.value.result is not None and info.value.result.cancelled
    assert info.value.result.model.labels == demo_train.labels


def test_early_stopping_restores_the_best_epoch(
    xor_model_config: ModelConfig, xor_train_config: TrainConfig, demo_train: Dataset, demo_dev: Dataset
) -> None:
    # A constant learning rate makes "the first N epochs" identical whatever the planned epoch count.
    config = dataclasses.replace(xor_train_config, schedule="constant", patience=2, metric="accuracy")
    stopped = train(xor_model_config, config, demo_train, demo_dev)
    best = stopped.best_epoch
    assert len(stopped.history) == best + 2 < config.epochs
    assert stopped.metrics["fusion"]["accuracy"] == max(e["val"]["accuracy"] for e in stopped.history)
    replay = train(
        xor_model_config, dataclasses.replace(config, epochs=best, patience=0), demo_train, demo_dev
    )
    expected = replay.model.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in stopped.model.state_dict().items())


def test_keep_last_runs_every_epoch_and_keeps_the_last(
    xor_model_config: ModelConfig, xor_train_config: TrainConfig, demo_train: Dataset, demo_dev: Dataset
) -> None:
    # The recipe of test_early_stopping_restores_the_best_epoch, which stops two epochs after its best.
    config = dataclasses.replace(xor_train_config, schedule="constant", patience=2, keep="last")
    result = train(xor_model_config, config, demo_train, demo_dev)
    assert len(result.history) == config.epochs and result.best_epoch == config.epochs
    last = result.history[-1]["val"]
    assert {key: result.metrics["fusion"][key] for key in last} == last


def test_without_validation_set_the_last_epoch_is_kept(
    xor_model_config: ModelConfig, xor_train_config: TrainConfig, demo_train: Dataset
) -> None:
    config = dataclasses.replace(xor_train_config, epochs=2)
    result = train(xor_model_config, config, demo_train.subset(range(40)))
    assert result.best_epoch == 2
    assert result.metrics_split == "train"
    assert "val" not in result.history[-1]


def test_frozen_text_encoder_trains_on_cached_features(
    xor_train_config: TrainConfig, demo_train: Dataset, tmp_path: Path
) -> None:
    config = ModelConfig(image_encoder="none", text_encoder="minilm", hidden_dim=16, max_text_tokens=16)
    small = demo_train.subset(range(24))
    one_epoch = dataclasses.replace(xor_train_config, epochs=1, finetune="none")
    runs: list[list[str]] = []
    for _ in range(2):
        progress: list[Progress] = []
        train(config, one_epoch, small, cache=FeatureCache(tmp_path), on_progress=progress.append)
        runs.append([p.stage for p in progress])
    assert "encoding" in runs[0]
    assert "encoding" not in runs[1]


def test_finetune_text_trains_the_text_encoder_on_cached_image_features(
    xor_train_config: TrainConfig, demo_train: Dataset, tmp_path: Path
) -> None:
    config = ModelConfig(
        image_encoder="efficientnet_lite0",
        text_encoder="minilm",
        image_size=32,
        hidden_dim=16,
        max_text_tokens=16,
    )
    small = demo_train.subset(range(24))
    one_epoch = dataclasses.replace(
        xor_train_config, epochs=1, finetune="text", finetune_layers=0, encoder_lr=1e-3
    )
    cache = FeatureCache(tmp_path)
    untrained = FusionClassifier.build(dataclasses.replace(config, labels=small.labels))

    trained = train(config, one_epoch, small, cache=cache).model

    assert trained.text_encoder is not None and trained.image_encoder is not None
    assert not trained.text_encoder.frozen and trained.image_encoder.frozen
    before, after = untrained.state_dict(), trained.state_dict()
    changed = {key.split(".")[0] for key in after if not torch.equal(before[key], after[key])}
    assert "text_encoder" in changed and "image_encoder" not in changed
    assert [p.name for p in tmp_path.iterdir()] == [p.name for p in tmp_path.glob("image-*")]  # no text cache


def test_finetune_layers_train_only_the_text_encoders_top_layers_on_their_frozen_token_states(
    xor_train_config: TrainConfig, demo_train: Dataset, tmp_path: Path
) -> None:
    config = ModelConfig(image_encoder="none", text_encoder="minilm", hidden_dim=16, max_text_tokens=16)
    small = demo_train.subset(range(24))
    one_epoch = dataclasses.replace(
        xor_train_config, epochs=1, finetune="text", finetune_layers=1, encoder_lr=1e-3
    )
    untrained = FusionClassifier.build(dataclasses.replace(config, labels=small.labels))

    result = train(config, one_epoch, small, cache=FeatureCache(tmp_path))

    before, after = untrained.state_dict(), result.model.state_dict()
    changed = {key for key in after if not torch.equal(before[key], after[key])}
    text_changed = {key for key in changed if key.startswith("text_encoder.")}
    assert text_changed and all(key.startswith("text_encoder.encoder.layer.5.") for key in text_changed)
    assert result.metrics["fusion"] is not None


def test_a_warm_feature_cache_trains_the_same_model_as_a_cold_one(
    xor_train_config: TrainConfig, demo_train: Dataset, tmp_path: Path
) -> None:
    """Encoding images (cold cache only) must not shift the random draws of dropout that follow."""
    config = ModelConfig(
        image_encoder="efficientnet_lite0", text_encoder="none", image_size=32, hidden_dim=16
    )
    small = demo_train.subset(range(24))
    one_epoch = dataclasses.replace(xor_train_config, epochs=1)
    cold, warm = (train(config, one_epoch, small, cache=FeatureCache(tmp_path)).model for _ in range(2))
    cold_state, warm_state = cold.state_dict(), warm.state_dict()
    assert all(torch.equal(cold_state[key], warm_state[key]) for key in cold_state)


def test_every_ensemble_member_learns_the_task_on_its_own(
    xor_model_config: ModelConfig, xor_train_config: TrainConfig, demo_train: Dataset, demo_dev: Dataset
) -> None:
    config = dataclasses.replace(xor_model_config, members=3)
    model = train(config, xor_train_config, demo_train, demo_dev).model.eval()
    data = prepare_data(model, demo_dev)
    ((rows, pixels),) = iter_batches(model, data, [list(range(len(data)))], augment=False, num_workers=0)
    with torch.no_grad():
        out = head_output(model, *batch_features(model, data, rows, pixels), len(rows), "fusion")
    assert out.member_logits is not None
    for logits in out.member_logits:  # each member alone, not only their average
        assert (logits.argmax(-1) == data.labels).float().mean() >= 0.9
    assert not torch.allclose(out.member_logits[0], out.member_logits[1])


def test_a_tail_too_small_for_every_rank_joins_the_batch_before() -> None:
    assert [len(b) for b in epoch_batches(35, 16)] == [16, 16, 3]
    assert [len(b) for b in epoch_batches(35, 16, Ranks(rank=0, world_size=2))] == [16, 19]
