"""Tests for model.crossval: stratified folds, early stopping that never sees the held-out fold."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

import pytest

from model import crossval
from model.config import ModelConfig, TrainConfig
from model.crossval import cross_validate
from model.datasets import Dataset
from model.splits import kfold_datasets
from model.training import TrainResult


def test_folds_are_stratified_disjoint_and_cover_the_data(demo_train: Dataset) -> None:
    folds = kfold_datasets(demo_train, 5, seed=0)
    heldout = [{s.image for s in val.samples} for _, val in folds]

    assert sum(len(images) for images in heldout) == len(demo_train)
    assert set().union(*heldout) == {s.image for s in demo_train.samples}
    for (train, val), images in zip(folds, heldout, strict=True):
        assert images.isdisjoint(s.image for s in train.samples)
        assert len(train) + len(val) == len(demo_train)
        # 100 per label over 5 folds: 20 of each label in every held-out fold.
        assert val.label_counts() == {"negative": 20, "positive": 20}


def test_early_stopping_uses_a_slice_of_the_fold_and_never_the_heldout_fold(
    xor_model_config: ModelConfig,
    xor_train_config: TrainConfig,
    demo_train: Dataset,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = demo_train.subset(range(0, 200, 4))
    config = dataclasses.replace(xor_train_config, epochs=2, val_fraction=0.2)
    seen: list[tuple[set, set, int]] = []

    def spy(
        model_config: ModelConfig, train_config: TrainConfig, fit: Dataset, stopping: Dataset, **kw: Any
    ) -> TrainResult:
        seen.append(({s.image for s in fit.samples}, {s.image for s in stopping.samples}, train_config.seed))
        return real_train(model_config, train_config, fit, stopping, **kw)

    real_train = crossval.train
    monkeypatch.setattr(crossval, "train", spy)
    summary = cross_validate(xor_model_config, config, data, k=5)

    for (fit, stopping, _), (fold_train, heldout) in zip(seen, kfold_datasets(data, 5, 0), strict=True):
        heldout_images = {s.image for s in heldout.samples}
        assert stopping and stopping.isdisjoint(heldout_images) and fit.isdisjoint(heldout_images)
        assert fit | stopping == {s.image for s in fold_train.samples}
        assert len(stopping) == round(0.2 * len(fold_train))
    assert [fold["heldout_samples"] for fold in summary["folds"]] == [
        len(h) for _, h in kfold_datasets(data, 5, 0)
    ]
    # Each fold trains with a seed of its own, so the folds' spread includes the training noise.
    assert [seed for _, _, seed in seen] == [config.seed + i for i in range(5)]


def test_summary_has_every_fold_with_mean_std_and_per_class(
    xor_model_config: ModelConfig, xor_train_config: TrainConfig, demo_train: Dataset
) -> None:
    config = dataclasses.replace(xor_train_config, epochs=3, kfold=3)
    folds_seen = set()
    summary = cross_validate(
        xor_model_config,
        config,
        demo_train.subset(range(60)),
        on_progress=lambda p: folds_seen.add((p.fold, p.folds)),
    )
    assert summary["k"] == 3 and len(summary["folds"]) == 3
    assert folds_seen == {(1, 3), (2, 3), (3, 3)}
    accuracies = [fold["fusion"]["accuracy"] for fold in summary["folds"]]
    assert summary["mean"]["fusion"]["accuracy"] == pytest.approx(statistics.fmean(accuracies))
    assert summary["std"]["fusion"]["accuracy"] == pytest.approx(statistics.pstdev(accuracies))
    recalls = [fold["image_only"]["per_class"]["negative"]["recall"] for fold in summary["folds"]]
    assert summary["mean"]["image_only"]["per_class"]["negative"]["recall"] == pytest.approx(
        statistics.fmean(recalls)
    )
    assert summary["best_epochs"] == [fold["best_epoch"] for fold in summary["folds"]]
    assert summary["final_epochs"] == round(statistics.median(summary["best_epochs"]))
    assert crossval.pooled_confusion(summary) is not None
    assert sum(map(sum, crossval.pooled_confusion(summary) or [])) == 60  # every sample once
