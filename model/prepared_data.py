"""A dataset as tensors for training and evaluation, and how one batch of it becomes head outputs.

`prepare_data` maps labels to the model's order, fetches the features of frozen encoders through the
feature cache and tokenizes texts once (and runs a text encoder's frozen lower layers on them once, when
only its top layers train); `iter_batches`, `batch_features` and `head_output` turn rows of it into
features (cached rows, or the encoders run on the batch) and fusion-head outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from model.datasets import Dataset
from model.encoders.token_states import TokenStates
from model.features import FeatureCache, Features, frozen_modalities
from model.fusion import FusionClassifier, FusionOutput
from model.loading import image_batches, slice_inputs

# Which modalities the head sees in each evaluation mode (model.config.MODES).
_PRESENT = {"fusion": (True, True), "image_only": (True, False), "text_only": (False, True)}


@dataclass
class PreparedData:
    """A dataset as tensors: labels, cached features of frozen encoders, inputs of the encoders that train."""

    labels: torch.Tensor
    features: Features = field(default_factory=Features)
    text_inputs: dict[str, torch.Tensor] | None = None  # pre-tokenized texts for a text encoder that trains
    # ... or, when only its top layers train, the token states of its frozen lower layers
    text_states: TokenStates | None = None
    image_paths: list[Path] | None = None  # decoded per batch for an image encoder that trains

    def __len__(self) -> int:
        return len(self.labels)


def model_device(model: FusionClassifier) -> torch.device:
    """The device the model's parameters live on."""
    return next(model.parameters()).device


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
        device = model_device(model)
        features = Features(*(f.to(device) if f is not None else None for f in (cached.image, cached.text)))
    trains_image = model.image_encoder is not None and "image" not in frozen
    data = PreparedData(
        labels=torch.tensor([index[s.label] for s in dataset.samples], dtype=torch.long),
        features=features,
        image_paths=[s.image for s in dataset.samples] if trains_image else None,
    )
    if model.text_encoder is not None and "text" not in frozen:
        tokens = model.tokenize([s.text for s in dataset.samples])
        if model.text_encoder.trained_layers:
            device = model_device(model)
            data.text_states = model.text_encoder.frozen_states({k: v.to(device) for k, v in tokens.items()})
        else:
            data.text_inputs = tokens
    return data


def iter_batches(
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
    device = model_device(model)
    pixels = image_batches(
        data.image_paths,
        model.config,
        batches,
        train=augment,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    yield from zip(batches, pixels, strict=True)


def batch_features(
    model: FusionClassifier, data: PreparedData, batch: list[int], pixels: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Image and text features of one batch: cached rows, or the encoder run on this batch's inputs."""
    device = model_device(model)
    rows = torch.tensor(batch, dtype=torch.long, device=device)
    image = data.features.image[rows] if data.features.image is not None else None
    if pixels is not None:
        pixels = pixels.to(device, non_blocking=True)
        if device.type == "cuda":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        image = model.encode_image(pixels)
    text = data.features.text[rows] if data.features.text is not None else None
    if data.text_states is not None:
        text = model.encode_text(data.text_states.rows(batch))
    elif data.text_inputs is not None:
        inputs = slice_inputs(data.text_inputs, batch)
        text = model.encode_text({k: v.to(device, non_blocking=True) for k, v in inputs.items()})
    return image, text


def head_output(
    model: FusionClassifier, image: torch.Tensor | None, text: torch.Tensor | None, n: int, mode: str
) -> FusionOutput:
    """The fusion head on `n` rows of features, the modalities `mode` leaves out marked missing."""
    device = model_device(model)
    image_present, text_present = _PRESENT[mode]
    return model.head(
        image,
        text,
        torch.full((n,), image_present, dtype=torch.bool, device=device),
        torch.full((n,), text_present, dtype=torch.bool, device=device),
    )
