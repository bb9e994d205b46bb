"""A training run end to end: train, then save the checkpoint with the run's record (history, best epoch).

The CLI, the service's worker and the demo bootstrap all train and save through `train_and_save`; the
keys of the run record in a checkpoint's `extra` are written by `save_run` and read back by `load_run`
(the worker reads the checkpoint that `python -m model train` wrote under torchrun). Activating a saved
version is the service's business.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset
from model.distributed import current_ranks
from model.features import FeatureCache
from model.progress import ProgressCallback
from model.training import TrainingCancelled, TrainResult, train

_HISTORY = "history"
_BEST_EPOCH = "best_epoch"
_VAL_SAMPLES = "val_samples"


class Trainer(Protocol):
    """`model.training.train`'s signature: what `train_and_save` trains with."""

    def __call__(
        self,
        model_config: ModelConfig,
        train_config: TrainConfig,
        train_set: Dataset,
        val_set: Dataset | None = None,
        *,
        cache: FeatureCache | None = None,
        on_progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainResult:
        """Train and return the result."""
        ...


def train_and_save(
    out: Path | Callable[[], Path],
    model_config: ModelConfig,
    train_config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset | None = None,
    *,
    cache: FeatureCache | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    discard: Callable[[], bool] | None = None,
    extra: dict[str, Any] | None = None,
    trainer: Trainer = train,
) -> tuple[TrainResult, Path | None]:
    """Train, then save the checkpoint to `out` (or the folder `out()` names once training ended).

    `discard()`, asked once training ended, drops the model unsaved (TrainingCancelled). In a process
    group only rank 0 saves: the path is None on the other ranks. A failed save is a CheckpointError.
    """
    result = trainer(
        model_config,
        train_config,
        train_set,
        val_set,
        cache=cache,
        on_progress=on_progress,
        should_stop=should_stop,
    )
    if discard is not None and discard():
        raise TrainingCancelled()
    if not current_ranks().is_main:
        return result, None
    path = out if isinstance(out, Path) else out()
    val_samples = len(val_set) if val_set is not None else 0
    saved = save_run(
        path, result, train_set=train_set, train_config=train_config, val_samples=val_samples, extra=extra
    )
    return result, saved


def save_run(
    path: Path,
    result: TrainResult,
    *,
    train_set: Dataset,
    train_config: TrainConfig,
    val_samples: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the trained model, its metrics and the run record (plus `extra`) as a checkpoint at `path`."""
    from model.checkpoint import CheckpointError, save_checkpoint

    record = {_BEST_EPOCH: result.best_epoch, _HISTORY: result.history, _VAL_SAMPLES: val_samples}
    try:
        return save_checkpoint(
            path,
            result.model,
            metrics=result.metrics,
            dataset_fingerprint=train_set.fingerprint,
            train_config=train_config,
            extra={**record, **(extra or {})},
        )
    except (OSError, CheckpointError) as exc:
        raise CheckpointError(f"could not save the model: {exc}") from exc


def load_run(path: Path) -> tuple[TrainResult, dict[str, Any]]:
    """The run a `save_run` checkpoint holds, and the checkpoint's metadata. CheckpointError if unusable."""
    from model.checkpoint import CheckpointError, load_checkpoint

    model, meta = load_checkpoint(path)
    extra = meta["extra"]
    if not isinstance(extra.get(_HISTORY), list) or not isinstance(extra.get(_BEST_EPOCH), int):
        raise CheckpointError(f"{path}: no training run recorded (history, best_epoch)")
    return TrainResult(model, extra[_HISTORY], meta["metrics"], extra[_BEST_EPOCH]), meta
