"""Tests for model.crossval: k-fold cross-validation of a tiny recipe on the demo data."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from model.config import ModelConfig, TrainConfig
from model.crossval import cross_validate
from model.datasets import Dataset


def test_cross_validate_reports_mean_and_std_over_folds(
    xor_model_config: ModelConfig, xor_train_config: TrainConfig, demo_train: Dataset
) -> None:
    config = dataclasses.replace(xor_train_config, epochs=1, kfold=3)
    folds_seen = set()
    summary = cross_validate(
        xor_model_config, config, demo_train.subset(range(60)), on_progress=lambda p: folds_seen.add(p.fold)
    )
    assert summary["k"] == 3 and len(summary["folds"]) == 3
    assert folds_seen == {1, 2, 3}
    accuracies = [fold["fusion"]["accuracy"] for fold in summary["folds"]]
    assert summary["mean"]["fusion"]["accuracy"] == pytest.approx(sum(accuracies) / 3)
    assert summary["std"]["fusion"]["accuracy"] == pytest.approx(
        torch.tensor(accuracies).std(unbiased=False).item()
    )
