"""Text encoders trained from scratch over a ``Vocabulary``: bag of words and a bidirectional LSTM."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.encoders.base import TextEncoder
from model.text import Vocabulary, normalize_text


class VocabTokenizer:
    """Tokenisation of the vocabulary-based encoders; needs no weights (used by every runtime)."""

    def __init__(self, config: ModelConfig, vocab: Vocabulary) -> None:
        self.config = config
        self.vocab = vocab

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` [B, L] of the normalised texts."""
        normalised = [normalize_text(t, self.config) for t in texts]
        return self.vocab.encode(normalised, self.config.max_text_tokens)


class _VocabEncoder(TextEncoder):
    """Shared tokenisation of the vocabulary-based encoders."""

    def __init__(self, name: str, out_dim: int, config: ModelConfig, vocab: Vocabulary) -> None:
        super().__init__(name, out_dim, pretrained=False)
        self.config = config
        self.vocab = vocab
        self._tokenizer = VocabTokenizer(config, vocab)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` [B, L] of the normalised texts."""
        return self._tokenizer(texts)


class BagOfWords(_VocabEncoder):
    """Mean of token embeddings (padding excluded); an empty text gives zeros."""

    def __init__(self, config: ModelConfig, vocab: Vocabulary) -> None:
        super().__init__("bow", config.embed_dim, config, vocab)
        self.embedding = nn.EmbeddingBag(len(vocab), config.embed_dim, mode="mean", padding_idx=0)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Features [B, embed_dim]."""
        # The bag's mean written out: the ONNX exporter has no EmbeddingBag with padding_idx.
        ids = inputs["input_ids"]
        vectors = F.embedding(ids, self.embedding.weight, padding_idx=0)
        real = (ids != 0).unsqueeze(-1).to(vectors.dtype)
        return (vectors * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)


class BiLSTM(_VocabEncoder):
    """Bidirectional LSTM over token embeddings, mean-pooled over real tokens."""

    def __init__(self, config: ModelConfig, vocab: Vocabulary) -> None:
        super().__init__("lstm", 2 * config.embed_dim, config, vocab)
        self.embedding = nn.Embedding(len(vocab), config.embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(config.embed_dim, config.embed_dim, batch_first=True, bidirectional=True)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Features [B, 2 * embed_dim]."""
        mask = inputs["attention_mask"]
        lengths = mask.sum(dim=1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(inputs["input_ids"]), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=mask.shape[1])
        weights = mask.unsqueeze(-1).to(out.dtype)
        return (out * weights).sum(dim=1) / lengths.unsqueeze(-1).to(out.dtype)
