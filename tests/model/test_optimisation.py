"""Tests for model.optimisation: the loss, class weights and learning-rate schedules."""

from __future__ import annotations

import itertools

import pytest
import torch

from fusion_testkit.factories import build_tiny_model
from model.config import TrainConfig
from model.optimisation import class_weights, lr_lambda, make_optimisation


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_spreads_the_target_over_every_class(smoothing: float) -> None:
    model = build_tiny_model(labels=("a", "b", "c"))
    labels = torch.tensor([0, 1, 2, 0])
    loss_fn = make_optimisation(model, TrainConfig(label_smoothing=smoothing), labels, 10).loss_fn
    logits = torch.tensor([[2.0, 0.5, -1.0]])
    log_p = logits.log_softmax(dim=1)[0]
    # The target puts 1 - s + s/3 on the label and s/3 on each other class.
    expected = -((1 - smoothing) * log_p[0] + smoothing * log_p.mean())
    assert float(loss_fn(logits, torch.tensor([0]))) == pytest.approx(float(expected), rel=1e-6)


def test_class_weights_are_inverse_frequency() -> None:
    weights = class_weights(torch.tensor([0, 0, 0, 1]), 3)
    assert weights[1] == pytest.approx(3 * weights[0])
    assert weights[2] == 0.0


@pytest.mark.parametrize("schedule", ["cosine", "step", "constant"])
def test_schedules_warm_up_linearly_then_never_increase(schedule: str) -> None:
    factor = lr_lambda(schedule, total_steps=100, warmup_steps=10)
    values = [factor(step) for step in range(100)]
    assert values[0] == pytest.approx(0.1)
    assert values[9] == pytest.approx(1.0)
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(values[9:]))
    assert (values[-1] < 0.05) == (schedule != "constant")
