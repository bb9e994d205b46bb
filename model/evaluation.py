"""Evaluation of a fusion classifier: a classification report per mode (fusion, image-only, text-only)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.config import METRICS, MODES
from model.datasets import Dataset
from model.device import autocast
from model.distributed import Ranks, all_reduce, shard
from model.features import FeatureCache
from model.fusion import FusionClassifier
from model.loading import index_batches
from model.metrics import classification_report
from model.prepared_data import (
    PreparedData,
    batch_features,
    head_output,
    iter_batches,
    model_device,
    plain_text_features,
    prepare_data,
)

_EVAL_BATCH = 256


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
    device = model_device(model)
    # -1 marks rows predicted elsewhere; a max over ranks then fills in every row.
    predictions = torch.full((len(active), len(data)), -1, dtype=torch.long, device=device)
    shards = [rows for rows in (shard(b, ranks) for b in index_batches(len(data), batch_size)) if rows]
    for rows, pixels in iter_batches(model, data, shards, augment=False, num_workers=num_workers):
        index = torch.tensor(rows, dtype=torch.long, device=device)
        with autocast(device):
            image, text = batch_features(model, data, rows, pixels)
            for i, mode in enumerate(active):
                mode_text = plain_text_features(model, data, rows, text) if mode == "text_only" else text
                logits = head_output(model, image, mode_text, len(rows), mode).logits
                predictions[i, index] = logits.argmax(-1)
    gathered = dict(zip(active, all_reduce(predictions, ranks, op="max").cpu(), strict=True))
    return {
        m: classification_report(data.labels, gathered[m], model.labels) if m in active else None
        for m in modes
    }


def scalar_metrics(report: dict | None) -> dict[str, float] | None:
    """The scalar metrics (model.config.METRICS) of a classification report; None for None."""
    return {key: report[key] for key in METRICS} if report is not None else None
