"""Tests for model.evaluation: the per-mode reports of a trained model."""

from __future__ import annotations

from model.datasets import Dataset
from model.evaluation import evaluate
from model.training import TrainResult


def test_evaluate_on_a_dataset_matches_the_final_metrics(xor_result: TrainResult, demo_dev: Dataset) -> None:
    assert evaluate(xor_result.model, demo_dev) == xor_result.metrics
