"""The paired fold comparison that bench.recipe_compare decides with."""

from __future__ import annotations

import pytest

from bench.recipe_compare import paired_difference


def test_a_small_gain_on_every_fold_is_better_despite_a_wide_spread_between_folds() -> None:
    base = [0.60, 0.70, 0.80, 0.65, 0.75]
    candidate = [b + d for b, d in zip(base, [0.010, 0.012, 0.008, 0.011, 0.009], strict=True)]
    diff = paired_difference(candidate, base)
    assert diff.mean == pytest.approx(0.010)
    assert diff.stderr == pytest.approx(0.00070711, rel=1e-4)  # stdev 0.0015811 / sqrt(5)
    assert (diff.up, diff.folds) == (5, 5)
    assert diff.better


def test_a_gain_that_changes_sign_between_folds_is_not_better() -> None:
    base = [0.70, 0.70, 0.70, 0.70]
    diff = paired_difference([0.74, 0.67, 0.73, 0.68], base)
    assert diff.mean == pytest.approx(0.005)
    assert diff.up == 2
    assert not diff.better


def test_folds_must_pair_up() -> None:
    with pytest.raises(ValueError, match="folds"):
        paired_difference([0.7, 0.8], [0.7, 0.8, 0.9])
    with pytest.raises(ValueError, match="folds"):
        paired_difference([0.7], [0.7])
