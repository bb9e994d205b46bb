"""The fusion classifier: two encoders and the fusion heads (model.heads) of its ensemble members."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from model.heads import FusionHead, FusionOutput
from model.text import Vocabulary


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
        return cls(config, image, text, vocab if config.text_encoder in VOCAB_ENCODERS else None)

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
            return outputs[0]
        member_logits = torch.stack([out.logits for out in outputs])
        mean_probs = torch.softmax(member_logits.float(), dim=-1).mean(dim=0)
        gates = [out.gate for out in outputs if out.gate is not None]
        gate = torch.stack(gates).mean(dim=0) if gates else None
        return FusionOutput(logits=mean_probs.log(), gate=gate, member_logits=member_logits)

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

    def set_finetune(self, mode: str) -> None:
        """Freeze ("none") or unfreeze ("last" blocks, "all") the pretrained encoders."""
        for encoder in (self.image_encoder, self.text_encoder):
            if encoder is not None:
                encoder.set_finetune(mode)

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
