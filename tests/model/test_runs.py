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
