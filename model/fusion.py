"""The fusion classifier: two encoders, per-modality projections, a fusion rule and an MLP head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from model.config import ModelConfig
from model.encoders import (
    VOCAB_ENCODERS,
    ImageEncoder,
    TextEncoder,
    build_image_encoder,
    build_text_encoder,
)
from model.image_tags import ImageTagger
from model.knn_vote import KnnVote
from model.text import Vocabulary


@dataclass
class FusionOutput:
    """Logits [B, C] and, for gated fusion, the per-sample (image, text) weights [B, 2].

    With several ensemble members, ``logits`` are the log of the members' mean probabilities, ``gate``
    their mean gate, and ``member_logits`` [M, B, C] each member's own logits (what training fits).
    """

    logits: torch.Tensor
    gate: torch.Tensor | None = None
    member_logits: torch.Tensor | None = None
    # The input of the (single) head's output layer [B, H]: what the kNN vote compares.
    hidden: torch.Tensor | None = None


def _projection(in_dim: int, hidden_dim: int, dropout: float) -> nn.Sequential:
    # LayerNorm first: frozen features arrive at very different scales (L2-normalised MiniLM vs ReLU6 maps).
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout))


def _check_labels(config: ModelConfig) -> None:
    if len(config.labels) < 2:
        raise ValueError(f"labels: need at least 2 labels, got {len(config.labels)}")


# What a checkpoint saved before ensemble members held at the top level: its single head's tensors.
_SINGLE_HEAD_PREFIXES = ("image_proj.", "text_proj.", "missing_image", "missing_text", "gate.", "classifier.")


def upgrade_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict from before ensemble members, its head's tensors renamed into `heads.0.`."""
    if any(key.startswith("heads.") for key in tensors):
        return tensors
    return {f"heads.0.{k}" if k.startswith(_SINGLE_HEAD_PREFIXES) else k: v for k, v in tensors.items()}


