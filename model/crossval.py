"""Stratified k-fold cross-validation of a training recipe, measured on folds it never selects on.

Each fold trains on the other k-1 folds, early-stopping on a stratified, seeded slice of them
(`TrainConfig.val_fraction`); the held-out fold is only measured. Fold i (from 1) trains with seed
`seed + i - 1`: folds that shared one seed would share its initialisation, so that one lucky or unlucky
draw moved every fold alike and the spread over folds understated the recipe's own noise. Frozen features
are encoded once for all folds (the feature cache is shared). The summary holds every fold's reports and
best epoch, and per mode the mean and (population) std of the scalar metrics and of per-class precision,
recall and F1.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from model.config import METRICS, MODES, ModelConfig, TrainConfig
from model.datasets import Dataset
from model.evaluation import evaluate
from model.features import FeatureCache
from model.progress import Progress, ProgressCallback
from model.splits import kfold_datasets, split_dataset
from model.training import train

_PER_CLASS = ("precision", "recall", "f1")


def cross_validate(
    model_config: ModelConfig,
    train_config: TrainConfig,
    dataset: Dataset,
    *,
    k: int | None = None,
    cache: FeatureCache | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train on k stratified folds (k defaults to `train_config.kfold`) and summarise the held-out reports.

    Returns `{"k", "folds": [{"best_epoch", "history", "train_samples", "heldout_samples", <mode>:
    report}], "mean": {mode: summary}, "std": {mode: summary}, "best_epochs", "final_epochs"}`, a mode
    None where the model has no encoder for it; `final_epochs` is the median best epoch (rounded, >= 1).
    """
    k = k or train_config.kfold
    cache = cache or FeatureCache()
    folds: list[dict[str, Any]] = []
    for fold, (fold_train, heldout) in enumerate(kfold_datasets(dataset, k, train_config.seed), start=1):

        def report(progress: Progress, fold: int = fold) -> None:
            if on_progress is not None:
                on_progress(replace(progress, fold=fold, folds=k))

        fold_config = replace(train_config, seed=train_config.seed + fold - 1)
        fit, stopping = split_dataset(fold_train, fold_config.val_fraction, fold_config.seed)
        result = train(
            model_config,
            fold_config,
            fit,
            stopping,
            cache=cache,
            on_progress=report,
            should_stop=should_stop,
        )
        reports = evaluate(result.model, heldout, cache=cache, num_workers=fold_config.num_workers)
        folds.append(
            {
                "best_epoch": result.best_epoch,
                "history": result.history,
                "train_samples": len(fit),
                "heldout_samples": len(heldout),
                **reports,
            }
        )
    best_epochs = [fold["best_epoch"] for fold in folds]
    return {
        "k": k,
        "folds": folds,
        "mean": {mode: _over_folds(folds, mode, statistics.fmean) for mode in MODES},
        "std": {mode: _over_folds(folds, mode, statistics.pstdev) for mode in MODES},
        "best_epochs": best_epochs,
        "final_epochs": max(1, round(statistics.median(best_epochs))),
    }


def _over_folds(
    folds: list[dict[str, Any]], mode: str, reduce: Callable[[list[float]], float]
) -> dict[str, Any] | None:
    """`reduce` (mean or std) over the folds of each scalar metric and per-class precision/recall/F1."""
    reports = [fold[mode] for fold in folds]
    if any(report is None for report in reports):
        return None
    out: dict[str, Any] = {key: reduce([report[key] for report in reports]) for key in METRICS}
    out["per_class"] = {
        label: {key: reduce([report["per_class"][label][key] for report in reports]) for key in _PER_CLASS}
        for label in reports[0]["per_class"]
    }
    return out


def pooled_confusion(summary: dict[str, Any], mode: str = "fusion") -> list[list[int]] | None:
    """The held-out folds' confusion matrices summed: every sample of the data counted once."""
    matrices = [fold[mode]["confusion_matrix"] for fold in summary["folds"] if fold.get(mode) is not None]
    if not matrices:
        return None
    return [[sum(cells) for cells in zip(*rows, strict=True)] for rows in zip(*matrices, strict=True)]
