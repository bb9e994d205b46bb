"""Tests for model.splits: the stratified validation slice and the k cross-validation folds."""

from __future__ import annotations

import pytest

from model.datasets import Dataset
from model.splits import kfold_datasets, split_dataset


def test_split_is_stratified_disjoint_and_reproducible(demo_train: Dataset) -> None:
    train, val = split_dataset(demo_train, 0.25, seed=3)
    assert val.label_counts() == {label: 25 for label in demo_train.labels}
    assert {s.location for s in train}.isdisjoint({s.location for s in val})
    assert len(train) + len(val) == len(demo_train)
    assert split_dataset(demo_train, 0.25, seed=3)[1].samples == val.samples
    assert split_dataset(demo_train, 0.25, seed=4)[1].samples != val.samples
    assert val.fingerprint not in (demo_train.fingerprint, train.fingerprint)


def test_split_rejects_fraction_outside_zero_one(demo_train: Dataset) -> None:
    with pytest.raises(ValueError, match="fraction"):
        split_dataset(demo_train, 1.0, seed=0)


def test_kfold_puts_every_sample_in_one_validation_fold(demo_train: Dataset) -> None:
    folds = kfold_datasets(demo_train, 4, seed=0)
    held_out = [s.location for _, val in folds for s in val]
    assert sorted(held_out) == sorted(s.location for s in demo_train)
    assert all(val.label_counts() == {label: 25 for label in demo_train.labels} for _, val in folds)
    for train, val in folds:
        assert {s.location for s in train}.isdisjoint({s.location for s in val})
        assert len(train) + len(val) == len(demo_train)
