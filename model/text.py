"""Text preprocessing: tweet normalisation, a regex tokenizer and the vocabulary of the bow/lstm encoders."""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from model.config import ModelConfig

URL_TOKEN = "http"
MENTION_TOKEN = "@user"
PAD = "<pad>"
UNK = "<unk>"

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+")
_RETWEET = re.compile(r"^\s*RT\b:?\s*")
_HASHTAG = re.compile(r"(?<!\w)#(\w)")
_SPACE = re.compile(r"\s+")
# Words (keeping "@user" and inner apostrophes whole) or any single non-space symbol, so emoji and "!" count.
_TOKEN = re.compile(r"@?\w+(?:'\w+)*|[^\w\s]")


def normalize_text(text: str, config: ModelConfig) -> str:
    """Clean a tweet-like text as the config's text flags say (used alike in training and serving)."""
    text = html.unescape(text)
    if config.text_strip_retweet:
        text = _RETWEET.sub("", text)
    if config.text_replace_urls:
        text = _URL.sub(URL_TOKEN, text)
    if config.text_replace_mentions:
        text = _MENTION.sub(MENTION_TOKEN, text)
    if config.text_strip_hashtags:
        text = _HASHTAG.sub(r"\1", text)
    if config.text_lowercase:
        text = text.lower()
    return _SPACE.sub(" ", text).strip()


def tokenize(text: str) -> list[str]:
    """Split an (already normalised) text into word and symbol tokens."""
    return _TOKEN.findall(text)


class Vocabulary:
    """Token <-> id mapping for the bow/lstm encoders; id 0 is padding, id 1 unknown."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError(f"vocabulary: must start with {PAD!r}, {UNK!r}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary: tokens must be unique")
        self.tokens: tuple[str, ...] = tuple(tokens)
        self._index = {tok: i for i, tok in enumerate(self.tokens)}

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int = 20000, min_freq: int = 1) -> Vocabulary:
        """Keep the ``max_size`` most frequent tokens (ties broken alphabetically) seen ``min_freq`` times."""
        counts = Counter(tok for text in texts for tok in tokenize(text))
        ranked = sorted((tok for tok, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        return cls([PAD, UNK, *ranked[: max(0, max_size - 2)]])

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def ids(self, text: str) -> list[int]:
        """Token ids of one text (unknown tokens map to 1)."""
        return [self._index.get(tok, 1) for tok in tokenize(text)]

    def encode(self, texts: Sequence[str], max_tokens: int) -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids`` [B, L] and boolean ``attention_mask`` [B, L], L = longest (>= 1)."""
        rows = [self.ids(text)[:max_tokens] for text in texts]
        width = max([1, *(len(r) for r in rows)])
        input_ids = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": input_ids != 0}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form stored in checkpoints."""
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        """Inverse of ``to_dict``; raises ValueError on a malformed dict."""
        tokens = data.get("tokens") if isinstance(data, Mapping) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError("vocabulary: expected {'tokens': [str, ...]}")
        return cls(tokens)


def build_vocabulary(texts: Iterable[str], config: ModelConfig) -> Vocabulary:
    """Vocabulary over ``texts`` normalised exactly as the bow/lstm encoders will see them."""
    return Vocabulary.build(
        (normalize_text(t, config) for t in texts), max_size=config.vocab_size, min_freq=config.vocab_min_freq
    )
