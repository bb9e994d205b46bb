"""Encoder registry: ``build_image_encoder`` / ``build_text_encoder`` look names up in small builder dicts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from model.config import ModelConfig
from model.encoders.base import Encoder, ImageEncoder, TextEncoder
from model.text import Vocabulary

if TYPE_CHECKING:
    import torch

# A builder receives the config and whether to read pretrained weights from their package; checkpoint
# loading passes False because the checkpoint already holds every tensor.
ImageBuilder = Callable[[ModelConfig, bool], ImageEncoder]
TextBuilder = Callable[[ModelConfig, Vocabulary | None, bool], TextEncoder]


def _cnn(config: ModelConfig, load_weights: bool) -> ImageEncoder:
    from model.encoders.image import SmallCNN

    return SmallCNN()


def _torchvision(name: str) -> ImageBuilder:
    def build(config: ModelConfig, load_weights: bool) -> ImageEncoder:
        from model.encoders.image import TorchvisionEncoder

        return TorchvisionEncoder(name)

    return build


def _efficientnet_lite(name: str) -> ImageBuilder:
    def build(config: ModelConfig, load_weights: bool) -> ImageEncoder:
        from model.encoders.efficientnet_lite import EfficientNetLite

        return EfficientNetLite(name, pretrained=config.pretrained, load_weights=load_weights)

    return build


def _need_vocab(name: str, vocab: Vocabulary | None) -> Vocabulary:
    if vocab is None:
        raise ValueError(f"text_encoder: {name} needs a vocabulary (model.text.build_vocabulary)")
    return vocab


def _bow(config: ModelConfig, vocab: Vocabulary | None, load_weights: bool) -> TextEncoder:
    from model.encoders.text import BagOfWords

    return BagOfWords(config, _need_vocab("bow", vocab))


def _lstm(config: ModelConfig, vocab: Vocabulary | None, load_weights: bool) -> TextEncoder:
    from model.encoders.text import BiLSTM

    return BiLSTM(config, _need_vocab("lstm", vocab))


def _minilm(config: ModelConfig, vocab: Vocabulary | None, load_weights: bool) -> TextEncoder:
    from model.encoders.minilm import MiniLM

    return MiniLM(config, pretrained=config.pretrained, load_weights=load_weights)


IMAGE_ENCODER_BUILDERS: dict[str, ImageBuilder] = {
    "cnn": _cnn,
    "resnet18": _torchvision("resnet18"),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small"),
    "efficientnet_lite0": _efficientnet_lite("efficientnet_lite0"),
    "efficientnet_lite1": _efficientnet_lite("efficientnet_lite1"),
    "efficientnet_lite2": _efficientnet_lite("efficientnet_lite2"),
}
TEXT_ENCODER_BUILDERS: dict[str, TextBuilder] = {"bow": _bow, "lstm": _lstm, "minilm": _minilm}
# Vocabulary-based encoders need ``model.text.build_vocabulary`` run over the training texts first.
VOCAB_ENCODERS = frozenset({"bow", "lstm"})


def build_image_encoder(name: str, config: ModelConfig, *, load_weights: bool = True) -> ImageEncoder:
    """Build the image encoder called ``name`` ("none" is not an encoder: the fusion model handles it)."""
    if name not in IMAGE_ENCODER_BUILDERS:
        raise ValueError(
            f"image_encoder: unknown encoder {name!r}; known: {', '.join(IMAGE_ENCODER_BUILDERS)}"
        )
    return IMAGE_ENCODER_BUILDERS[name](config, load_weights)


def build_text_encoder(
    name: str, config: ModelConfig, vocab: Vocabulary | None = None, *, load_weights: bool = True
) -> TextEncoder:
    """Build the text encoder called ``name``; bow/lstm need ``vocab``."""
    if name not in TEXT_ENCODER_BUILDERS:
        raise ValueError(f"text_encoder: unknown encoder {name!r}; known: {', '.join(TEXT_ENCODER_BUILDERS)}")
    return TEXT_ENCODER_BUILDERS[name](config, vocab, load_weights)


def build_tokenizer(
    config: ModelConfig, vocab: Vocabulary | None = None
) -> Callable[[Sequence[str]], dict[str, torch.Tensor]]:
    """The text encoder's tokenizer alone (no weights): raw texts -> ``input_ids``, ``attention_mask``."""
    if config.text_encoder == "minilm":
        from model.encoders.minilm import MiniLMTokenizer

        return MiniLMTokenizer(config)
    if config.text_encoder in VOCAB_ENCODERS:
        from model.encoders.text import VocabTokenizer

        return VocabTokenizer(config, _need_vocab(config.text_encoder, vocab))
    raise ValueError(f"text_encoder: {config.text_encoder!r} has no tokenizer")


__all__ = [
    "IMAGE_ENCODER_BUILDERS",
    "TEXT_ENCODER_BUILDERS",
    "VOCAB_ENCODERS",
    "Encoder",
    "ImageEncoder",
    "TextEncoder",
    "build_image_encoder",
    "build_text_encoder",
    "build_tokenizer",
]
