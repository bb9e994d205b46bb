"""Classification metrics (accuracy, F1, confusion matrix) computed with torch, no sklearn."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def classification_report(
    y_true: Sequence[int] | torch.Tensor, y_pred: Sequence[int] | torch.Tensor, labels: Sequence[str]
) -> dict:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support and the confusion matrix.

    `y_true` and `y_pred` are label indices into `labels`; confusion_matrix[i][j] counts true i predicted j.
    Classes that are never predicted (or never present) get precision (or recall) 0.
    """
    true = torch.as_tensor(y_true, dtype=torch.long).flatten()
    pred = torch.as_tensor(y_pred, dtype=torch.long).flatten()
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {true.numel()} != {pred.numel()}")
    n = len(labels)
    if true.numel() and (min(true.min(), pred.min()) < 0 or max(true.max(), pred.max()) >= n):
        raise ValueError(f"label indices must be in [0, {n})")
    confusion = torch.bincount(true * n + pred, minlength=n * n).reshape(n, n).double()
    correct = confusion.diagonal()
    support = confusion.sum(dim=1)
    predicted = confusion.sum(dim=0)
    precision = _safe_divide(correct, predicted)
    recall = _safe_divide(correct, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    total = support.sum()
    return {
        "accuracy": float(correct.sum() / total) if total else 0.0,
        "macro_f1": float(f1.mean()) if n else 0.0,
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion.long().tolist(),
    }


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Elementwise division that yields 0 where the denominator is 0."""
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-12), torch.zeros_like(numerator))
