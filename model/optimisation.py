"""What `train` optimises with: AdamW over the model's parameter groups, the learning-rate schedule,
the gradient scaler for fp16 and the (optionally class-weighted) cross-entropy loss."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from model.config import TrainConfig
from model.fusion import FusionClassifier


@dataclass
class Optimisation:
    """The optimiser, its per-step scheduler, the fp16 gradient scaler (None otherwise) and the loss."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    loss_fn: nn.Module


def make_optimisation(
    model: FusionClassifier, config: TrainConfig, train_labels: torch.Tensor, total_steps: int
) -> Optimisation:
    """AdamW, warm-up then `config.schedule` over `total_steps`; the loss smoothed and weighted as asked."""
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(
        model.parameter_groups(config.lr, config.encoder_lr, config.weight_decay),
        fused=device.type == "cuda",
    )
    warmup = int(config.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config.schedule, total_steps, warmup))
    fp16 = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    weights = class_weights(train_labels, len(model.labels)) if config.class_weighted else None
    return Optimisation(
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda") if fp16 else None,
        loss_fn=nn.CrossEntropyLoss(
            weight=weights.to(device) if weights is not None else None, label_smoothing=config.label_smoothing
        ),
    )


def lr_lambda(schedule: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
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


def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (mean 1 over present classes); absent classes get 0."""
    counts = torch.bincount(labels, minlength=n_classes).float()
    return torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
