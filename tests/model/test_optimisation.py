"""Tests for model.optimisation: class weights and learning-rate schedules."""

from __future__ import annotations

import itertools

import pytest
import torch

from model.optimisation import class_weights, lr_lambda


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
