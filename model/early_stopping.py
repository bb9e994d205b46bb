"""Early stopping: keep the best epoch's weights by a validation metric, stop after `patience` epochs;
or keep the last epoch's."""

from __future__ import annotations

import math

import torch

from model.features import frozen_modalities
from model.fusion import FusionClassifier


class EarlyStopping:
    """Keeps the weights of the best epoch by `metric` and says when `patience` epochs brought nothing.

    Without validation reports, or with ``keep="last"``, every epoch counts as the best (the last one is
    kept) and nothing stops early; patience 0 never stops.
    """

    def __init__(self, model: FusionClassifier, metric: str, patience: int, keep: str = "best") -> None:
        self.model = model
        self.metric = metric
        self.patience = patience
        self.keep = keep
        self.best_score = -math.inf
        self.best_epoch = 0
        self.since_best = 0
        self._best_state = _snapshot(model)

    def update(self, epoch: int, report: dict | None) -> None:
        """Record the epoch's validation report (None: no validation set)."""
        if self.keep == "last":
            report = None
        if report is not None and report[self.metric] <= self.best_score:
            self.since_best += 1
            return
        if report is not None:
            self.best_score = report[self.metric]
        self.best_epoch, self._best_state, self.since_best = epoch, _snapshot(self.model), 0

    @property
    def should_stop(self) -> bool:
        """Whether `patience` epochs in a row failed to beat the best."""
        return bool(self.patience) and self.since_best >= self.patience

    def restore_best(self) -> FusionClassifier:
        """Load the best epoch's weights back into the model; returns it."""
        self.model.load_state_dict(self._best_state, strict=False)
        return self.model


def _snapshot(model: FusionClassifier) -> dict[str, torch.Tensor]:
    """Copies of every tensor that training can change (frozen encoders are left out)."""
    frozen = tuple(f"{m}_encoder." for m in frozen_modalities(model))
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith(frozen)}
