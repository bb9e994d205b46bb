"""The paired fold comparison that bench.recipe_compare decides with."""

from __future__ import annotations

from typing import Any, cast

import pytest

from bench import recipe_compare
from bench.recipe_compare import fold_scores, paired_difference


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


def test_repeats_from_a_later_first_repeat_train_on_new_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    seeds: list[int] = []

    def fake_cross_validate(model_config: Any, train_config: Any, data: Any, *, k: int, cache: Any) -> dict:
        seeds.append(train_config.seed)
        score = {"accuracy": 0.5, "weighted_f1": 0.4, "macro_f1": 0.3}
        return {"folds": [{"fusion": score}] * k}

    monkeypatch.setattr(recipe_compare, "cross_validate", fake_cross_validate)
    scores = fold_scores("epochs=3", cast(Any, None), 5, range(1, 3), cast(Any, None))

    assert seeds == [5, 10]  # repeat r folds with seed r x k; repeat 0 (seed 0) is not run again
    assert scores["accuracy"] == [0.5] * 10
