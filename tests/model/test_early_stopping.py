"""Tests for model.early_stopping: best weights by the metric, patience, no validation set."""

from __future__ import annotations

import torch

from fusion_testkit.factories import build_tiny_model
from model.early_stopping import EarlyStopping


def test_the_best_epochs_weights_come_back_and_patience_stops() -> None:
    model = build_tiny_model()
    stopping = EarlyStopping(model, "accuracy", patience=2)
    stopping.update(1, {"accuracy": 0.6})
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    stopping.update(2, {"accuracy": 0.6})  # a tie is no improvement
    assert not stopping.should_stop
    stopping.update(3, {"accuracy": 0.5})

    assert stopping.should_stop and stopping.best_epoch == 1 and stopping.best_score == 0.6
    restored = stopping.restore_best().state_dict()
    assert all(torch.equal(restored[key], value) for key, value in best.items())


def test_without_validation_every_epoch_is_the_best_and_nothing_stops() -> None:
    stopping = EarlyStopping(build_tiny_model(), "accuracy", patience=1)
    for epoch in (1, 2, 3):
        stopping.update(epoch, None)
    assert stopping.best_epoch == 3 and not stopping.should_stop


def test_keep_last_keeps_the_last_epoch_whatever_the_metric_says() -> None:
    model = build_tiny_model()
    stopping = EarlyStopping(model, "accuracy", patience=1, keep="last")
    stopping.update(1, {"accuracy": 0.9})
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    last = {k: v.clone() for k, v in model.state_dict().items()}
    stopping.update(2, {"accuracy": 0.5})
    stopping.update(3, {"accuracy": 0.4})  # two epochs worse than the first: patience 1 would have stopped

    assert stopping.best_epoch == 3 and not stopping.should_stop
    restored = stopping.restore_best().state_dict()
    assert all(torch.equal(restored[key], value) for key, value in last.items())
