"""Fixtures of the model tests: a demo dataset and a tiny trainable config."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion_testkit.factories import tiny_model_config
from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset, load_dataset
from model.demo_data import write_demo_dataset
from model.progress import Progress
from model.training import TrainResult, train


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo (sentiment) dataset with 100 training samples per label."""
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), n_per_class=100, seed=0)


@pytest.fixture(scope="session")
def demo_train(demo_root: Path) -> Dataset:
    """Training split of the demo dataset."""
    return load_dataset(demo_root)


@pytest.fixture(scope="session")
def demo_dev(demo_root: Path, demo_train: Dataset) -> Dataset:
    """Dev split of the demo dataset, labelled like the training split."""
    return load_dataset(demo_root, split="dev", labels=demo_train.labels)


@pytest.fixture(scope="session")
def xor_model_config() -> ModelConfig:
    """cnn + bow at 16 px with a concat head: learns the demo task in about a second on one core."""
    return tiny_model_config(
        labels=(), fusion="concat", image_size=16, hidden_dim=32, embed_dim=32, modality_dropout=0.0
    )


@pytest.fixture(scope="session")
def xor_train_config() -> TrainConfig:
    """Hyper-parameters under which xor_model_config reaches ~100% on the demo dev set in 10 epochs."""
    return TrainConfig(epochs=10, batch_size=16, lr=1e-2, warmup_ratio=0.0, patience=0)


@pytest.fixture(scope="session")
def progress_log() -> list[Progress]:
    """The progress reports of the xor_result run."""
    return []


@pytest.fixture(scope="session")
def xor_result(
    xor_model_config: ModelConfig,
    xor_train_config: TrainConfig,
    demo_train: Dataset,
    demo_dev: Dataset,
    progress_log: list[Progress],
) -> TrainResult:
    """One 10-epoch run shared by the tests that only read its outcome."""
    return train(xor_model_config, xor_train_config, demo_train, demo_dev, on_progress=progress_log.append)
