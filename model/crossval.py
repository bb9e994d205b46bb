"""Stratified k-fold cross-validation of a training recipe: per-fold metrics with their mean and std."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from model.config import METRICS, MODES, ModelConfig, TrainConfig
from model.datasets import Dataset, kfold_datasets
from model.evaluation import scalar_metrics
from model.features import FeatureCache
from model.progress import Progress, ProgressCallback
from model.training import train


def cross_validate(
    model_config: ModelConfig,
    train_config: TrainConfig,
    dataset: Dataset,
    *,
    k: int | None = None,
    cache: FeatureCache | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Stratified k-fold training (k defaults to `train_config.kfold`); per-fold metrics with their mean and
    (population) std, per mode and scalar metric. Frozen features are encoded once for all folds."""
    k = k or train_config.kfold
    cache = cache or FeatureCache()
    folds: list[dict[str, Any]] = []
    for fold, (train_set, val_set) in enumerate(kfold_datasets(dataset, k, train_config.seed), start=1):

        def report(progress: Progress, fold: int = fold) -> None:
            if on_progress is not None:
                on_progress(replace(progress, fold=fold, folds=k))

        result = train(
            model_config,
            train_config,
            train_set,
            val_set,
            cache=cache,
            on_progress=report,
            should_stop=should_stop,
        )
        folds.append({mode: scalar_metrics(result.metrics.get(mode)) for mode in MODES})
    summary: dict = {"k": k, "folds": folds, "mean": {}, "std": {}}
    for mode in MODES:
        if folds[0][mode] is None:
            summary["mean"][mode] = summary["std"][mode] = None
            continue
        values = {key: [f[mode][key] for f in folds] for key in METRICS}
        summary["mean"][mode] = {key: statistics.fmean(v) for key, v in values.items()}
        summary["std"][mode] = {key: statistics.pstdev(v) for key, v in values.items()}
    return summary
