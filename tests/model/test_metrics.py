"""Tests for model.metrics.classification_report."""

import math

import pytest
import torch

from model.metrics import classification_report

LABELS = ("neg", "neu", "pos")


def test_perfect_predictions_score_one() -> None:
    report = classification_report([0, 1, 2, 2], [0, 1, 2, 2], LABELS)
    assert report["accuracy"] == 1.0
    assert report["macro_f1"] == 1.0
    assert report["weighted_f1"] == 1.0


def test_confusion_matrix_rows_are_true_labels_and_columns_predictions() -> None:
    report = classification_report([0, 0, 2], [1, 1, 0], LABELS)
    assert report["confusion_matrix"] == [[0, 2, 0], [0, 0, 0], [1, 0, 0]]


def test_per_class_scores_match_hand_computation() -> None:
    # neg: 1 of 2 found, never wrongly predicted; neu: 1 found, 2 false alarms; pos: never predicted.
    report = classification_report([0, 0, 1, 2], [0, 1, 1, 1], LABELS)
    neg, neu, pos = (report["per_class"][label] for label in LABELS)
    assert (neg["precision"], neg["recall"], neg["support"]) == (1.0, 0.5, 2)
    assert neg["f1"] == pytest.approx(2 / 3)
    assert neu["precision"] == pytest.approx(1 / 3)
    assert neu["recall"] == 1.0
    assert neu["f1"] == pytest.approx(0.5)
    assert pos == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["accuracy"] == 0.5
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    assert report["weighted_f1"] == pytest.approx((2 * 2 / 3 + 0.5) / 4)


def test_accepts_tensors() -> None:
    report = classification_report(torch.tensor([1, 0]), torch.tensor([1, 1]), LABELS[:2])
    assert report["accuracy"] == 0.5


def test_empty_input_gives_zeros_not_nan() -> None:
    report = classification_report([], [], LABELS)
    assert not any(math.isnan(report[key]) for key in ("accuracy", "macro_f1", "weighted_f1"))
    assert report["confusion_matrix"] == [[0] * 3] * 3


def test_length_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="length"):
        classification_report([0, 1], [0], LABELS)


def test_index_outside_labels_is_rejected() -> None:
    with pytest.raises(ValueError, match="label indices"):
        classification_report([0, 3], [0, 1], LABELS)
