"""Training and evaluation of fusion classifiers: `train`, `train_one_epoch`, `evaluate`, `cross_validate`.

`train` is a plain function: it reports through an `on_progress` callback, checks `should_stop` every
step and prints nothing; it seeds torch's RNG for reproducibility. Frozen pretrained encoders run once
per sample through the feature cache, so training the head on their features takes seconds; encoders
that train (from scratch, or fine-tuned with `finetune="last"|"all"` at `encoder_lr`) see every batch.

Inside a torch.distributed process group (e.g. under torchrun, see `model.distributed`) `train` runs
data-parallel: each rank computes on its shard of every global batch of `batch_size` rows,
DistributedDataParallel averages the gradients, evaluation is sharded and its predictions gathered, so
every rank ends with the same weights, metrics and early-stopping decisions; only rank 0 reports progress.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.config import ModelConfig, TrainConfig
from model.datasets import Dataset, kfold_datasets
from model.device import autocast, resolve_device
from model.distributed import Ranks, all_reduce, broadcast_buffers, current_ranks, local_main_first, shard
from model.encoders import VOCAB_ENCODERS
from model.features import FeatureCache, Features, frozen_modalities
from model.fusion import FusionClassifier, FusionOutput
from model.loading import image_batches, index_batches, slice_inputs
from model.metrics import classification_report
from model.text import build_vocabulary

MODES = ("fusion", "image_only", "text_only")
_PRESENT = {"fusion": (True, True), "image_only": (True, False), "text_only": (False, True)}
_SCALARS = ("accuracy", "macro_f1", "weighted_f1")
_EVAL_BATCH = 256


@dataclass
class Progress:
    """A progress report: `fraction` (0..1) is of the current stage; fold/folds are set by cross_validate."""

    stage: str  # "encoding" | "training" | "evaluating"
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float | None = None
    metrics: dict | None = None
    eta_s: float | None = None
    fraction: float = 0.0
    fold: int = 0
    folds: int = 0


ProgressCallback = Callable[[Progress], None]


@dataclass
class TrainResult:
    """The trained model (best epoch's weights), per-epoch history and the final evaluation."""

    model: FusionClassifier
    history: list[dict]
    metrics: dict  # {"fusion"|"image_only"|"text_only": classification_report or None}
    best_epoch: int
    cancelled: bool = False
    metrics_split: str = "val"  # "train" when no validation set was given


class TrainingCancelled(Exception):
    """`should_stop()` turned true; `.result` holds the best weights so far when training had started."""

    def __init__(self, result: TrainResult | None = None) -> None:
        super().__init__("training cancelled")
        self.result = result


@dataclass
class PreparedData:
    """A dataset as tensors: labels, cached features of frozen encoders, inputs of the encoders that train."""

    labels: torch.Tensor
    features: Features = field(default_factory=Features)
    text_inputs: dict[str, torch.Tensor] | None = None  # pre-tokenized texts for a text encoder that trains
    image_paths: list[Path] | None = None  # decoded per batch for an image encoder that trains

    def __len__(self) -> int:
        return len(self.labels)


def prepare_data(
    model: FusionClassifier,
    dataset: Dataset,
    *,
    cache: FeatureCache | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    num_workers: int = 0,
) -> PreparedData:
    """Map labels to the model's order, fetch frozen features (via `cache`) and tokenize texts once."""
    index = {label: i for i, label in enumerate(model.labels)}
    unknown = sorted({s.label for s in dataset.samples} - index.keys())
    if unknown:
        raise ValueError(f"labels: dataset labels {unknown} are not among the model's {list(model.labels)}")
    frozen = frozen_modalities(model)
    features = Features()
    if frozen:
        cached = (cache or FeatureCache()).get_or_compute(
            model, dataset, on_progress, modalities=frozen, num_workers=num_workers
        )
        # Small enough ([N, D]) to live on the model's device for the whole run.
        device = _model_device(model)
        features = Features(*(f.to(device) if f is not None else None for f in (cached.image, cached.text)))
    trains_text = model.text_encoder is not None and "text" not in frozen
    trains_image = model.image_encoder is not None and "image" not in frozen
    return PreparedData(
        labels=torch.tensor([index[s.label] for s in dataset.samples], dtype=torch.long),
        features=features,
        text_inputs=model.tokenize([s.text for s in dataset.samples]) if trains_text else None,
        image_paths=[s.image for s in dataset.samples] if trains_image else None,
    )


def _model_device(model: FusionClassifier) -> torch.device:
    return next(model.parameters()).device


def _batches(
    model: FusionClassifier,
    data: PreparedData,
    batches: list[list[int]],
    *,
    augment: bool,
    num_workers: int,
) -> Iterator[tuple[list[int], torch.Tensor | None]]:
    """(indices, pixels or None) per batch; pixels only when the image encoder trains."""
    if data.image_paths is None:
        yield from ((batch, None) for batch in batches)
        return
    device = _model_device(model)
    pixels = image_batches(
        data.image_paths,
        model.config,
        batches,
        train=augment,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    yield from zip(batches, pixels, strict=True)


def _features(
    model: FusionClassifier, data: PreparedData, batch: list[int], pixels: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Image and text features of one batch: cached rows, or the encoder run on this batch's inputs."""
    device = _model_device(model)
    rows = torch.tensor(batch, dtype=torch.long, device=device)
    image = data.features.image[rows] if data.features.image is not None else None
    if pixels is not None:
        pixels = pixels.to(device, non_blocking=True)
        if device.type == "cuda":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        image = model.encode_image(pixels)
    text = data.features.text[rows] if data.features.text is not None else None
    if data.text_inputs is not None:
        inputs = slice_inputs(data.text_inputs, batch)
        text = model.encode_text({k: v.to(device, non_blocking=True) for k, v in inputs.items()})
    return image, text


def _head(
    model: FusionClassifier, image: torch.Tensor | None, text: torch.Tensor | None, n: int, mode: str
) -> FusionOutput:
    device = _model_device(model)
    image_present, text_present = _PRESENT[mode]
    return model.head(
        image,
        text,
        torch.full((n,), image_present, dtype=torch.bool, device=device),
        torch.full((n,), text_present, dtype=torch.bool, device=device),
    )


class BatchLogits(nn.Module):
    """The training forward pass of a batch (its features, then the fusion head) as one module call.

    DistributedDataParallel synchronises the gradients of what runs inside its wrapped module's forward.
    """

    def __init__(self, model: FusionClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, data: PreparedData, batch: list[int], pixels: torch.Tensor | None) -> torch.Tensor:
        """Fusion logits [len(batch), C] of rows `batch` of `data`."""
        image, text = _features(self.model, data, batch, pixels)
        return _head(self.model, image, text, len(batch), "fusion").logits


def epoch_batches(
    n: int, batch_size: int, ranks: Ranks | None = None, generator: torch.Generator | None = None
) -> list[list[int]]:
    """The global batches of an epoch; across ranks a tail too small to give each rank two rows (batch
    norm) joins the batch before it."""
    world = (ranks or Ranks()).world_size
    batches = index_batches(n, batch_size, generator)
    if len(batches) > 1 and len(batches[-1]) < 2 * world:
        batches[-2].extend(batches.pop())
    return batches


def train_one_epoch(
    model: FusionClassifier,
    data: PreparedData,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    *,
    batch_size: int,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float = 0.0,
    augment: bool = False,
    num_workers: int = 0,
    on_step: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    forward: nn.Module | None = None,
    ranks: Ranks | None = None,
) -> float:
    """One pass over `data` in shuffled batches; returns the mean loss. Raises TrainingCancelled on stop.

    Across `ranks` every rank computes on its shard of each batch through `forward` (a
    DistributedDataParallel-wrapped `BatchLogits(model)`); the mean loss is over every rank's rows.
    """
    ranks = ranks or Ranks()
    if forward is None:
        forward = BatchLogits(model)
    device = _model_device(model)
    model.train()
    batches = epoch_batches(len(data), batch_size, ranks, generator)
    shards = [shard(batch, ranks) for batch in batches]
    total, count = 0.0, 0
    for step, ((rows, pixels), batch) in enumerate(
        zip(_batches(model, data, shards, augment=augment, num_workers=num_workers), batches, strict=True),
        start=1,
    ):
        if should_stop is not None and should_stop():
            raise TrainingCancelled()
        targets = data.labels[rows].to(device)
        with autocast(device):
            logits = forward(data, rows, pixels)
        loss = loss_fn(logits.float(), targets)
        # DDP averages gradients over ranks; weighting each shard's mean by its share of the batch makes
        # that average the gradient of the whole batch's mean loss (exact for an unweighted loss).
        objective = loss * (len(rows) * ranks.world_size / len(batch))
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(objective).backward()
            scaler.unscale_(optimizer)
        else:
            objective.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += float(loss.detach()) * len(rows)
        count += len(rows)
        if on_step is not None:
            on_step(step, len(batches), total / count)
    broadcast_buffers(model, ranks)
    sums = all_reduce(torch.tensor([total, count], dtype=torch.float64, device=device), ranks)
    return float(sums[0] / sums[1].clamp(min=1))


@torch.inference_mode()
def evaluate(
    model: FusionClassifier,
    data: Dataset | PreparedData,
    *,
    cache: FeatureCache | None = None,
    modes: Sequence[str] = MODES,
    batch_size: int = _EVAL_BATCH,
    num_workers: int = 0,
    ranks: Ranks | None = None,
) -> dict[str, dict | None]:
    """A classification_report per mode: fusion, image_only and text_only (the head with the other modality
    marked missing); None for a mode whose modality the model has no encoder for.

    Across `ranks` each rank predicts its shard of the rows and all ranks get every prediction.
    """
    ranks = ranks or Ranks()
    if isinstance(data, Dataset):
        data = prepare_data(model, data, cache=cache, num_workers=num_workers)
    available = {
        "fusion": True,
        "image_only": model.image_encoder is not None,
        "text_only": model.text_encoder is not None,
    }
    active = [m for m in modes if available[m]]
    model.eval()
    device = _model_device(model)
    # -1 marks rows predicted elsewhere; a max over ranks then fills in every row.
    predictions = torch.full((len(active), len(data)), -1, dtype=torch.long, device=device)
    shards = [rows for rows in (shard(b, ranks) for b in index_batches(len(data), batch_size)) if rows]
    for rows, pixels in _batches(model, data, shards, augment=False, num_workers=num_workers):
        index = torch.tensor(rows, dtype=torch.long, device=device)
        with autocast(device):
            image, text = _features(model, data, rows, pixels)
            for i, mode in enumerate(active):
                predictions[i, index] = _head(model, image, text, len(rows), mode).logits.argmax(-1)
    gathered = dict(zip(active, all_reduce(predictions, ranks, op="max").cpu(), strict=True))
    return {
        m: classification_report(data.labels, gathered[m], model.labels) if m in active else None
        for m in modes
    }


def _lr_lambda(schedule: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to 0, x0.1 steps at 50% and 75%, or constant."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        if schedule == "step":
            return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
        return 1.0

    return factor


def _class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (mean 1 over present classes); absent classes get 0."""
    counts = torch.bincount(labels, minlength=n_classes).float()
    weights = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
    return weights


def _snapshot(model: FusionClassifier) -> dict[str, torch.Tensor]:
    """Copies of every tensor that training can change (frozen encoders are left out)."""
    frozen = tuple(f"{m}_encoder." for m in frozen_modalities(model))
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith(frozen)}


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset | None = None,
    *,
    cache: FeatureCache | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a FusionClassifier; early stopping on `train_config.metric` restores the best epoch's weights.

    Labels default to the training set's. Without `val_set` the last epoch is kept and the final
    metrics are measured on the training set (`metrics_split="train"`). In a process group every rank
    calls `train` with the same arguments (`batch_size` is the global batch); only rank 0 calls
    `on_progress`, and `should_stop` must answer alike on every rank (or stop the whole group instead).
    """
    ranks = current_ranks()
    emit = on_progress if on_progress is not None and ranks.is_main else (lambda progress: None)
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)  # weight init, dropout, augmentation, worker seeds
    config = model_config if model_config.labels else replace(model_config, labels=train_set.labels)
    vocab = None
    if config.text_encoder in VOCAB_ENCODERS:
        vocab = build_vocabulary((s.text for s in train_set.samples), config)
    model = FusionClassifier.build(config, vocab)
    model.set_finetune(train_config.finetune)
    model.to(device)
    trains_image = model.image_encoder is not None and not model.image_encoder.frozen
    if device.type == "cuda" and trains_image:
        model.to(memory_format=torch.channels_last)
    forward: nn.Module = BatchLogits(model)
    if ranks.distributed:
        # The initial weights are rank 0's, which DDP broadcasts. A shard whose rows all lost one
        # modality to modality dropout skips that modality's projection, so DDP must look for unused
        # parameters then.
        forward = nn.parallel.DistributedDataParallel(
            forward, find_unused_parameters=config.modality_dropout > 0
        )

    cache = cache or FeatureCache()
    epochs = train_config.epochs

    def encoding(done: int, total: int) -> None:
        if should_stop is not None and should_stop():
            raise TrainingCancelled()
        emit(Progress("encoding", 0, epochs, done, total, fraction=done / max(total, 1)))

    workers = train_config.num_workers
    with local_main_first(ranks):  # one rank per node encodes into a shared cache, the others read it
        train_data = prepare_data(model, train_set, cache=cache, on_progress=encoding, num_workers=workers)
        val_data = (
            prepare_data(model, val_set, cache=cache, on_progress=encoding, num_workers=workers)
            if val_set
            else None
        )
    # Seeded again for dropout and augmentation: encoding into a cold feature cache draws from the
    # global generator and a warm cache does not, and a run must not depend on the cache's state.
    # Distinct draws per rank.
    torch.manual_seed(train_config.seed + ranks.rank)

    batch_size = min(train_config.batch_size, len(train_data))
    # TrainConfig refuses a batch_size below 2 x nproc up front; left for here: a dataset smaller than
    # the batch, and a world of several nodes (nproc counts the processes of one).
    if ranks.distributed and batch_size < 2 * ranks.world_size:
        raise ValueError(
            f"batch_size: {batch_size} rows cannot give each of {ranks.world_size} processes two rows"
        )
    steps = len(epoch_batches(len(train_data), batch_size, ranks))
    total_steps = epochs * steps
    optimizer = torch.optim.AdamW(
        model.parameter_groups(train_config.lr, train_config.encoder_lr, train_config.weight_decay),
        fused=device.type == "cuda",
    )
    warmup = int(train_config.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(train_config.schedule, total_steps, warmup)
    )
    fp16 = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if fp16 else None
    weights = _class_weights(train_data.labels, len(config.labels)) if train_config.class_weighted else None
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None)
    generator = torch.Generator().manual_seed(train_config.seed)

    history: list[dict] = []
    best_score, best_epoch, best_state, since_best = -math.inf, 0, _snapshot(model), 0
    started, done_steps = time.monotonic(), 0

    def on_step(step: int, steps: int, loss: float) -> None:
        nonlocal done_steps
        done_steps += 1
        eta = (time.monotonic() - started) / done_steps * (total_steps - done_steps)
        emit(
            Progress(
                "training", epoch, epochs, step, steps, loss, eta_s=eta, fraction=done_steps / total_steps
            )
        )

    def partial_result() -> TrainResult:
        model.load_state_dict(best_state, strict=False)
        return TrainResult(model, history, {}, best_epoch, cancelled=True)

    for epoch in range(1, epochs + 1):
        try:
            loss = train_one_epoch(
                model,
                train_data,
                optimizer,
                loss_fn,
                batch_size=batch_size,
                generator=generator,
                scheduler=scheduler,
                scaler=scaler,
                grad_clip=train_config.grad_clip,
                augment=train_config.augment and trains_image,
                num_workers=workers,
                on_step=on_step,
                should_stop=should_stop,
                forward=forward,
                ranks=ranks,
            )
        except TrainingCancelled as exc:
            raise TrainingCancelled(partial_result()) from exc
        record: dict = {"epoch": epoch, "loss": loss}
        if val_data is None:
            best_epoch, best_state = epoch, _snapshot(model)
        else:
            report = evaluate(model, val_data, modes=("fusion",), num_workers=workers, ranks=ranks)["fusion"]
            assert report is not None
            record["val"] = {key: report[key] for key in _SCALARS}
            emit(Progress("evaluating", epoch, epochs, steps, steps, loss, record["val"], fraction=1.0))
            if report[train_config.metric] > best_score:
                best_score, best_epoch, best_state, since_best = (
                    report[train_config.metric],
                    epoch,
                    _snapshot(model),
                    0,
                )
            else:
                since_best += 1
        history.append(record)
        if train_config.patience and since_best >= train_config.patience:
            break

    model.load_state_dict(best_state, strict=False)
    metrics = evaluate(
        model, val_data if val_data is not None else train_data, num_workers=workers, ranks=ranks
    )
    return TrainResult(
        model, history, metrics, best_epoch, metrics_split="val" if val_data is not None else "train"
    )


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
        folds.append({mode: _scalars(result.metrics.get(mode)) for mode in MODES})
    summary: dict = {"k": k, "folds": folds, "mean": {}, "std": {}}
    for mode in MODES:
        if folds[0][mode] is None:
            summary["mean"][mode] = summary["std"][mode] = None
            continue
        values = {key: [f[mode][key] for f in folds] for key in _SCALARS}
        summary["mean"][mode] = {key: statistics.fmean(v) for key, v in values.items()}
        summary["std"][mode] = {key: statistics.pstdev(v) for key, v in values.items()}
    return summary


def _scalars(report: dict | None) -> dict[str, float] | None:
    return {key: report[key] for key in _SCALARS} if report is not None else None
