"""A training run end to end: train, measure on a test split, save the checkpoint with the run's record.

The CLI, the service's worker and the demo bootstrap all train and save through `train_and_save`; the
keys of the run record in a checkpoint's `extra` are written by `save_run` and read back by `load_run`
(the worker reads the checkpoint that `python -m model train` wrote under torchrun). Activating a saved
version is the service's business.

Split roles: the validation split (given, or a stratified seeded slice of the training data) selects the
epoch; the test split is measured once, on the selected model, and recorded apart (`metrics["test"]`).
With `TrainConfig.kfold` = k the recipe is cross-validated first (`model.crossval`), then one model is
trained on all the data for the folds' median best epoch; its recorded mode reports are the CV means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.config import MODES, ModelConfig, TrainConfig
from model.datasets import Dataset
from model.distributed import current_ranks
from model.features import FeatureCache
from model.progress import ProgressCallback
from model.splits import split_dataset
from model.training import TrainingCancelled, TrainResult, train

_HISTORY = "history"
_BEST_EPOCH = "best_epoch"
_VAL_SAMPLES = "val_samples"
_METRICS_SPLIT = "metrics_split"
# Keys of a checkpoint's metrics beside the per-mode reports.
_TEST = "test"
_CV = "cv"


# What `train_and_save` trains with: called as `model.training.train` is (the worker's torchrun trainer).
Trainer = Callable[..., TrainResult]


def train_and_save(
    out: Path | Callable[[], Path],
    model_config: ModelConfig,
    train_config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset | None = None,
    *,
    test_set: Dataset | None = None,
    cache: FeatureCache | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    discard: Callable[[], bool] | None = None,
    extra: dict[str, Any] | None = None,
    trainer: Trainer = train,
) -> tuple[TrainResult, Path | None]:
    """Train (cross-validated first when `train_config.kfold`), then save to `out` (or the folder `out()`
    names once training ended).

    Without `val_set` a stratified `train_config.val_fraction` slice of `train_set` is held out for early
    stopping. `test_set` is evaluated on the selected model only. `discard()`, asked once training
    ended, drops the model unsaved (TrainingCancelled). In a process group only rank 0 measures the test
    split and saves: the path is None on the other ranks. A failed save is a CheckpointError.
    """
    cache = cache or FeatureCache()
    if train_config.kfold:
        if val_set is not None:
            raise ValueError("validation: cross-validation holds out its own slices; give no validation set")
        result = _cross_validated(
            model_config, train_config, train_set, cache, on_progress, should_stop, trainer
        )
        val_samples = 0
    else:
        if val_set is None:
            train_set, val_set = split_dataset(train_set, train_config.val_fraction, train_config.seed)
        result = trainer(
            model_config,
            train_config,
            train_set,
            val_set,
            cache=cache,
            on_progress=on_progress,
            should_stop=should_stop,
        )
        val_samples = len(val_set)
    if discard is not None and discard():
        raise TrainingCancelled()
    if not current_ranks().is_main:
        return result, None
    if test_set is not None:
        from model.evaluation import evaluate

        result.test_metrics = evaluate(
            result.model, test_set, cache=cache, num_workers=train_config.num_workers
        )
    path = out if isinstance(out, Path) else out()
    config = (
        train_config
        if result.cv is None
        else replace(train_config, epochs=result.cv["final_epochs"], patience=0)
    )
    saved = save_run(
        path, result, train_set=train_set, train_config=config, val_samples=val_samples, extra=extra
    )
    return result, saved


def _cross_validated(
    model_config: ModelConfig,
    train_config: TrainConfig,
    dataset: Dataset,
    cache: FeatureCache,
    on_progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None,
    trainer: Trainer,
) -> TrainResult:
    """k-fold CV, then one model on all of `dataset` for the median best epoch (no early stopping)."""
    from model.crossval import cross_validate, pooled_confusion

    summary = cross_validate(
        model_config, train_config, dataset, cache=cache, on_progress=on_progress, should_stop=should_stop
    )
    final = replace(train_config, epochs=summary["final_epochs"], patience=0)
    result = trainer(
        model_config, final, dataset, None, cache=cache, on_progress=on_progress, should_stop=should_stop
    )
    # What the recipe scores on data it did not select on: the mean over the held-out folds.
    estimate: dict[str, Any] = {mode: summary["mean"][mode] for mode in MODES}
    if estimate["fusion"] is not None:
        estimate["fusion"] = {**estimate["fusion"], "confusion_matrix": pooled_confusion(summary)}
    return replace(result, metrics=estimate, metrics_split="cv", cv=summary)


def save_run(
    path: Path,
    result: TrainResult,
    *,
    train_set: Dataset,
    train_config: TrainConfig,
    val_samples: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the trained model, its metrics (test and CV apart) and the run record as a checkpoint."""
    from safetensors import SafetensorError

    from model.checkpoint import CheckpointError, save_checkpoint

    record = {
        _BEST_EPOCH: result.best_epoch,
        _HISTORY: result.history,
        _VAL_SAMPLES: val_samples,
        _METRICS_SPLIT: result.metrics_split,
    }
    metrics = {**result.metrics}
    if result.test_metrics is not None:
        metrics[_TEST] = result.test_metrics
    if result.cv is not None:
        metrics[_CV] = result.cv
    try:
        return save_checkpoint(
            path,
            result.model,
            metrics=metrics,
            dataset_fingerprint=train_set.fingerprint,
            train_config=train_config,
            extra={**record, **(extra or {})},
        )
    # A full disk under save_file is a SafetensorError ("... No space left on device (os error 28)").
    except (OSError, SafetensorError, CheckpointError) as exc:
        raise CheckpointError(f"could not save the model: {exc}") from exc


def load_run(path: Path) -> tuple[TrainResult, dict[str, Any]]:
    """The run a `save_run` checkpoint holds, and the checkpoint's metadata. CheckpointError if unusable."""
    from model.checkpoint import CheckpointError, load_checkpoint

    model, meta = load_checkpoint(path)
    extra = meta["extra"]
    if not isinstance(extra.get(_HISTORY), list) or not isinstance(extra.get(_BEST_EPOCH), int):
        raise CheckpointError(f"{path}: no training run recorded (history, best_epoch)")
    metrics = {**meta["metrics"]}
    test, cv = metrics.pop(_TEST, None), metrics.pop(_CV, None)
    split = extra.get(_METRICS_SPLIT, "val")
    result = TrainResult(model, extra[_HISTORY], metrics, extra[_BEST_EPOCH], metrics_split=split)
    return replace(result, test_metrics=test, cv=cv), meta
