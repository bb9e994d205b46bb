"""Stratified, seeded splits of a dataset: a validation slice, and k cross-validation folds."""

from __future__ import annotations

import random

from model.datasets import Dataset


def split_dataset(ds: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split into (train, val) with about `fraction` of each label in val (stratified, reproducible)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction: must be between 0 and 1, got {fraction}")
    rng = random.Random(seed)
    val: set[int] = set()
    for members in _members_by_label(ds).values():
        rng.shuffle(members)
        take = round(len(members) * fraction)
        if len(members) >= 2:
            take = min(max(take, 1), len(members) - 1)
        val.update(members[:take])
    if not val or len(val) == len(ds):
        raise ValueError(f"fraction: {fraction} leaves an empty split of {len(ds)} samples")
    return ds.subset(i for i in range(len(ds)) if i not in val), ds.subset(sorted(val))


def kfold_datasets(ds: Dataset, k: int, seed: int = 0) -> list[tuple[Dataset, Dataset]]:
    """k stratified (train, val) folds; every sample is in exactly one val fold."""
    if not 2 <= k <= len(ds):
        raise ValueError(f"kfold: must be between 2 and the number of samples ({len(ds)}), got {k}")
    rng = random.Random(seed)
    fold_of = [0] * len(ds)
    offset = 0
    for members in _members_by_label(ds).values():
        rng.shuffle(members)
        for position, index in enumerate(members):
            # Continue the round-robin across labels so that small labels do not all land in fold 0.
            fold_of[index] = (offset + position) % k
        offset += len(members)
    folds = []
    for fold in range(k):
        train = [i for i in range(len(ds)) if fold_of[i] != fold]
        val = [i for i in range(len(ds)) if fold_of[i] == fold]
        folds.append((ds.subset(train), ds.subset(val)))
    return folds


def _members_by_label(ds: Dataset) -> dict[str, list[int]]:
    members: dict[str, list[int]] = {}
    for i, sample in enumerate(ds.samples):
        members.setdefault(sample.label, []).append(i)
    return members
