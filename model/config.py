"""Model and training configuration: frozen dataclasses that round-trip through plain JSON."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Self

IMAGE_ENCODERS = (
    "cnn",
    "resnet18",
    "mobilenet_v3_small",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "none",
)
TEXT_ENCODERS = ("bow", "lstm", "minilm", "none")
FUSIONS = ("concat", "sum", "gated")
SCHEDULES = ("cosine", "step", "constant")
# "text" fine-tunes all of the text encoder and keeps the image encoder frozen (its features cached).
FINETUNE_MODES = ("none", "last", "all", "text")
# Transformer layers of the text encoders that have them (TrainConfig.finetune_layers).
TEXT_ENCODER_LAYERS = {"minilm": 6}
DEVICES = ("auto", "cpu", "cuda")
METRICS = ("accuracy", "macro_f1", "weighted_f1")
# Which epoch's weights a run keeps (TrainConfig.keep).
KEPT_EPOCHS = ("best", "last")
# ModelConfig fields added after checkpoints were first saved, with the value that keeps an older checkpoint
# working as it was trained (ModelConfig.from_stored).
STORED_BEFORE: dict[str, Any] = {"text_image_tags": 0, "knn_weight": 0.0}
# What a model is evaluated as: both modalities, or the head with the other one marked missing.
MODES = ("fusion", "image_only", "text_only")

# The EfficientNet-Lite0 weights expect inputs scaled to [-1, 1] (mean = std = 0.5), see
# model/encoders/efficientnet_lite.py for how that was established.  Other encoders are trained
# from scratch, so the production recipe's normalisation is a fine default for them too.
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


def _check_type(name: str, value: Any, hint: Any) -> Any:
    """Return ``value`` converted to the field type ``hint`` or raise ``ValueError("<name>: ...")``."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{name}: expected a list, got {type(value).__name__}")
        args = typing.get_args(hint)
        item_hint = args[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(name, v, item_hint) for v in value)
        if len(value) != len(args):
            raise ValueError(f"{name}: expected {len(args)} values, got {len(value)}")
        return tuple(_check_type(name, v, h) for v, h in zip(value, args, strict=True))
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{name}: unsupported field type {hint!r}")  # a programming error, not bad input


