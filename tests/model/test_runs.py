"""Tests for model.runs: train and save once, and the run record read back from the checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from fusion_testkit.factories import build_tiny_model
from model.checkpoint import CheckpointError, save_checkpoint
from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset
from model.runs import load_run, train_and_save
from model.training import TrainingCancelled


@pytest.fixture
def two_epochs(xor_train_config: TrainConfig) -> TrainConfig:
    return dataclasses.replace(xor_train_config, epochs=2)


def test_a_saved_run_reads_back_with_its_history_and_best_epoch(
    xor_model_config: ModelConfig,
    two_epochs: TrainConfig,
    demo_train: Dataset,
    demo_dev: Dataset,
    tmp_path: Path,
) -> None:
    small = demo_train.subset(range(40))
    result, path = train_and_save(
        tmp_path / "run", xor_model_config, two_epochs, small, demo_dev, extra={"source": "test"}
    )
    assert path == tmp_path / "run"

    loaded, meta = load_run(path)

    assert (loaded.history, loaded.best_epoch, loaded.metrics) == (
        result.history,
        result.best_epoch,
        result.metrics,
    )
    assert meta["extra"]["source"] == "test" and meta["extra"]["val_samples"] == len(demo_dev)
    expected = result.model.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in loaded.model.state_dict().items())


def test_the_folder_can_be_named_once_training_ended(
    xor_model_config: ModelConfig, two_epochs: TrainConfig, demo_train: Dataset, tmp_path: Path
) -> None:
    named: list[Path] = []

    def next_folder() -> Path:
        named.append(tmp_path / f"v{len(named)}")
        return named[-1]

    _, path = train_and_save(next_folder, xor_model_config, two_epochs, demo_train.subset(range(40)))
    assert named == [path] and path is not None and path.is_dir()


def test_discard_drops_the_model_unsaved(
    xor_model_config: ModelConfig, two_epochs: TrainConfig, demo_train: Dataset, tmp_path: Path
) -> None:
    with pytest.raises(TrainingCancelled):
        train_and_save(
            tmp_path / "run", xor_model_config, two_epochs, demo_train.subset(range(40)), discard=lambda: True
        )
    assert not (tmp_path / "run").exists()


def test_an_existing_folder_is_a_checkpoint_error(
    xor_model_config: ModelConfig, two_epochs: TrainConfig, demo_train: Dataset, tmp_path: Path
) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match=r"could not save the model: .*already exists"):
        train_and_save(tmp_path / "run", xor_model_config, two_epochs, demo_train.subset(range(40)))


def test_a_checkpoint_without_a_run_record_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "bare", build_tiny_model(), metrics={}, dataset_fingerprint="x")
    with pytest.raises(CheckpointError, match="no training run recorded"):
        load_run(path)


def test_the_test_split_changes_nothing_that_is_decided(
    xor_model_config: ModelConfig,
    xor_train_config: TrainConfig,
    demo_train: Dataset,
    demo_dev: Dataset,
    tmp_path: Path,
) -> None:
    config = dataclasses.replace(xor_train_config, epochs=4, patience=1, schedule="constant")
    data = demo_train.subset(range(0, 200, 2))
    runs = [
        train_and_save(tmp_path / name, xor_model_config, config, data, test_set=test)[0]
        for name, test in (("a", demo_dev), ("b", demo_dev.subset(range(10))))
    ]

    first, second = runs
    assert (first.history, first.best_epoch, first.metrics) == (
        second.history,
        second.best_epoch,
        second.metrics,
    )
    state = second.model.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in first.model.state_dict().items())
    assert first.test_metrics is not None and second.test_metrics is not None
    assert first.test_metrics["fusion"]["per_class"]["negative"]["support"] == 25
    assert (
        second.test_metrics["fusion"]["per_class"]["negative"]["support"]
        + second.test_metrics["fusion"]["per_class"]["positive"]["support"]
        == 10
    )
    loaded, meta = load_run(tmp_path / "a")
    assert loaded.test_metrics == first.test_metrics and meta["metrics"]["test"] == first.test_metrics


def test_without_a_validation_set_a_stratified_slice_selects_the_epoch(
    xor_model_config: ModelConfig, two_epochs: TrainConfig, demo_train: Dataset, tmp_path: Path
) -> None:
    config = dataclasses.replace(two_epochs, val_fraction=0.25)
    result, path = train_and_save(tmp_path / "run", xor_model_config, config, demo_train.subset(range(80)))
    assert result.metrics_split == "val" and "val" in result.history[0]
    per_class = result.metrics["fusion"]["per_class"]
    assert {label: c["support"] for label, c in per_class.items()} == {"negative": 10, "positive": 10}
    assert path is not None and load_run(path)[1]["extra"]["val_samples"] == 20


def test_cross_validated_run_saves_one_model_trained_for_the_median_best_epoch(
    xor_model_config: ModelConfig,
    xor_train_config: TrainConfig,
    demo_train: Dataset,
    demo_dev: Dataset,
    tmp_path: Path,
) -> None:
    config = dataclasses.replace(xor_train_config, epochs=4, kfold=3)
    data = demo_train.subset(range(0, 200, 3))
    result, path = train_and_save(tmp_path / "cv", xor_model_config, config, data, test_set=demo_dev)

    assert result.cv is not None and len(result.cv["folds"]) == 3
    assert result.metrics_split == "cv" and result.best_epoch == result.cv["final_epochs"]
    assert len(result.history) == result.cv["final_epochs"]  # no early stopping in the final run
    assert result.metrics["fusion"]["accuracy"] == result.cv["mean"]["fusion"]["accuracy"]
    assert result.test_metrics is not None
    assert path is not None
    loaded, meta = load_run(path)
    assert loaded.cv == result.cv and loaded.metrics_split == "cv"
    assert (
        meta["train_config"]["epochs"] == result.cv["final_epochs"] and meta["train_config"]["patience"] == 0
    )
    assert meta["dataset_fingerprint"] == data.fingerprint


def test_cross_validation_refuses_a_validation_set(
    xor_model_config: ModelConfig,
    xor_train_config: TrainConfig,
    demo_train: Dataset,
    demo_dev: Dataset,
    tmp_path: Path,
) -> None:
    config = dataclasses.replace(xor_train_config, kfold=3)
    with pytest.raises(ValueError, match="validation"):
        train_and_save(tmp_path / "cv", xor_model_config, config, demo_train, demo_dev)
