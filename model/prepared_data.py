"""A dataset as tensors for training and evaluation, and how one batch of it becomes head outputs.

`prepare_data` maps labels to the model's order, fetches the features of frozen encoders through the
feature cache and tokenizes texts once (and runs a text encoder's frozen lower layers on them once, when
only its top layers train); `iter_batches`, `batch_features` and `head_output` turn rows of it into
features (cached rows, or the encoders run on the batch) and fusion-head outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from model.datasets import Dataset
from model.encoders.token_states import TokenStates
from model.features import FeatureCache, Features, frozen_modalities
from model.fusion import FusionClassifier, FusionOutput
from model.image_tags import tag_text
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
    # With image tags (ModelConfig.text_image_tags) the texts above carry their photo's tags; this holds the
    # same rows' texts without them, for the text-only mode (`plain_text_features`), when it was asked for.
    plain_text: PreparedData | None = None

    def __len__(self) -> int:
        return len(self.labels)


def model_device(model: FusionClassifier) -> torch.device:
    """The device the model's parameters live on."""
    return next(model.parameters()).device


def tagged_dataset(dataset: Dataset, tags: Sequence[Sequence[str]]) -> Dataset:
    """A copy of `dataset` whose every text carries its photo's `tags` (one list per sample)."""
    if len(tags) != len(dataset.samples):
        raise ValueError(f"tags: {len(tags)} lists for {len(dataset.samples)} samples")
    samples = tuple(replace(s, text=tag_text(s.text, t)) for s, t in zip(dataset.samples, tags, strict=True))
    return replace(dataset, samples=samples)


def prepare_data(
    model: FusionClassifier,
    dataset: Dataset,
    *,
    cache: FeatureCache | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    num_workers: int = 0,
    plain_text: bool = True,
) -> PreparedData:
    """Map labels to the model's order, fetch frozen features (via `cache`) and tokenize texts once.

    With image tags, texts get their photo's tags first (from the frozen image features), and
    `plain_text` also prepares them without, for the text-only mode (training needs only the fusion).
    """
    index = {label: i for i, label in enumerate(model.labels)}
    unknown = sorted({s.label for s in dataset.samples} - index.keys())
    if unknown:
        raise ValueError(f"labels: dataset labels {unknown} are not among the model's {list(model.labels)}")
    frozen = frozen_modalities(model)
    if frozen and cache is None:
        cache = FeatureCache()  # a private temporary one
    plain, image = dataset, None
    if model.image_tagger is not None:
        if "image" not in frozen:
            raise ValueError("text_image_tags: the photo's tags need the image encoder frozen")
        assert cache is not None
        image = cache.get_or_compute(
            model, dataset, on_progress, modalities=("image",), num_workers=num_workers
        ).image
        assert image is not None
        dataset = tagged_dataset(dataset, model.image_tagger.tags(image))
    labels = torch.tensor([index[s.label] for s in dataset.samples], dtype=torch.long)
    data = _prepare(model, dataset, labels, frozen, cache, on_progress, num_workers, image=image)
    if model.image_tagger is not None and plain_text:
        text_frozen = ("text",) if "text" in frozen else ()
        data.plain_text = _prepare(model, plain, labels, text_frozen, cache, None, num_workers, images=False)
    return data


def _prepare(
    model: FusionClassifier,
    dataset: Dataset,
    labels: torch.Tensor,
    frozen: Sequence[str],
    cache: FeatureCache | None,
    on_progress: Callable[[int, int], None] | None,
    num_workers: int,
    *,
    images: bool = True,
    image: torch.Tensor | None = None,
) -> PreparedData:
    """Features of the `frozen` modalities and inputs of the encoders that train (text only: `images`
    False); `image`: the image features when they were fetched already (the cache is asked for the rest)."""
    features = Features()
    if frozen:
        assert cache is not None
        wanted = [m for m in frozen if m != "image" or image is None]
        cached = cache.get_or_compute(model, dataset, on_progress, modalities=wanted, num_workers=num_workers)
        image = image if image is not None else cached.image
        # Small enough ([N, D]) to live on the model's device for the whole run.
        device = model_device(model)
        features = Features(*(f.to(device) if f is not None else None for f in (image, cached.text)))
    trains_image = images and model.image_encoder is not None and "image" not in frozen
    data = PreparedData(
        labels=labels,
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


def plain_text_features(
    model: FusionClassifier, data: PreparedData, batch: list[int], text: torch.Tensor | None
) -> torch.Tensor | None:
    """The text features of rows `batch` for the text-only mode: `text` (the batch's from
    `batch_features`), or with image tags, the features of the texts without them."""
    if model.image_tagger is None:
        return text
    if data.plain_text is None:
        raise ValueError("text_only: these rows were prepared without their plain texts (plain_text=False)")
    return batch_features(model, data.plain_text, batch, None)[1]


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
