"""Tests for model.tables: the CLI's plain-text metric and cross-validation tables."""

from __future__ import annotations

from model.tables import cv_table, metrics_table

_REPORT = {"accuracy": 0.75, "macro_f1": 0.5, "weighted_f1": 0.625}


def test_metrics_table_has_a_row_per_mode_with_a_report() -> None:
    lines = metrics_table({"fusion": _REPORT, "image_only": None, "text_only": _REPORT}).splitlines()
    assert lines[0].split() == ["accuracy", "macro_f1", "weighted_f1"]
    assert [line.split()[0] for line in lines[1:]] == ["fusion", "text-only"]
    assert lines[1].split()[1:] == ["0.750", "0.500", "0.625"]


def test_cv_table_lists_every_fold_then_the_mean_and_std() -> None:
    std = {"accuracy": 0.05, "macro_f1": 0.0, "weighted_f1": 0.0}
    summary = {
        "k": 2,
        "best_epochs": [3, 5],
        "folds": [{"fusion": _REPORT}, {"fusion": _REPORT}],
        "mean": {"fusion": _REPORT, "image_only": None, "text_only": None},
        "std": {"fusion": std, "image_only": None, "text_only": None},
    }
    text = cv_table(summary)
    assert "2-fold cross-validation on held-out folds (best epochs [3, 5])" in text
    assert text.count("  fold ") == 2 and "accuracy 0.750 (0.050)" in text and "image-only" not in text
