"""Training of fusion classifiers: `train`, with `build_model`, `train_one_epoch` and `EarlyStopping`.

`train` is a plain function: it reports through an `on_progress` callback, checks `should_stop` every
step and prints nothing; it seeds torch's RNG for reproducibility. Frozen pretrained encoders run once
per sample through the feature cache, so training the head on their features takes seconds; encoders
that train (from scratch, or fine-tuned with `finetune="last"|"all"|"text"` at `encoder_lr`) see every batch.
Evaluation is `model.evaluation`, cross-validation `model.crossval`, the optimiser `model.optimisation`.

Inside a torch.distributed process group (e.g. under torchrun, see `model.distributed`) `train` runs
data-parallel: each rank computes on its shard of every global batch of `batch_size` rows,
DistributedDataParallel averages the gradients, evaluation is sharded and its predictions gathered, so
every rank ends with the same weights, metrics and early-stopping decisions; only rank 0 reports progress.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from model.config import METRICS, ModelConfig, TrainConfig, resolve_image_tags
from model.datasets import Dataset
from model.device import autocast, resolve_device
from model.distributed import Ranks, all_reduce, broadcast_buffers, current_ranks, local_main_first, shard
from model.early_stopping import EarlyStopping
from model.encoders import VOCAB_ENCODERS
from model.evaluation import evaluate
from model.features import FeatureCache
from model.fusion import FusionClassifier
from model.loading import index_batches
from model.optimisation import Optimisation, make_optimisation
from model.prepared_data import (
    PreparedData,
    batch_features,
    head_output,
    iter_batches,
    model_device,
    prepare_data,
)
from model.progress import Progress, ProgressCallback
from model.text import build_vocabulary


@dataclass
class TrainResult:
    """The trained model (best epoch's weights), per-epoch history and the final evaluation."""

    model: FusionClassifier
    history: list[dict]
    metrics: dict  # {"fusion"|"image_only"|"text_only": classification_report or None}
    best_epoch: int
    cancelled: bool = False
    metrics_split: str = "val"  # "train" when no validation set was given, "cv": cross-validation means
    test_metrics: dict | None = None  # reports on a test split, never used for any decision
    cv: dict | None = None  # the cross-validation summary (model.crossval) the run's epochs came from


class TrainingCancelled(Exception):
    """`should_stop()` turned true; `.result` holds the best weights so far when training had started."""

    def __init__(self, result: TrainResult | None = None) -> None:
        super().__init__("training cancelled")
        self.result = result


class BatchLogits(nn.Module):
    """The training forward pass of a batch (its features, then the fusion head) as one module call.

    DistributedDataParallel synchronises the gradients of what runs inside its wrapped module's forward.
    """

    def __init__(self, model: FusionClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, data: PreparedData, batch: list[int], pixels: torch.Tensor | None) -> torch.Tensor:
        """Each ensemble member's fusion logits [members, len(batch), C] of rows `batch` of `data`."""
        image, text = batch_features(self.model, data, batch, pixels)
        out = head_output(self.model, image, text, len(batch), "fusion")
        return out.member_logits if out.member_logits is not None else out.logits.unsqueeze(0)


def build_model(
    model_config: ModelConfig, train_config: TrainConfig, train_set: Dataset, ranks: Ranks
) -> tuple[FusionClassifier, nn.Module]:
    """The model to train, on its device (labels and vocabulary from `train_set` unless the config has
    labels), and the module a training step calls: `BatchLogits`, DDP-wrapped in a process group."""
    device = resolve_device(train_config.device)
    config = resolve_image_tags(model_config, train_config)
    config = config if config.labels else replace(config, labels=train_set.labels)
    vocab = None
    if config.text_encoder in VOCAB_ENCODERS:
        vocab = build_vocabulary((s.text for s in train_set.samples), config)
    model = FusionClassifier.build(config, vocab)
    model.set_finetune(train_config.finetune, train_config.finetune_layers)
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
    return model, forward


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
    optimisation: Optimisation,
    *,
    batch_size: int,
    generator: torch.Generator,
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
    optimizer, scaler = optimisation.optimizer, optimisation.scaler
    device = model_device(model)
    model.train()
    batches = epoch_batches(len(data), batch_size, ranks, generator)
    shards = [shard(batch, ranks) for batch in batches]
    total, count = 0.0, 0
    for step, ((rows, pixels), batch) in enumerate(
        zip(
            iter_batches(model, data, shards, augment=augment, num_workers=num_workers), batches, strict=True
        ),
        start=1,
    ):
        if should_stop is not None and should_stop():
            raise TrainingCancelled()
        targets = data.labels[rows].to(device)
        with autocast(device):
            member_logits = forward(data, rows, pixels)
        # Each member fits the labels on its own (not their average), so they stay an ensemble.
        loss = torch.stack([optimisation.loss_fn(logits.float(), targets) for logits in member_logits]).mean()
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
        optimisation.scheduler.step()
        total += float(loss.detach()) * len(rows)
        count += len(rows)
        if on_step is not None:
            on_step(step, len(batches), total / count)
    broadcast_buffers(model, ranks)
    sums = all_reduce(torch.tensor([total, count], dtype=torch.float64, device=device), ranks)
    return float(sums[0] / sums[1].clamp(min=1))


class _Reporter:
    """`train`'s progress reports (rank 0 only) and its stop check while encoding."""

    def __init__(self, emit: ProgressCallback, should_stop: Callable[[], bool] | None, epochs: int) -> None:
        self.emit = emit
        self.should_stop = should_stop
        self.epochs = epochs
        self.total_steps = 0
        self._done_steps = 0
        self._started = time.monotonic()

    def encoding(self, done: int, total: int) -> None:
        """Feature-cache progress; raises TrainingCancelled on stop."""
        if self.should_stop is not None and self.should_stop():
            raise TrainingCancelled()
        self.emit(Progress("encoding", 0, self.epochs, done, total, fraction=done / max(total, 1)))

    def start_training(self, total_steps: int) -> None:
        """Training begins now: the ETA counts from here."""
        self.total_steps, self._done_steps, self._started = total_steps, 0, time.monotonic()

    def step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        """One optimiser step done."""
        self._done_steps += 1
        eta = (time.monotonic() - self._started) / self._done_steps * (self.total_steps - self._done_steps)
        fraction = self._done_steps / self.total_steps
        self.emit(Progress("training", epoch, self.epochs, step, steps, loss, eta_s=eta, fraction=fraction))

    def evaluated(self, epoch: int, steps: int, loss: float, metrics: dict) -> None:
        """One epoch's validation metrics."""
        self.emit(Progress("evaluating", epoch, self.epochs, steps, steps, loss, metrics, fraction=1.0))


@torch.no_grad()
def fill_knn_vote(model: FusionClassifier, data: PreparedData, *, num_workers: int = 0) -> None:
    """Store the hidden vectors and labels of `data`, the rows the model was fitted on, for its kNN vote."""
    assert model.knn is not None
    model.eval()
    device = model_device(model)
    hidden = []
    batches = index_batches(len(data), 256)
    for rows, pixels in iter_batches(model, data, batches, augment=False, num_workers=num_workers):
        with autocast(device):
            image, text = batch_features(model, data, rows, pixels)
            out = head_output(model, image, text, len(rows), "fusion")
        assert out.hidden is not None
        hidden.append(out.hidden.float())
    model.knn.fill(torch.cat(hidden), data.labels)


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
    """Train a FusionClassifier; early stopping on `train_config.metric` restores the best epoch's weights
    (`train_config.keep="last"`: the last epoch's).

    Labels default to the training set's. Without `val_set` the last epoch is kept and the final
    metrics are measured on the training set (`metrics_split="train"`). In a process group every rank
    calls `train` with the same arguments (`batch_size` is the global batch); only rank 0 calls
    `on_progress`, and `should_stop` must answer alike on every rank (or stop the whole group instead).
    """
    ranks = current_ranks()
    emit = on_progress if on_progress is not None and ranks.is_main else (lambda progress: None)
    torch.manual_seed(train_config.seed)  # weight init, dropout, augmentation, worker seeds
    model, forward = build_model(model_config, train_config, train_set, ranks)
    cache = cache or FeatureCache()
    epochs, workers = train_config.epochs, train_config.num_workers
    reporter = _Reporter(emit, should_stop, epochs)
    with local_main_first(ranks):  # one rank per node encodes into a shared cache, the others read it
        # The training rows' texts without image tags serve only the final text-only report, made on them
        # when there is no validation split.
        train_data = prepare_data(
            model,
            train_set,
            cache=cache,
            on_progress=reporter.encoding,
            num_workers=workers,
            plain_text=val_set is None,
        )
        val_data = (
            prepare_data(model, val_set, cache=cache, on_progress=reporter.encoding, num_workers=workers)
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
    optimisation = make_optimisation(model, train_config, train_data.labels, epochs * steps)
    generator = torch.Generator().manual_seed(train_config.seed)
    trains_image = model.image_encoder is not None and not model.image_encoder.frozen
    stopping = EarlyStopping(model, train_config.metric, train_config.patience, train_config.keep)
    history: list[dict] = []
    reporter.start_training(epochs * steps)
    for epoch in range(1, epochs + 1):
        try:
            loss = train_one_epoch(
                model,
                train_data,
                optimisation,
                batch_size=batch_size,
                generator=generator,
                grad_clip=train_config.grad_clip,
                augment=train_config.augment and trains_image,
                num_workers=workers,
                on_step=functools.partial(reporter.step, epoch),
                should_stop=should_stop,
                forward=forward,
                ranks=ranks,
            )
        except TrainingCancelled as exc:
            stopping.restore_best()
            raise TrainingCancelled(
                TrainResult(model, history, {}, stopping.best_epoch, cancelled=True)
            ) from exc
        record: dict = {"epoch": epoch, "loss": loss}
        report = None
        if val_data is not None:
            report = evaluate(model, val_data, modes=("fusion",), num_workers=workers, ranks=ranks)["fusion"]
            assert report is not None
            record["val"] = {key: report[key] for key in METRICS}
            reporter.evaluated(epoch, steps, loss, record["val"])
        stopping.update(epoch, report)
        history.append(record)
        if stopping.should_stop:
            break

    stopping.restore_best()
    if model.knn is not None:
        fill_knn_vote(model, train_data, num_workers=workers)
    metrics = evaluate(
        model, val_data if val_data is not None else train_data, num_workers=workers, ranks=ranks
    )
    split = "val" if val_data is not None else "train"
    return TrainResult(model, history, metrics, stopping.best_epoch, metrics_split=split)