class _JsonConfig:
    """Shared plumbing: type checking on construction, ``to_dict`` and strict ``from_dict``."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _check_type(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
        self._validate()

    def _validate(self) -> None:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a plain dict; unknown keys and bad values raise ``ValueError("<field>: <problem>")``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"config: expected an object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in data:
            if key not in known:
                raise ValueError(f"{key}: unknown field")
        return cls(**data)


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(choices)}; got {value!r}")


def _in_range(name: str, value: float, lo: float, hi: float | None = None, *, lo_open: bool = False) -> None:
    too_low = value <= lo if lo_open else value < lo
    if too_low or (hi is not None and value > hi):
        bound = f"> {lo}" if lo_open else f">= {lo}"
        if hi is not None:
            bound += f" and <= {hi}"
        raise ValueError(f"{name}: must be {bound}; got {value!r}")


@dataclass(frozen=True)
class ModelConfig(_JsonConfig):
    """Architecture and preprocessing of a fusion classifier; stored in every checkpoint."""

    image_encoder: str = "efficientnet_lite0"
    text_encoder: str = "minilm"
    # sum is no worse than gated in paired CV on MVSA-Single train (+0.5 +/- 0.5 points of accuracy,
    # docs/QUALITY.md) and simpler; gated also answers per-request modality weights (`explain`).
    fusion: str = "sum"
    labels: tuple[str, ...] = ()
    hidden_dim: int = 256
    dropout: float = 0.5
    # Probability, per modality, of hiding it from the head during training (teaches missing-modality use).
    modality_dropout: float = 0.1
    # Fusion heads over the same encoder features, trained side by side, probabilities averaged.
    members: int = 1
    # Weight of the nearest training rows' vote in a prediction (model/knn_vote.py); 0 turns it off. Stored
    # after training from the rows the model was fitted on; rows with both modalities only; one head only.
    knn_weight: float = 0.0
    knn_neighbours: int = 16
    knn_temperature: float = 0.1
    # True loads the packaged ImageNet / sentence-transformers weights (efficientnet_lite*, minilm only).
    # efficientnet_lite1 / lite2 were trained at 240 / 260 px: set image_size to match (docs/QUALITY.md).
    pretrained: bool = True
    image_size: int = 224
    image_mean: tuple[float, float, float] = LITE_MEAN
    image_std: tuple[float, float, float] = LITE_STD
    max_text_tokens: int = 128
    text_lowercase: bool = True
    text_replace_urls: bool = True
    text_replace_mentions: bool = True
    text_strip_retweet: bool = True
    text_strip_hashtags: bool = True
    # How many of the photo's likeliest ImageNet classes (the packaged EfficientNet-Lite classifier, run on
    # the image features) are appended to its text before the text encoder reads it, e.g. "... . photo:
    # joystick, piggy bank, ocarina"; 0: none. +0.67 +/- 0.20 points of accuracy on 10 paired CV folds of
    # MVSA-Single train (docs/QUALITY.md, session 20). Applies where the recipe can tag (`image_tags`, and
    # a frozen image encoder: `image_tags_problem`); text-only outputs read the text without its tags.
    text_image_tags: int = 3
    # bow / lstm only: vocabulary cap, minimum token count and embedding width.
    vocab_size: int = 20000
    vocab_min_freq: int = 1
    embed_dim: int = 128

    def _validate(self) -> None:
        _one_of("image_encoder", self.image_encoder, IMAGE_ENCODERS)
        _one_of("text_encoder", self.text_encoder, TEXT_ENCODERS)
        _one_of("fusion", self.fusion, FUSIONS)
        if self.image_encoder == "none" and self.text_encoder == "none":
            raise ValueError("text_encoder: at least one of image_encoder and text_encoder must be set")
        if any(not label.strip() for label in self.labels):
            raise ValueError("labels: labels must be non-empty strings")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels: labels must be unique")
        _in_range("hidden_dim", self.hidden_dim, 1)
        _in_range("dropout", self.dropout, 0.0, 0.9)
        _in_range("modality_dropout", self.modality_dropout, 0.0, 0.5)
        _in_range("members", self.members, 1, 16)
        _in_range("knn_weight", self.knn_weight, 0.0, 1.0)
        _in_range("knn_neighbours", self.knn_neighbours, 1, 1024)
        _in_range("knn_temperature", self.knn_temperature, 0.0, lo_open=True)
        if self.knn_weight and self.members != 1:
            raise ValueError(f"knn_weight: the vote needs one fusion head (members 1), got {self.members}")
        _in_range("image_size", self.image_size, 16, 1024)
        if any(s <= 0 for s in self.image_std):
            raise ValueError("image_std: values must be > 0")
        _in_range("max_text_tokens", self.max_text_tokens, 1, 512)
        _in_range("text_image_tags", self.text_image_tags, 0, 10)
        _in_range("vocab_size", self.vocab_size, 2)
        _in_range("vocab_min_freq", self.vocab_min_freq, 1)
        _in_range("embed_dim", self.embed_dim, 1)

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> ModelConfig:
        """A config stored with a checkpoint: a field it predates takes the value that keeps the checkpoint's
        behaviour (`STORED_BEFORE`), not today's default; ValueError as `from_dict`."""
        return cls.from_dict({**STORED_BEFORE, **data} if isinstance(data, Mapping) else data)

    @property
    def image_tags(self) -> int:
        """The image tags this model's texts get: `text_image_tags` where it has a pretrained
        efficientnet_lite (whose ImageNet classifier names the tags) and a text encoder, else 0."""
        return 0 if self.tags_problem() else self.text_image_tags

    def tags_problem(self) -> str | None:
        """Why this model's texts cannot carry image tags, or None when they can (see also the recipe's
        `image_tags_problem`)."""
        if not (self.image_encoder.startswith("efficientnet_lite") and self.pretrained):
            return (
                "needs a pretrained efficientnet_lite image encoder (its ImageNet classifier names the tags)"
            )
        if self.text_encoder == "none":
            return "needs a text encoder to read the tags"
        return None

    @property
    def supports_missing_modality(self) -> bool:
        """Whether the head was built to cope with an absent image or text."""
        return self.modality_dropout > 0 or "none" in (self.image_encoder, self.text_encoder)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model has an encoder for: a subset of ("image", "text")."""
        out = []
        if self.image_encoder != "none":
            out.append("image")
        if self.text_encoder != "none":
            out.append("text")
        return tuple(out)


@dataclass(frozen=True)
class TrainConfig(_JsonConfig):
    """Hyper-parameters of one training run."""

    # The default recipe fine-tunes MiniLM's top two layers over cached image features for 5 epochs: on 10
    # paired CV folds of MVSA-Single train it beats the frozen encoders by 1.9 +/- 0.5 points of accuracy
    # (docs/QUALITY.md, session 16). encoder_lr 1e-4 rather than 5e-5: +0.55 +/- 0.26 points of weighted F1
    # over 20 paired folds, accuracy not lower (session 18).
    epochs: int = 5
    batch_size: int = 32
    lr: float = 3e-4
    # Learning rate for fine-tuned pretrained encoder weights (finetune "last", "all" or "text").
    encoder_lr: float = 1e-4
    weight_decay: float = 1e-2
    warmup_ratio: float = 0.05
    schedule: str = "cosine"
    grad_clip: float = 1.0  # 0 disables clipping
    patience: int = 8  # epochs without improvement before stopping early; 0 disables
    class_weighted: bool = False
    # Share of each target's probability spread evenly over all classes (cross-entropy label smoothing).
    label_smoothing: float = 0.0
    augment: bool = False
    seed: int = 0
    finetune: str = "text"
    # With finetune "text": how many of a pretrained text encoder's top transformer layers train (0: all of
    # it). Its embeddings and the layers below stay frozen; their token states are computed once per run.
    # Other finetune modes, and encoders trained from scratch (bow, lstm), ignore it.
    finetune_layers: int = 2
    device: str = "auto"
    num_workers: int = 0
    kfold: int = 0  # 0 = single train/val split, >= 2 = k-fold cross-validation
    metric: str = "accuracy"
    # Which epoch's weights a run keeps: the "best" by `metric` on the validation split (stopping after
    # `patience` epochs without a gain), or the "last" (every epoch runs, patience is ignored; the
    # validation split is still measured each epoch, reported, and compared by promote if_better).
    keep: str = "best"
    val_fraction: float = 0.15  # used when no validation set is given
    # Training processes on this machine (data-parallel): the CLI and the worker launch them through
    # torchrun; `train()` itself runs in whatever process group it is called in.
    nproc: int = 1

    def _validate(self) -> None:
        _in_range("epochs", self.epochs, 1, 10_000)
        _in_range("batch_size", self.batch_size, 1, 65_536)
        _in_range("lr", self.lr, 0.0, 10.0, lo_open=True)
        _in_range("encoder_lr", self.encoder_lr, 0.0, 10.0)
        _in_range("weight_decay", self.weight_decay, 0.0, 10.0)
        _in_range("warmup_ratio", self.warmup_ratio, 0.0, 0.5)
        _one_of("schedule", self.schedule, SCHEDULES)
        _in_range("grad_clip", self.grad_clip, 0.0)
        _in_range("patience", self.patience, 0)
        _in_range("label_smoothing", self.label_smoothing, 0.0, 0.5)
        _in_range("seed", self.seed, 0)
        _one_of("finetune", self.finetune, FINETUNE_MODES)
        _in_range("finetune_layers", self.finetune_layers, 0, max(TEXT_ENCODER_LAYERS.values()))
        _one_of("device", self.device, DEVICES)
        _in_range("num_workers", self.num_workers, 0, 64)
        if self.kfold == 1 or self.kfold < 0 or self.kfold > 20:
            raise ValueError(f"kfold: must be 0 (off) or between 2 and 20; got {self.kfold}")
        _one_of("metric", self.metric, METRICS)
        _one_of("keep", self.keep, KEPT_EPOCHS)
        _in_range("val_fraction", self.val_fraction, 0.0, 0.5, lo_open=True)
        _in_range("nproc", self.nproc, 1, 256)
        # Each of several processes needs two rows of every global batch (batch norm); see `train`.
        if self.nproc > 1 and self.batch_size < 2 * self.nproc:
            raise ValueError(
                f"batch_size: must be >= {2 * self.nproc} (two rows for each of {self.nproc} training"
                f" processes); got {self.batch_size}"
            )


def image_tags_problem(model_config: ModelConfig, train_config: TrainConfig) -> str | None:
    """Why this recipe's texts cannot carry image tags (the model's reason, or a trained image encoder), or
    None when they can."""
    problem = model_config.tags_problem()
    if problem is not None:
        return problem
    if train_config.finetune in ("last", "all"):
        return (
            "needs the image encoder frozen (finetune none or text), as the tags come from its features;"
            f" got finetune {train_config.finetune!r}"
        )
    return None


def resolve_image_tags(model_config: ModelConfig, train_config: TrainConfig) -> ModelConfig:
    """`model_config` with `text_image_tags` 0 where the recipe cannot tag (`image_tags_problem`), so that a
    checkpoint's config says what its model does."""
    if model_config.text_image_tags and image_tags_problem(model_config, train_config):
        return replace(model_config, text_image_tags=0)
    return model_config


__all__ = [
    "DEVICES",
    "FINETUNE_MODES",
    "FUSIONS",
    "IMAGE_ENCODERS",
    "KEPT_EPOCHS",
    "METRICS",
    "MODES",
    "SCHEDULES",
    "TEXT_ENCODERS",
    "TEXT_ENCODER_LAYERS",
    "ModelConfig",
    "TrainConfig",
    "image_tags_problem",
    "resolve_image_tags",
]
