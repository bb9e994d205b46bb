"""The heads over encoder features: the fusion head of one ensemble member, and its agreement head.

A `FusionHead` projects each modality, fuses the two (sum, sum and product, concat or a gate) and
classifies with an MLP. With `agreement_head` it also holds an `AgreementHead`: each modality predicts the
label alone, and the two answers combine the way MVSA's tweet labels were made from an annotator's text and
image labels: agreeing labels give that label, a neutral one defers to the other modality, and opposite
ones rule each other out. The member answers the mean of the two heads' probabilities, and training fits
that mixture (docs/QUALITY.md has what each part adds on MVSA-Single).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from model.config import ModelConfig

# Log-probability standing for "impossible": finite, so that gradients and ONNX stay free of NaN.
_IMPOSSIBLE = -1e4


@dataclass
class FusionOutput:
    """Logits [B, C] and, for gated fusion, the per-sample (image, text) weights [B, 2].

    With several ensemble members, ``logits`` are the log of the members' mean probabilities, ``gate``
    their mean gate, and ``member_logits`` [M, B, C] each member's own logits (what training fits).
    """

    logits: torch.Tensor
    gate: torch.Tensor | None = None
    member_logits: torch.Tensor | None = None


def projection(in_dim: int, hidden_dim: int, dropout: float) -> nn.Sequential:
    """LayerNorm, Linear to `hidden_dim`, GELU, dropout: one modality's features into the head's width."""
    # LayerNorm first: frozen features arrive at very different scales (L2-normalised MiniLM vs ReLU6 maps).
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout))


def agreement_rule(n_labels: int, neutral: int | None) -> torch.Tensor:
    """[C, C * C]: 0 where the pair (image label j, text label k), flattened as j * C + k, gives the label
    of the row, `_IMPOSSIBLE` elsewhere. Equal labels give themselves; the neutral label (if any) gives the
    other one; any other pair gives no label."""
    rule = torch.full((n_labels, n_labels * n_labels), _IMPOSSIBLE)
    for j in range(n_labels):
        for k in range(n_labels):
            if j == k or k == neutral:
                rule[j, j * n_labels + k] = 0.0
            elif j == neutral:
                rule[k, j * n_labels + k] = 0.0
    return rule


class AgreementHead(nn.Module):
    """Each modality's own label distribution, combined by `agreement_rule` into log-probabilities.

    An absent modality gives no evidence: it counts as the neutral label, or as uniform where the labels
    have no neutral one (the rule is then a product of experts).
    """

    absent: torch.Tensor
    rule: torch.Tensor

    def __init__(self, config: ModelConfig, image_dim: int | None, text_dim: int | None) -> None:
        super().__init__()
        n, hidden, dropout = len(config.labels), config.hidden_dim, config.dropout
        self.image_labels = (
            nn.Sequential(projection(image_dim, hidden, dropout), nn.Linear(hidden, n)) if image_dim else None
        )
        self.text_labels = (
            nn.Sequential(projection(text_dim, hidden, dropout), nn.Linear(hidden, n)) if text_dim else None
        )
        neutral = config.labels.index(config.neutral_label) if config.neutral_label in config.labels else None
        if neutral is None:
            absent = torch.full((n,), -math.log(n))
        else:
            absent = torch.full((n,), _IMPOSSIBLE)
            absent[neutral] = 0.0
        # Not persistent: both follow from the config, so checkpoints hold only the learned weights.
        self.register_buffer("absent", absent, persistent=False)
        self.register_buffer("rule", agreement_rule(n, neutral), persistent=False)

    def _side(
        self, feats: torch.Tensor | None, labels: nn.Module | None, present: torch.Tensor
    ) -> torch.Tensor:
        absent = self.absent.unsqueeze(0).expand(present.shape[0], -1)
        if labels is None or feats is None or not bool(present.any()):
            return absent
        own = torch.log_softmax(labels(feats).float(), dim=-1)
        return torch.where(present.unsqueeze(-1), own, absent)

    def forward(
        self,
        img_feats: torch.Tensor | None,
        txt_feats: torch.Tensor | None,
        image_present: torch.Tensor,
        text_present: torch.Tensor,
    ) -> torch.Tensor:
        """Log-probabilities [B, C] of the labels the two modalities' own answers agree on."""
        image = self._side(img_feats, self.image_labels, image_present)
        text = self._side(txt_feats, self.text_labels, text_present)
        pairs = (image.unsqueeze(2) + text.unsqueeze(1)).flatten(1)  # [B, C * C]: log p_image(j) p_text(k)
        agreed = torch.logsumexp(pairs.unsqueeze(1) + self.rule, dim=-1)  # [B, C]
        return torch.log_softmax(agreed, dim=-1)  # pairs that rule each other out are left out


class FusionHead(nn.Module):
    """One ensemble member: per-modality projections, missing-modality stand-ins, fusion rule, MLP, and the
    agreement head when the config asks for it."""

    def __init__(self, config: ModelConfig, image_dim: int | None, text_dim: int | None) -> None:
        super().__init__()
        self.config = config
        hidden, dropout = config.hidden_dim, config.dropout
        self.image_proj = projection(image_dim, hidden, dropout) if image_dim else None
        self.text_proj = projection(text_dim, hidden, dropout) if text_dim else None
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
        self.agreement = AgreementHead(config, image_dim, text_dim) if config.agreement_head else None

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
        elif self.config.fusion == "sum_product":
            fused = img + txt + img * txt
        else:
            fused = torch.cat([img, txt], dim=-1)
        logits = self.classifier(fused)
        if self.agreement is not None:
            agreed = self.agreement(img_feats, txt_feats, image_present, text_present)
            # The log of the two heads' mean probabilities: what the member answers and training fits.
            both = torch.stack([torch.log_softmax(logits.float(), dim=-1), agreed])
            logits = torch.logsumexp(both, dim=0) - math.log(2)
        return FusionOutput(logits=logits, gate=gate)