class FusionHead(nn.Module):
    """One ensemble member: per-modality projections, missing-modality stand-ins, fusion rule, MLP."""

    def __init__(self, config: ModelConfig, image_dim: int | None, text_dim: int | None) -> None:
        super().__init__()
        self.config = config
        hidden, dropout = config.hidden_dim, config.dropout
        self.image_proj = _projection(image_dim, hidden, dropout) if image_dim else None
        self.text_proj = _projection(text_dim, hidden, dropout) if text_dim else None
        # Stand-ins for an absent modality; learned, and seen in training through modality dropout.
        self.missing_image = nn.Parameter(torch.randn(hidden) * 0.02)
        self.missing_text = nn.Parameter(torch.randn(hidden) * 0.02)
        self.gate = nn.Linear(2 * hidden, 2) if config.fusion == "gated" else None
        fused_dim = 2 * hidden if config.fusion == "concat" else hidden
        # A hidden layer after fusion lets the head learn interactions (e.g. XOR) between modalities.
        self.classifier = nn.Sequential(
            nn.Linear(fused_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, len(config.labels)),
        )

    def _modality_dropout(
        self, image_present: torch.Tensor, text_present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.config.modality_dropout
        if not self.training or p == 0:
            return image_present, text_present
        both = image_present & text_present
        # One draw per sample with disjoint ranges, so at most one modality is hidden (p <= 0.5).
        r = torch.rand(both.shape, device=both.device)
        drop_image = both & (r < p)
        drop_text = both & (r >= p) & (r < 2 * p)
        return image_present & ~drop_image, text_present & ~drop_text

    @staticmethod
    def _side(
        feats: torch.Tensor | None,
        proj: nn.Module | None,
        present: torch.Tensor,
        missing: torch.Tensor,
        name: str,
    ) -> torch.Tensor:
        filler = missing.unsqueeze(0).expand(present.shape[0], -1)
        if proj is None or not bool(present.any()):
            return filler
        if feats is None:
            raise ValueError(f"{name}: features are required where {name}_present is true")
        projected = proj(feats)
        return torch.where(present.unsqueeze(-1), projected, filler.to(projected.dtype))

    def forward(
        self,
        img_feats: torch.Tensor | None,
        txt_feats: torch.Tensor | None,
        image_present: torch.Tensor,
        text_present: torch.Tensor,
    ) -> FusionOutput:
        """This member's logits (and gate) for features whose rows are marked present or missing."""
        image_present, text_present = self._modality_dropout(image_present, text_present)
        img = self._side(img_feats, self.image_proj, image_present, self.missing_image, "image")
        txt = self._side(txt_feats, self.text_proj, text_present, self.missing_text, "text")
        txt = txt.to(img.dtype)
        gate = None
        if self.gate is not None:
            gate = torch.softmax(self.gate(torch.cat([img, txt], dim=-1)).float(), dim=-1)
            fused = gate[:, :1].to(img.dtype) * img + gate[:, 1:].to(img.dtype) * txt
        elif self.config.fusion == "sum":
            fused = img + txt
        else:
            fused = torch.cat([img, txt], dim=-1)
        hidden = self.classifier[:-1](fused)
        return FusionOutput(logits=self.classifier[-1](hidden), gate=gate, hidden=hidden)


class FusionClassifier(nn.Module):
    """Image + text classifier; either modality may be absent per sample, or have no encoder at all.

    The encoders feed ``config.members`` fusion heads (an ensemble over the same frozen features: each
    member has its own weights, dropout and modality-dropout draws, and its own loss in training).
    """

    def __init__(
        self,
        config: ModelConfig,
        image_encoder: ImageEncoder | None,
        text_encoder: TextEncoder | None,
        vocab: Vocabulary | None = None,
    ) -> None:
        super().__init__()
        _check_labels(config)
        self.config = config
        self.vocab = vocab
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        image_dim = image_encoder.out_dim if image_encoder else None
        text_dim = text_encoder.out_dim if text_encoder else None
        self.heads = nn.ModuleList(FusionHead(config, image_dim, text_dim) for _ in range(config.members))
        self.image_tagger = (
            ImageTagger(image_dim, config.image_tags) if config.image_tags and image_dim else None
        )
        self.knn = (
            KnnVote(len(config.labels), config.knn_weight, config.knn_neighbours, config.knn_temperature)
            if config.knn_weight
            else None
        )

    @classmethod
    def build(
        cls, config: ModelConfig, vocab: Vocabulary | None = None, *, load_weights: bool = True
    ) -> FusionClassifier:
        """Build encoders and head from ``config``; ``load_weights=False`` skips reading pretrained files."""
        _check_labels(config)
        image = (
            None
            if config.image_encoder == "none"
            else build_image_encoder(config.image_encoder, config, load_weights=load_weights)
        )
        text = (
            None
            if config.text_encoder == "none"
            else build_text_encoder(config.text_encoder, config, vocab, load_weights=load_weights)
        )
        model = cls(config, image, text, vocab if config.text_encoder in VOCAB_ENCODERS else None)
        if model.image_tagger is not None and load_weights:
            from model.encoders.efficientnet_lite import imagenet_classifier

            model.image_tagger.load_classifier(*imagenet_classifier(config.image_encoder))
        return model

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names, in logit order."""
        return self.config.labels

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Text encoder inputs for raw texts."""
        if self.text_encoder is None:
            raise ValueError("text: this model has no text encoder")
        return self.text_encoder.tokenize(texts)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image encoder features [B, D_img] of normalised pixels [B, 3, H, W]."""
        if self.image_encoder is None:
            raise ValueError("image: this model has no image encoder")
        return self.image_encoder(pixels)

    def encode_text(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Text encoder features [B, D_txt] of ``tokenize`` output."""
        if self.text_encoder is None:
            raise ValueError("text: this model has no text encoder")
        return self.text_encoder(inputs)

    def head(
        self,
        img_feats: torch.Tensor | None,
        txt_feats: torch.Tensor | None,
        image_present: torch.Tensor,
        text_present: torch.Tensor,
    ) -> FusionOutput:
        """Classify encoder features; rows whose ``*_present`` is False use the missing embedding."""
        # Written without `tensor & python_bool`, which the ONNX exporter cannot trace.
        image_present = image_present.bool() if self.image_encoder else torch.zeros_like(image_present.bool())
        text_present = text_present.bool() if self.text_encoder else torch.zeros_like(text_present.bool())
        outputs = [member(img_feats, txt_feats, image_present, text_present) for member in self.heads]
        if len(outputs) == 1:
            return self._with_vote(outputs[0], image_present & text_present)
        member_logits = torch.stack([out.logits for out in outputs])
        mean_probs = torch.softmax(member_logits.float(), dim=-1).mean(dim=0)
        gates = [out.gate for out in outputs if out.gate is not None]
        gate = torch.stack(gates).mean(dim=0) if gates else None
        return FusionOutput(logits=mean_probs.log(), gate=gate, member_logits=member_logits)

    def _with_vote(self, out: FusionOutput, both: torch.Tensor) -> FusionOutput:
        """`out` with the kNN vote mixed into the rows that have both modalities (in eval mode, once the
        store is filled): its logits are then the log of the mixed probabilities."""
        if self.knn is None or not self.knn.filled or self.training or out.hidden is None:
            return out
        mixed = self.knn(out.hidden, torch.softmax(out.logits.float(), dim=-1)).log()
        logits = torch.where(both.unsqueeze(-1), mixed, out.logits.float())
        return replace(out, logits=logits)

    def forward(
        self,
        pixels: torch.Tensor | None,
        text_inputs: Mapping[str, torch.Tensor] | None,
        image_present: torch.Tensor,
        text_present: torch.Tensor,
    ) -> FusionOutput:
        """Encode whichever inputs are given, then ``head``."""
        img_feats = None if pixels is None or self.image_encoder is None else self.encode_image(pixels)
        txt_feats = (
            None if text_inputs is None or self.text_encoder is None else self.encode_text(text_inputs)
        )
        return self.head(img_feats, txt_feats, image_present, text_present)

    def set_finetune(self, mode: str, text_layers: int = 0) -> None:
        """Freeze ("none") or unfreeze ("last" blocks, "all") the pretrained encoders; "text" unfreezes all
        of the text encoder, or only its top `text_layers` transformer layers (when it has them), and keeps
        the image encoder frozen. Other modes ignore `text_layers`."""
        image_mode, text_mode = ("none", "all") if mode == "text" else (mode, mode)
        for encoder, encoder_mode in ((self.image_encoder, image_mode), (self.text_encoder, text_mode)):
            if encoder is not None:
                encoder.set_finetune(encoder_mode)
        if mode == "text" and text_layers and self.text_encoder is not None:
            self.text_encoder.train_top_layers(text_layers)

    def parameter_groups(self, lr: float, encoder_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: pretrained encoder weights at ``encoder_lr``, the rest at ``lr``.

        Biases, norms and the missing embeddings (1-d tensors) get no weight decay.
        """
        pretrained = {
            id(p)
            for enc in (self.image_encoder, self.text_encoder)
            if enc is not None and enc.pretrained
            for p in enc.parameters()
        }
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for p in self.parameters():
            if p.requires_grad:
                groups.setdefault((id(p) in pretrained, p.ndim >= 2), []).append(p)
        return [
            {
                "params": params,
                "lr": encoder_lr if is_pre else lr,
                "weight_decay": weight_decay if decay else 0.0,
            }
            for (is_pre, decay), params in sorted(groups.items())
        ]
